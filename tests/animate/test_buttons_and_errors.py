"""Context menu, job buttons, refusals and failures of /animate through the stand-in."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from tests.animate.conftest import AnimateEnv, AnimateFactory, png_bytes, wait_job
from tests.animate.test_animate_flow import custom_ids, result_message
from standins.discord_server import DiscordStandIn, InteractionRecord, message_text
from standins.wait import wait_until


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def animate(env: AnimateEnv, *, user: Any = None, **options: Any) -> InteractionRecord:
    opts = {"steps": 6, "frames": 3}
    opts.update(options)
    return await env.stand_in.slash(None, None, user, "animate", options=opts,
                                    attachments={"image": ("cat.png", png_bytes(), "image/png")})


async def finished(record: InteractionRecord, timeout: float = 20) -> dict[str, Any]:
    await record.wait_for(lambda r: result_message(r) is not None, timeout=timeout)
    message = result_message(record)
    assert message is not None
    return message


def job_id_of(message: dict[str, Any]) -> str:
    return message["embeds"][0]["footer"]["text"].split()[-1]


async def ephemeral_text(record: InteractionRecord) -> str:
    message = await record.wait_message()
    assert record.ephemeral
    return message_text(message)


async def test_context_menu_animates_an_image_message_and_refuses_one_without(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    attachment = stand_in.add_attachment("photo.png", png_bytes(), "image/png", width=320, height=192)
    target = {"id": str(stand_in.snowflake()), "channel_id": str(stand_in.channel.id), "content": "look",
              "author": stand_in.user.user_payload(), "attachments": [attachment], "embeds": [],
              "timestamp": "2024-01-01T00:00:00+00:00", "type": 0, "tts": False, "mention_everyone": False,
              "mentions": [], "mention_roles": [], "pinned": False}
    record = await stand_in.context_menu_message(None, None, None, "Animate image", target)
    message = await finished(record)
    assert "seed" in message_text(message) and not record.ephemeral
    plain = dict(target, id=str(stand_in.snowflake()), attachments=[])
    refused = await stand_in.context_menu_message(None, None, None, "Animate image", plain)
    assert "no image" in await ephemeral_text(refused)


async def test_reroll_gives_a_new_seed_and_more_motion_raises_motion(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    first = await finished(await animate(env, motion=100))
    parent = await env.service.get(job_id_of(first))
    assert parent is not None
    reroll = await env.stand_in.click(first, f"animate:reroll:{parent.id}")
    rerolled = await finished(reroll)
    child = await env.service.get(job_id_of(rerolled))
    assert child is not None and child.parent_job_id == parent.id
    assert child.options["seed"] != parent.options["seed"] and child.options["motion"] == 100
    assert str(child.options["seed"]) in message_text(rerolled)
    more = await env.stand_in.click(first, f"animate:more:{parent.id}")
    moved = await env.service.get(job_id_of(await finished(more)))
    assert moved is not None and moved.options["motion"] == 140 and moved.options["seed"] == parent.options["seed"]
    less = await env.stand_in.click(first, f"animate:less:{parent.id}")
    calmer = await env.service.get(job_id_of(await finished(less)))
    assert calmer is not None and calmer.options["motion"] == 60


async def test_cancel_button_stops_the_job_on_the_server_and_others_are_refused(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.3)
    stand_in = env.stand_in
    bob = stand_in.add_member("bob")
    record = await animate(env, steps=30)

    def cancellable(r: InteractionRecord) -> bool:
        return r.original is not None and "step" in str(r.original.get("content")) and any(
            c.startswith("animate:cancel:") for c in custom_ids(r.original))

    await record.wait_for(cancellable, timeout=10)
    assert record.original is not None
    cancel_id = next(c for c in custom_ids(record.original) if c.startswith("animate:cancel:"))
    job_id = cancel_id.split(":")[-1]
    refused = await stand_in.click(record.original, cancel_id, user=bob)
    assert "Only the member who started" in await ephemeral_text(refused)
    assert (await env.service.get(job_id)).state.value == "running"  # type: ignore[union-attr]
    press = await stand_in.click(record.original, cancel_id)
    assert "Cancelled" in await ephemeral_text(press)
    await wait_job(env.service, job_id, "cancelled")
    await record.wait_for(lambda r: "Cancelled" in str((r.original or {}).get("content")), timeout=5)
    assert not custom_ids(record.original or {})  # no Cancel button left
    assert ("POST", "/interrupt") in env.comfy[0].requests
    queue = await env.bot.comfy["gpu-1"].get_queue()
    assert not queue.running and not queue.pending


async def test_delete_by_requester_removes_the_result_and_others_are_refused(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    bob = env.stand_in.add_member("bob")
    message = await finished(await animate(env))
    job_id = job_id_of(message)
    refused = await env.stand_in.click(message, f"animate:delete:{job_id}", user=bob)
    assert "Only the member who started" in await ephemeral_text(refused)
    assert int(message["id"]) in env.stand_in.messages
    press = await env.stand_in.click(message, f"animate:delete:{job_id}")
    await press.wait_for(lambda r: bool(r.deleted))
    assert int(message["id"]) not in env.stand_in.messages
    job = await env.service.get(job_id)
    assert job is not None and job.deleted


async def test_text_file_and_out_of_range_option_are_refused_ephemerally(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    text = await env.stand_in.slash(None, None, None, "animate",
                                    attachments={"image": ("notes.txt", b"hello", "text/plain")})
    assert "not an image" in await ephemeral_text(text)
    out_of_range = await animate(env, motion=999)
    assert "motion" in await ephemeral_text(out_of_range)
    assert not await env.service.recent_jobs(env.stand_in.user.id, env.stand_in.guild.id)


async def test_corrupt_image_gets_a_notice_and_private_details(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    broken = png_bytes()[:60]
    record = await env.stand_in.slash(None, None, None, "animate",
                                      attachments={"image": ("cat.png", broken, "image/png")})
    followups = await record.wait_followups(1)
    assert record.original is not None and "couldn't start" in record.original["content"]
    assert not record.ephemeral
    assert followups[-1]["flags"] & 64 and "damaged" in followups[-1]["content"]
    assert not await env.service.recent_jobs(env.stand_in.user.id, env.stand_in.guild.id)


async def test_servers_down_is_refused_and_nothing_is_left_waiting(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(servers=0, server_urls=(f"http://127.0.0.1:{closed_port()}",))
    record = await animate(env)
    await record.wait_for(lambda r: bool(r.followups) or (r.ephemeral and r.original is not None), timeout=10)
    private = [m for m in record.followups if m["flags"] & 64] or [record.original]
    assert "offline" in message_text(private[-1]), private
    assert not env.service.waiting_order()
    assert not await env.service.recent_jobs(env.stand_in.user.id, env.stand_in.guild.id)
    # later, once the health checks gave up on the server, it is still "offline" (not "missing")
    gave_up = asyncio.Event()
    env.service.pool.add_listener(lambda backend, healthy: None if healthy else gave_up.set())
    if any(b.healthy for b in env.service.pool):
        await asyncio.wait_for(gave_up.wait(), 20)
    assert not any(b.healthy for b in env.service.pool)
    again = await animate(env)
    text = await ephemeral_text(again)
    assert "offline" in text and "installed" not in text


async def test_failure_inside_comfyui_edits_the_status_and_explains_privately(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    env.comfy[0].fail_at = "KSampler"
    record = await animate(env)
    await record.wait_for(lambda r: "failed" in str((r.original or {}).get("content")) and bool(r.followups), 10)
    detail = record.followups[-1]
    assert detail["flags"] & 64 and detail["content"]
    assert "127.0.0.1" not in detail["content"] and "Traceback" not in detail["content"]
    jobs = await env.service.recent_jobs(env.stand_in.user.id, env.stand_in.guild.id)
    assert [j.state.value for j in jobs] == ["failed"]
    assert not env.service.waiting_order()


async def test_result_after_token_expiry_is_a_channel_reply_mentioning_the_requester(
    animate_bot: AnimateFactory, discord_stand_in: DiscordStandIn
) -> None:
    env = await animate_bot(step_time=0.1)
    record = await animate(env)
    await record.wait_ack()
    clock = env.delivery.now
    env.delivery.now = lambda: clock() + 16 * 60  # the token is past its 15 minutes
    mention = f"<@{discord_stand_in.user.id}>"

    def in_channel() -> list[dict[str, Any]]:
        return [m for m in discord_stand_in.channel_messages() if m.get("webhook_id") is None
                and str(m["content"]).startswith(mention)]

    # channel messages do not touch the interaction record: poll the stand-in's messages
    [message, *_] = await wait_until(in_channel, timeout=15, what="the result in the channel")
    assert any(a["filename"].startswith("animation_") for a in message["attachments"])
    sent = [r for r in discord_stand_in.requests_to("POST", "/channels/*/messages")][-1].json
    assert [int(u) for u in sent["allowed_mentions"]["users"]] == [discord_stand_in.user.id]
    assert sent["allowed_mentions"]["parse"] == []
    assert int(sent["message_reference"]["message_id"]) == int(record.original["id"])  # type: ignore[index]
    job = await wait_job(env.service, job_id_of(message), "delivered")
    assert job.delivered_message_id == int(message["id"])


async def test_result_buttons_work_after_the_bot_restarted(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    first = await finished(await animate(env, motion=100))
    parent_id = job_id_of(first)
    await wait_job(env.service, parent_id, "delivered")
    assert env.stop is not None
    await env.stop()
    # A new process on the same DATA_DIR: nothing of the old bot's views is in memory.
    restarted = await animate_bot(comfy=env.comfy)
    assert restarted.bot is not env.bot
    more = await restarted.stand_in.click(first, f"animate:more:{parent_id}")
    moved_message = await finished(more)
    moved = await restarted.service.get(job_id_of(moved_message))
    assert moved is not None and moved.parent_job_id == parent_id and moved.options["motion"] == 140
    delete = await restarted.stand_in.click(first, f"animate:delete:{parent_id}")
    await delete.wait_for(lambda r: bool(r.deleted))
    assert int(first["id"]) not in restarted.stand_in.messages
