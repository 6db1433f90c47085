"""Ten members at once, /queue, /cancel and /history through the stand-in."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from bot.discord.edit_scheduler import EditPacing
from tests.animate.conftest import AnimateFactory, wait_job
from tests.animate.test_animate_flow import result_message
from tests.animate.test_buttons_and_errors import animate, ephemeral_text, finished, job_id_of
from standins.discord_server import DiscordStandIn

# Discord's shape of limits (one edit per message per interval, a budget per channel), scaled down 10x.
SCALED = EditPacing(running_interval=0.15, waiting_interval=0.6, channel_edits=4, channel_window=0.5)


@pytest.mark.timeout(60)
async def test_ten_members_each_see_their_own_status_within_the_channel_budget(
    animate_bot: AnimateFactory, discord_stand_in: DiscordStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    patches: list[float] = []
    original = discord_stand_in._webhook_message

    def recording(request: Any, token: str, ref: str, body: Any, files: Any) -> Any:
        if request.method == "PATCH" and not files:  # progress edits: a result is never held back
            patches.append(time.monotonic())
        return original(request, token, ref, body, files)

    monkeypatch.setattr(discord_stand_in, "_webhook_message", recording)
    env = await animate_bot(step_time=0.1, pacing=SCALED, max_jobs_per_member=1)
    members = [discord_stand_in.add_member(f"member{i}") for i in range(10)]
    records = await asyncio.gather(*(animate(env, user=m, steps=4, frames=2) for m in members))
    for record in records:
        await record.wait_ack(timeout=3)
    results = await asyncio.gather(*(finished(r, timeout=45) for r in records))
    for member, record, message in zip(members, records, results):
        job = await env.service.get(job_id_of(message))
        assert job is not None and job.user_id == member.id
        assert f"<@{member.id}>" in message["content"]
        shown = [str(e.get("content")) for e in record.edits]
        assert shown, "no status edit"
    waiting_positions = [int(m.group(1)) for r in records for e in r.edits
                         if (m := re.search(r"#(\d+) in line", str(e.get("content"))))]
    assert len(set(waiting_positions)) >= 3  # members further back saw their own, higher positions
    # at most `channel_edits` progress PATCHes in any window of `channel_window` seconds (small slack for
    # timing), and Discord's own limits were kept: the stand-in answered no 429
    assert discord_stand_in.rate_limit_hits == []
    for i, start in enumerate(patches):
        in_window = [t for t in patches[i:] if t - start < SCALED.channel_window - 0.05]
        assert len(in_window) <= SCALED.channel_edits, (len(in_window), len(patches))


async def test_queue_shows_the_line_with_my_jobs_and_server_load(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.3, comfyui_max_pending=0)
    bob = env.stand_in.add_member("bob")
    running = await animate(env, user=bob, steps=30)
    await running.wait_for(lambda r: any("step" in str(e.get("content")) for e in r.edits), timeout=10)
    mine = await animate(env, steps=30)
    await mine.wait_for(lambda r: any("in line" in str(e.get("content")) for e in r.edits), timeout=5)
    record = await env.stand_in.slash(None, None, None, "queue")
    text = await ephemeral_text(record)
    assert f"▶️ <@{bob.id}> on gpu-1 · step" in text and "On the servers (1)" in text
    assert f"**#1 <@{env.stand_in.user.id}> · 1 job ahead · estimating... ← you**" in text  # no run timed yet
    assert "You are #1 in line" in text
    assert "gpu-1: 1/1 busy" in text and "http" not in text

    # /cancel with no argument cancels my latest active job
    cancel = await env.stand_in.slash(None, None, None, "cancel")
    assert "Cancelled job" in await ephemeral_text(cancel)
    my_jobs = await env.service.recent_jobs(env.stand_in.user.id, env.stand_in.guild.id)
    assert [j.state.value for j in my_jobs] == ["cancelled"]
    await mine.wait_for(lambda r: "Cancelled" in str((r.original or {}).get("content")), timeout=5)
    # bob's job picked by id: I am not its owner nor a moderator
    bob_job = (await env.service.recent_jobs(bob.id, env.stand_in.guild.id))[0]
    refused = await env.stand_in.slash(None, None, None, "cancel", options={"job": bob_job.id})
    assert "Only the member who started" in await ephemeral_text(refused)
    nothing = await env.stand_in.slash(None, None, None, "cancel")
    assert "no animation waiting or running" in await ephemeral_text(nothing)


async def test_history_links_to_delivered_results(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    message = await finished(await animate(env))
    job = await wait_job(env.service, job_id_of(message), "delivered")
    env.comfy[0].fail_at = "KSampler"
    failed = await animate(env)
    await failed.wait_for(lambda r: "failed" in str((r.original or {}).get("content")), timeout=10)
    record = await env.stand_in.slash(None, None, None, "history")
    text = await ephemeral_text(record)
    url = f"https://discord.com/channels/{env.stand_in.guild.id}/{env.stand_in.channel.id}/{message['id']}"
    assert f"`{job.id}` done · seed {job.options['seed']} · [result]({url})" in text
    assert "failed" in text.splitlines()[0]
    assert result_message(failed) is None


async def test_cancel_picks_my_latest_job_autocomplete_lists_mine_and_cancel_works_while_waiting(
    animate_bot: AnimateFactory,
) -> None:
    env = await animate_bot(step_time=0.3, comfyui_max_pending=0)
    stand_in = env.stand_in
    first = await animate(env, steps=30)
    await first.wait_for(lambda r: any("step" in str(e.get("content")) for e in r.edits), timeout=10)
    second = await animate(env, steps=30)
    await second.wait_for(lambda r: any("in line" in str(e.get("content")) for e in r.edits), timeout=5)
    older, newer = sorted(await env.service.recent_jobs(stand_in.user.id, stand_in.guild.id),
                          key=lambda j: j.created_at)

    suggest = await stand_in.slash(None, None, None, "cancel", options={"job": ""}, focused="job")
    await suggest.wait_ack()
    assert suggest.ack_type == 8
    choices = suggest.acks[0]["data"]["choices"]
    assert [c["value"] for c in choices] == [newer.id, older.id]  # newest first
    assert all(len(c["name"]) <= 100 for c in choices)

    cancel = await stand_in.slash(None, None, None, "cancel")
    assert f"job `{newer.id}`" in await ephemeral_text(cancel)
    await wait_job(env.service, newer.id, "cancelled")
    assert (await env.service.get(older.id)).state.value == "running"  # type: ignore[union-attr]

    prompts_before = env.comfy[0].requests.count(("POST", "/prompt"))
    third = await animate(env, steps=30)
    await third.wait_for(lambda r: any("in line" in str(e.get("content")) for e in r.edits), timeout=5)
    button = next(c["custom_id"] for row in third.original["components"]  # type: ignore[index]
                  for c in row["components"] if c["custom_id"].startswith("animate:cancel:"))
    press = await stand_in.click(third.original, button)  # type: ignore[arg-type]
    assert "Cancelled" in await ephemeral_text(press)
    await wait_job(env.service, button.split(":")[-1], "cancelled")
    await third.wait_for(lambda r: "Cancelled" in str((r.original or {}).get("content")), timeout=5)
    assert env.comfy[0].requests.count(("POST", "/prompt")) == prompts_before  # it never reached the server


async def test_a_job_in_the_server_s_own_queue_says_so(animate_bot: AnimateFactory) -> None:
    """With COMFYUI_MAX_PENDING=1 a second job waits in ComfyUI's queue: its status and /queue
    say "queued", not "starting" or "running", until the server starts it."""
    env = await animate_bot(step_time=0.2)
    bob = env.stand_in.add_member("bob")
    first = await animate(env, user=bob, steps=20)
    await first.wait_for(lambda r: any("step" in str(e.get("content")) for e in r.edits), timeout=10)
    second = await animate(env, steps=2)
    await second.wait_for(lambda r: any("Queued on the image server" in str(e.get("content")) for e in r.edits),
                          timeout=5)
    assert not any("step" in str(e.get("content")) for e in second.edits)
    text = await ephemeral_text(await env.stand_in.slash(None, None, None, "queue"))
    assert f"▶️ <@{bob.id}> on gpu-1 · step" in text
    assert f"**📥 queued <@{env.stand_in.user.id}> on gpu-1 · 1 job ahead · estimating... ← you**" in text
    await finished(second, timeout=30)  # and then it runs and delivers
