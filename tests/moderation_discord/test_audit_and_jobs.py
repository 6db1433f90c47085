"""Audit log, moderators acting on jobs (buttons, /mod cancel, /mod clear) and the owner commands."""

from __future__ import annotations

from typing import Any

from bot.moderation.audit_text import JobEvents
from tests.animate.conftest import AnimateFactory, wait_job
from tests.animate.test_animate_flow import custom_ids
from tests.animate.test_buttons_and_errors import job_id_of
from standins.discord_server import InteractionRecord, message_text
from tests.moderation_discord.helpers import (
    PERM_MANAGE_GUILD,
    add_channel,
    add_role,
    animate,
    member_with,
    mod,
    refusal,
    reply,
    slash_with,
)
from tests.moderation_discord.test_settings import delivered
from tests.storage.helpers import list_audit


def cancel_button(record: InteractionRecord) -> str | None:
    original = record.original or {}
    return next((c for c in custom_ids(original) if c.startswith("animate:cancel:")), None)


async def test_every_job_event_and_action_is_recorded_and_posted_to_the_audit_channel(
    animate_bot: AnimateFactory,
) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    log_channel = add_channel(stand_in, "bot-log")
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "auditlog", channel=log_channel)
    await mod(env, admin, "ban", member=member_with(stand_in, "troll"), reason="see https://evil.example/x")

    message = await delivered(await animate(env, None))
    job_id = job_id_of(message)
    env.comfy[0].fail_at = "KSampler"
    failed = await animate(env, None)
    await failed.wait_for(lambda r: "failed" in str((r.original or {}).get("content")), timeout=10)
    env.comfy[0].fail_at = None
    delete = await stand_in.click(message, f"animate:delete:{job_id}")
    await delete.wait_for(lambda r: bool(r.deleted))

    store = env.service.store
    records = await list_audit(store, stand_in.guild.id, limit=100)
    actions = [r.action for r in records]
    jobs = await env.service.recent_jobs(stand_in.user.id, stand_in.guild.id)
    assert len(jobs) == 2
    for job in jobs:
        assert (await list_audit(store, stand_in.guild.id, job_id=job.id, action=JobEvents.QUEUED))
    assert actions.count(JobEvents.DELIVERED) == 1 and actions.count(JobEvents.FAILED) == 1
    assert actions.count(JobEvents.DELETED) == 1
    assert "settings.audit_channel" in actions and "member.banned" in actions

    audit = env.bot.audit
    await audit.flush()
    lines = [m for m in stand_in.channel_messages(log_channel)]
    texts = [message_text(m) for m in lines]
    joined = "\n".join(texts)
    assert "changed audit channel off →" in joined
    assert "banned" in joined and "evil.example" not in joined
    queued = [m for m in lines if "queued job" in message_text(m)]
    # no input thumbnail: the audit channel is not age-restricted (issue 16; tests/safety_discord has the other case)
    assert len(queued) == 2 and not any(m["attachments"] for m in queued)
    link = f"https://discord.com/channels/{stand_in.guild.id}/{stand_in.channel.id}/{message['id']}"
    assert any("delivered" in t and link in t for t in texts)
    assert any("failed" in t for t in texts) and any(f"deleted by <@{stand_in.user.id}>" in t for t in texts)
    assert "127.0.0.1" not in joined and "http://" not in joined
    posts = stand_in.requests_to("POST", f"/channels/{log_channel.id}/messages")
    assert len(posts) == len(lines) and all(r.json["allowed_mentions"] == {"parse": []} for r in posts)  # no pings


async def test_a_moderator_cancels_and_deletes_any_job_and_clears_the_line(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.3, comfyui_max_pending=0)
    stand_in = env.stand_in
    mods = add_role(stand_in, "mods")
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    helper = member_with(stand_in, "helper", roles=[mods])
    bob = member_with(stand_in, "bob")
    carol = member_with(stand_in, "carol")
    await mod(env, admin, "moderators", role1=mods)

    running = await animate(env, bob, steps=30)
    await running.wait_for(lambda r: cancel_button(r) is not None and "step" in str((r.original or {}).get("content")),
                           timeout=10)
    waiting = [await animate(env, member, steps=30) for member in (carol, bob)]
    for record in waiting:
        await record.wait_for(lambda r: "in line" in str((r.original or {}).get("content")), timeout=5)

    # a member who is not a moderator cannot cancel bob's job, nor use /mod cancel
    button = cancel_button(running)
    assert button is not None
    refused = await stand_in.click(running.original, button, user=carol)  # type: ignore[arg-type]
    assert "Only the member who started" in await refusal(refused)
    job_id = button.split(":")[-1]
    assert "Only moderators" in await mod(env, carol, "cancel", job=job_id)

    # the moderator role's /mod clear cancels the waiting line, each shows a cancelled state
    assert "Cleared 2 waiting jobs" in await mod(env, helper, "clear")
    for record in waiting:
        await record.wait_for(lambda r: "Cancelled by a moderator" in str((r.original or {}).get("content")), timeout=5)
    # and /mod cancel stops the running one
    assert "Cancelled job" in await mod(env, helper, "cancel", job=job_id)
    await wait_job(env.service, job_id, "cancelled")
    await running.wait_for(lambda r: "Cancelled" in str((r.original or {}).get("content")), timeout=5)
    cancelled = await list_audit(env.service.store, stand_in.guild.id, job_id=job_id, action=JobEvents.CANCELLED)
    assert cancelled and cancelled[0].actor_id == helper.id
    cleared = await list_audit(env.service.store, stand_in.guild.id, action="queue.cleared")
    assert cleared and cleared[0].details == {"count": 2}

    # the moderator deletes bob's delivered result with the button
    result = await delivered(await animate(env, bob, steps=2))
    result_id = job_id_of(result)
    press = await stand_in.click(result, f"animate:delete:{result_id}", user=helper)
    await press.wait_for(lambda r: bool(r.deleted))
    deleted = await list_audit(env.service.store, stand_in.guild.id, job_id=result_id, action=JobEvents.DELETED)
    assert deleted and deleted[0].actor_id == helper.id


async def owner_reply(env: Any, user: Any, name: str) -> str:
    record = await slash_with(env.stand_in, user, name)
    text = await reply(record)
    assert record.ephemeral
    return text


async def test_owner_commands_refuse_others_and_never_show_urls(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(server_urls=("http://user:secret@127.0.0.1:9/",))
    stand_in = env.stand_in
    app_owner = stand_in.guild.members[0]  # the stand-in's application owner
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    for user in (None, admin):
        assert "Only the bot's owner" in await owner_reply(env, user, "owner servers")
        assert "Only the bot's owner" in await owner_reply(env, user, "owner reload-workflows")

    servers = await owner_reply(env, app_owner, "owner servers")
    up, down = (next(line for line in servers.splitlines() if name in line) for name in ("gpu-1", "down-1"))
    assert "🟢 up" in up and "websocket connected" in up
    assert "🟢" not in down and "failed check" in down
    assert "127.0.0.1" not in servers and "secret" not in servers and "http" not in servers
    reloaded = await owner_reply(env, app_owner, "owner reload-workflows")
    assert "Loaded" in reloaded and env.service.workflows.default is not None
    assert env.service.workflows.default.name in reloaded


async def test_owner_ids_setting_names_owners(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    admin = member_with(env.stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await env.stop()  # type: ignore[misc]
    env = await animate_bot(comfy=env.comfy, owner_ids=(admin.id,))
    assert "gpu-1" in await owner_reply(env, admin, "owner servers")
    assert "Only the bot's owner" in await owner_reply(env, None, "owner servers")
