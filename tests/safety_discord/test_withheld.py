"""Withheld results through the whole bot (issue 16): nothing is posted in the channel, the member
is told privately, the audit log gets the record with Release and Delete (an image only in an
age-restricted audit channel), ``/mod withheld`` offers the same without an audit channel, and the
records and the guild's safety settings survive a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.models import JobState
from bot.moderation.audit_text import JobEvents, SafetyActions
from bot.safety import RGBArray
from bot.safety import messages
from bot.safety.messages import Rule
from bot.safety.verdict import Detections
from bot.storage.withheld import DELETED, RELEASED, WITHHELD
from standins.discord_server import Channel, DiscordStandIn, InteractionRecord, Member, message_text
from standins.fake_safety import EXPLICIT_DETECTIONS, FakeSafetyDetector, centre_colour
from standins.wait import wait_until
from tests.animate.conftest import AnimateEnv, AnimateFactory, wait_job
from tests.animate.test_animate_flow import custom_ids
from tests.moderation_discord.helpers import PERM_MANAGE_GUILD, add_channel, member_with, mod, reply, slash_with
from tests.safety_discord.helpers import animate_colour, channel_videos, outcome, private_text
from tests.storage.helpers import list_audit

pytestmark = pytest.mark.timeout(120)

CYAN = (0, 200, 200)


class ExplicitResults(FakeSafetyDetector):
    """Cyan is clean in an input (1024 px wide once prepared) and explicit in a result frame (the
    ComfyUI test server renders at most 128 px): a clean image whose video is explicit."""

    def detect(self, image: RGBArray) -> Detections:
        found = super().detect(image)
        if image.shape[1] <= 256 and max(abs(a - b) for a, b in zip(centre_colour(image), CYAN)) <= 12:
            return Detections(items=EXPLICIT_DETECTIONS, width=found.width, height=found.height)
        return found


async def withheld_job(env: AnimateEnv, channel: Channel | None = None) -> str:
    """Animate a cyan image; check what the member sees; return the job id."""
    record = await animate_colour(env, CYAN, channel=channel)
    assert await outcome(record) == "withheld"
    assert (record.original or {})["content"] == messages.WITHHELD_NOTICE
    assert await private_text(record) == messages.withheld(Rule.STRICT)
    jobs = await env.service.recent_jobs(env.stand_in.user.id, env.stand_in.guild.id, limit=1)
    job = await wait_job(env.service, jobs[0].id, "failed")
    assert job.error == messages.withheld(Rule.STRICT)
    return str(job.id)


async def _has(actions: Any, action: str) -> bool:
    return action in await actions


def audit_post(stand_in: DiscordStandIn, channel: Channel, words: str) -> dict[str, Any]:
    found = [m for m in stand_in.channel_messages(channel) if words in message_text(m)]
    assert len(found) == 1, [message_text(m) for m in stand_in.channel_messages(channel)]
    return found[0]


async def click(stand_in: DiscordStandIn, message: dict[str, Any], custom_id: str,
                user: Member | None) -> InteractionRecord:
    record = await stand_in.click(message, custom_id, user)
    await record.wait_for(lambda r: any(message_text(m) for m in r.messages()), timeout=10)
    assert record.ephemeral
    return record


async def test_a_withheld_result_is_released_from_its_audit_record(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(safety=ExplicitResults.with_markers())
    stand_in = env.stand_in
    log_channel = await stand_in.add_channel("bot-log", nsfw=True)  # age-restricted: images allowed there
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "auditlog", channel=log_channel)

    job_id = await withheld_job(env)
    assert channel_videos(stand_in) == []  # nothing was posted in the channel
    job = await env.service.get(job_id)
    assert job is not None and job.state is JobState.FAILED and job.result_path and Path(job.result_path).exists()
    record = await env.service.store.withheld.get(job_id)
    assert record is not None and record.state == WITHHELD and record.labels == (("FEMALE_BREAST_EXPOSED", 0.9),)

    await env.bot.audit.flush()
    post = audit_post(stand_in, log_channel, "withheld in")
    assert f"safety:release:{job_id}" in custom_ids(post) and f"safety:delete:{job_id}" in custom_ids(post)
    assert "FEMALE_BREAST_EXPOSED 0.90" in message_text(post)  # who, what, the labels and scores
    assert post["attachments"] and post["attachments"][0]["filename"] == f"result_{job_id}.png"
    assert audit_post(stand_in, log_channel, "queued job")["attachments"]  # the input thumbnail too, here

    bob = member_with(stand_in, "bob")
    refused = await click(stand_in, post, f"safety:release:{job_id}", bob)
    assert "moderator" in message_text(refused.messages()[0])
    assert (await env.service.store.withheld.get(job_id)).state == WITHHELD  # type: ignore[union-attr]

    released = await click(stand_in, post, f"safety:release:{job_id}", admin)
    assert "Released as a spoiler" in message_text(released.messages()[-1])
    [video] = channel_videos(stand_in)
    assert video["attachments"][0]["filename"].startswith(f"SPOILER_animation_{job_id}.")
    assert f"<@{stand_in.user.id}> a moderator released your animation" in video["content"]
    assert not any(e.get("image") for e in video["embeds"])  # no poster: it could not be hidden
    stored = await env.service.store.withheld.get(job_id)
    assert stored is not None and stored.state == RELEASED and stored.decided_by == admin.id
    assert stored.message_id == int(video["id"])

    async def audit_actions() -> list[str]:
        return [r.action for r in await list_audit(env.service.store, stand_in.guild.id, job_id=job_id)]

    # the job's own "failed" record follows the member's private notice, which Discord's
    # per-interaction rate limit may hold back for a moment
    await wait_until(lambda: _has(audit_actions(), JobEvents.FAILED), what="the job.failed audit record",
                     describe=audit_actions)
    audit = await list_audit(env.service.store, stand_in.guild.id, job_id=job_id)
    assert [r.action for r in audit].count(SafetyActions.WITHHELD) == 1
    assert any(r.action == SafetyActions.RELEASED and r.actor_id == admin.id for r in audit)

    again = await click(stand_in, post, f"safety:release:{job_id}", admin)
    assert "already released" in message_text(again.messages()[0])
    assert len(channel_videos(stand_in)) == 1


async def test_delete_removes_the_kept_file_and_an_ordinary_audit_channel_shows_no_image(
        animate_bot: AnimateFactory) -> None:
    env = await animate_bot(safety=ExplicitResults.with_markers())
    stand_in = env.stand_in
    log_channel = add_channel(stand_in, "bot-log")  # an ordinary channel
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "auditlog", channel=log_channel)
    job_id = await withheld_job(env)
    job = await env.service.get(job_id)
    assert job is not None and job.result_path
    await env.bot.audit.flush()
    post = audit_post(stand_in, log_channel, "withheld in")
    assert post["attachments"] == [] and f"safety:delete:{job_id}" in custom_ids(post)

    deleted = await click(stand_in, post, f"safety:delete:{job_id}", admin)
    assert "Deleted" in message_text(deleted.messages()[-1])
    assert not await asyncio.to_thread(Path(job.result_path).exists)
    assert (await env.service.store.withheld.get(job_id)).state == DELETED  # type: ignore[union-attr]
    audit = await list_audit(env.service.store, stand_in.guild.id, action=SafetyActions.DELETED)
    assert [(r.job_id, r.actor_id) for r in audit] == [(job_id, admin.id)]
    released = await click(stand_in, post, f"safety:release:{job_id}", admin)
    assert "already deleted" in message_text(released.messages()[0])
    assert channel_videos(stand_in) == []


async def withheld_list(env: AnimateEnv, admin: Member) -> InteractionRecord:
    record = await slash_with(env.stand_in, admin, "mod withheld")
    await reply(record)
    assert record.ephemeral
    return record


async def test_without_an_audit_channel_mod_withheld_has_the_buttons(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(safety=ExplicitResults.with_markers())
    stand_in = env.stand_in
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    assert "No result is withheld" in await mod(env, admin, "withheld")
    first, second = await withheld_job(env), await withheld_job(env)

    listing = await withheld_list(env, admin)
    message = listing.original
    assert message is not None
    text = message_text(message)
    assert f"1. job `{second}`" in text and f"2. job `{first}`" in text and "FEMALE_BREAST_EXPOSED 0.90" in text
    assert custom_ids(message) == [f"safety:release:{second}", f"safety:delete:{second}",
                                   f"safety:release:{first}", f"safety:delete:{first}"]
    released = await click(stand_in, message, f"safety:release:{second}", admin)
    assert "Released as a spoiler" in message_text(released.messages()[-1])
    deleted = await click(stand_in, message, f"safety:delete:{first}", admin)
    assert "Deleted" in message_text(deleted.messages()[-1])
    assert [v["attachments"][0]["filename"].split(".")[0] for v in channel_videos(stand_in)] == [
        f"SPOILER_animation_{second}"]
    assert "No result is withheld" in await mod(env, admin, "withheld")
    helper = member_with(stand_in, "helper")
    refused = await slash_with(stand_in, helper, "mod withheld")
    assert "moderator" in await reply(refused)


async def test_safety_settings_and_withheld_results_survive_a_restart(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(safety=ExplicitResults.with_markers())
    stand_in = env.stand_in
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "safety", mode="standard", suggestive=0.3, explicit=0.6)
    record = await animate_colour(env, CYAN)  # standard mode, ordinary channel: withheld
    assert await outcome(record) == "withheld"
    assert await private_text(record) == messages.withheld(Rule.ORDINARY_CHANNEL)
    assert env.stop is not None
    await env.stop()

    again = await animate_bot(comfy=env.comfy, safety=ExplicitResults.with_markers())
    settings = await mod(again, admin, "settings")
    assert messages.mode_summary("standard") in settings and "suggestive 0.30 · explicit 0.60" in settings
    listing = await withheld_list(again, admin)
    assert listing.original is not None
    [job_id] = [c.split(":")[-1] for c in custom_ids(listing.original) if c.startswith("safety:release:")]
    released = await click(stand_in, listing.original, f"safety:release:{job_id}", admin)
    assert "Released as a spoiler" in message_text(released.messages()[-1])
    assert len(channel_videos(stand_in)) == 1


async def test_after_the_token_expired_the_channel_is_told_only_that_it_was_withheld(
        animate_bot: AnimateFactory) -> None:
    env = await animate_bot(safety=ExplicitResults.with_markers(), step_time=0.2)
    stand_in = env.stand_in
    stand_in.allow_violation("token_expired")  # Discord expired the token early: the bot cannot know
    record = await animate_colour(env, CYAN)
    await record.wait_ack()
    jobs = await wait_until(lambda: env.service.recent_jobs(stand_in.user.id, stand_in.guild.id, limit=1),
                            timeout=10, what="the job to be stored")
    stand_in.expire_tokens()
    await wait_job(env.service, jobs[0].id, "failed", timeout=30)

    def told() -> list[str]:
        return [message_text(m) for m in stand_in.channel_messages() if messages.WITHHELD_NOTICE in message_text(m)]

    await record.wait_for(lambda r: bool(told()), timeout=10)
    assert told() == [f"<@{stand_in.user.id}> {messages.WITHHELD_NOTICE}"]  # no rule in public
    assert channel_videos(stand_in) == []
