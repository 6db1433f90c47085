"""What real Discord does to a running job: its status message deleted, its channel gone."""

from __future__ import annotations

import time
from typing import Any

from tests.animate.conftest import AnimateFactory, wait_job
from tests.animate.test_buttons_and_errors import animate
from standins.discord_server import DiscordStandIn, InteractionRecord
from standins.wait import wait_until


def running(record: InteractionRecord) -> bool:
    return any("step" in str(e.get("content")) for e in record.edits)


def mentions_of(stand_in: DiscordStandIn, user_id: int) -> list[dict[str, Any]]:
    return [m for m in stand_in.channel_messages() if m.get("webhook_id") is None
            and str(m["content"]).startswith(f"<@{user_id}>")]


async def test_deleted_status_message_the_result_is_posted_in_the_channel(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.1)
    stand_in = env.stand_in
    record = await animate(env, steps=12)
    await record.wait_for(running, timeout=10)
    status_id = record.original["id"]  # type: ignore[index]
    stand_in.messages.pop(int(status_id))  # a moderator deleted it
    # channel messages do not touch the interaction record: poll the stand-in's messages
    [message, *_] = await wait_until(lambda: mentions_of(stand_in, stand_in.user.id), timeout=15,
                                     what="the result in the channel")
    assert any(a["filename"].startswith("animation_") for a in message["attachments"])
    job = await wait_job(env.service, message["embeds"][0]["footer"]["text"].split()[-1], "delivered")
    assert job.delivered_message_id == int(message["id"])
    refused = [r for r in stand_in.requests_to("PATCH", f"/webhooks/*/messages/{status_id}") if r.status == 404]
    assert len(refused) <= 2, len(refused)  # it stopped editing the deleted message


async def test_deleted_status_message_and_a_failure_tells_only_the_member(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.1)
    stand_in = env.stand_in
    env.comfy[0].fail_at = "VHS_VideoCombine"
    record = await animate(env, steps=8)
    await record.wait_for(running, timeout=10)
    stand_in.messages.pop(int(record.original["id"]))  # type: ignore[index]
    await record.wait_for(lambda r: any(m["flags"] & 64 for m in r.followups), timeout=15)
    private = [m for m in record.followups if m["flags"] & 64][-1]
    assert "failed" in private["content"]
    assert not mentions_of(stand_in, stand_in.user.id)  # nothing about it in public


async def test_a_channel_that_is_gone_ends_the_delivery_without_retrying(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.05)
    stand_in = env.stand_in
    await animate(env, steps=8)
    jobs = await wait_until(lambda: env.service.recent_jobs(stand_in.user.id, stand_in.guild.id), timeout=10,
                            what="the job to be stored")
    clock = env.delivery.now
    env.delivery.now = lambda: clock() + 16 * 60  # the token is too old: the result goes to the channel
    stand_in.guild.channels.remove(stand_in.channel)  # ... which was deleted meanwhile
    started = time.monotonic()
    job = await wait_job(env.service, jobs[0].id, "failed", timeout=10)
    assert time.monotonic() - started < 8  # not five tries over a minute and a half
    assert "can't post" in (job.error or "")
    assert len(stand_in.requests_to("POST", "/channels/*/messages")) <= 2  # the result once, the notice once
