"""The safety mode through ``/mod safety`` (Manage Server only, audited, shown in ``/mod settings``,
``/help`` and the audit log), and a detector that cannot load: every job refused where the mode is
not off, one ERROR in the log, never an image let through (issue 16)."""

from __future__ import annotations

import logging

import pytest

from bot.moderation.actions import Actions
from bot.safety import messages
from bot.safety.messages import Rule
from standins.discord_server import message_text
from standins.fake_safety import FakeSafetyDetector
from tests.animate.conftest import AnimateFactory
from tests.moderation_discord.helpers import PERM_MANAGE_GUILD, add_channel, add_role, member_with, mod, refusal
from tests.safety_discord.helpers import CLEAN, EXPLICIT, animate_colour, comfy_uploads, outcome
from tests.storage.helpers import list_audit

pytestmark = pytest.mark.timeout(90)


async def test_only_manage_server_changes_the_mode_and_every_change_is_audited(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    log_channel = add_channel(stand_in, "bot-log")
    mod_role = add_role(stand_in, "bot-mods")
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    helper = member_with(stand_in, "helper", roles=[mod_role])
    await mod(env, admin, "moderators", role1=mod_role)
    await mod(env, admin, "auditlog", channel=log_channel)

    assert "Only moderators can do this" in await mod(env, helper, "safety", mode="off")  # a moderator role is not enough
    assert "Only moderators can do this" in await mod(env, None, "safety", mode="off")
    assert "can't be used" in await mod(env, admin, "safety", suggestive=0.6)  # above the explicit default 0.50
    assert "Give a mode or a threshold" in await mod(env, admin, "safety")
    settings = await env.service.store.guilds.get_settings(stand_in.guild.id)
    assert (settings.safety_mode, settings.safety_suggestive) == ("strict", None)

    assert "safety mode strict → off (no detection)" in await mod(env, admin, "safety", mode="off")
    text = await mod(env, admin, "safety", mode="standard", explicit=0.7)
    assert "safety mode off (no detection) → standard" in text and "explicit threshold default → 0.70" in text
    assert "explicit threshold 0.70 → default" in await mod(env, admin, "safety", default_thresholds="both")

    records = await list_audit(env.service.store, stand_in.guild.id, action=Actions.SAFETY)
    assert [r.actor_id for r in records] == [admin.id] * 3
    assert records[-1].details["safety_mode"] == {"before": "strict", "after": "off"}  # newest first
    await env.bot.audit.flush()
    posted = "\n".join(message_text(m) for m in stand_in.channel_messages(log_channel))
    assert "changed safety mode strict → off (no detection)" in posted  # off is shown in the audit log

    # /mod settings (moderators) and /help (everyone) say which mode applies
    shown = await mod(env, helper, "settings")
    assert messages.mode_summary("standard") in shown and "suggestive 0.40 (default)" in shown
    assert "Safety detector" in shown and "fake safety detector (ready)" in shown
    help_record = await stand_in.slash(None, None, None, "help")
    help_text = message_text(await help_record.wait_message())
    assert f"On this server: {messages.mode_summary('standard')}" in help_text and messages.ALWAYS_STRICT in help_text
    await mod(env, admin, "safety", mode="off")
    help_record = await stand_in.slash(None, None, None, "help")
    assert messages.mode_summary("off") in message_text(await help_record.wait_message())


async def test_a_detector_that_cannot_load_fails_closed(animate_bot: AnimateFactory,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    env = await animate_bot(safety=FakeSafetyDetector(fail_load="model file 320n.onnx is corrupt"))
    stand_in = env.stand_in
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Content safety detector unavailable: model file 320n.onnx is corrupt. Every job is refused in servers "
        "whose safety mode is not off (python -m bot doctor says more)"]

    for colour in (CLEAN, EXPLICIT):  # clean or not: nothing goes through unchecked
        record = await animate_colour(env, colour)
        assert await refusal(record) == messages.refused(Rule.UNAVAILABLE)
    assert comfy_uploads(env) == [] and await env.service.recent_jobs(stand_in.user.id, stand_in.guild.id) == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == errors  # one ERROR, not one per job
    refused = await list_audit(env.service.store, stand_in.guild.id, action="safety.refused")
    assert [r.details["rule"] for r in refused] == ["unavailable", "unavailable"]

    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    assert "not working (model file 320n.onnx is corrupt)" in await mod(env, admin, "settings")
    await mod(env, admin, "safety", mode="off")  # no detection wanted: jobs run
    assert await outcome(await animate_colour(env, EXPLICIT)) == "delivered"
