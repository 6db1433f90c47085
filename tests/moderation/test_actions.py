"""Moderation actions: only moderators, validated, audited, and kept across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from standins.fake_clock import FakeClock
from bot.errors import InvalidInput, NotAllowed
from bot.moderation import actions
from bot.moderation.actions import KEEP, Actions, describe_settings
from bot.moderation.policy import AdmissionPolicy
from bot.moderation.models import Ban, GuildSettings
from bot.storage import Storage
from tests.storage.helpers import is_banned, list_audit

from .conftest import EXEMPT_ROLE, GUILD, MOD_ROLE, admin, member, refused

MOD = member(800, roles=(MOD_ROLE,))


async def test_every_action_refuses_plain_members(store: Storage) -> None:
    plain = member(5, roles=(EXEMPT_ROLE,), manage_messages=True)
    calls = [
        actions.set_channels(store, plain, [11]),
        actions.set_required_role(store, plain, 42),
        actions.set_limits(store, plain, daily_quota=3),
        actions.set_exempt_roles(store, plain, [EXEMPT_ROLE]),
        actions.set_moderator_roles(store, plain, [5]),
        actions.set_allow_others(store, plain, True),
        actions.pause(store, plain, "no"),
        actions.resume(store, plain),
        actions.ban(store, plain, 6, "x"),
        actions.unban(store, plain, 6),
        actions.set_audit_channel(store, plain, 13),
    ]
    for call in calls:
        with refused(NotAllowed, "Only moderators"):
            await call
    assert await store.guilds.get_settings(GUILD) == GuildSettings()
    assert await list_audit(store, GUILD) == []
    assert not await is_banned(store, GUILD, 6)


async def test_outside_a_guild(store: Storage) -> None:
    with refused(NotAllowed, "only works in a server"):
        await actions.pause(store, member(guild_id=None, manage_guild=True))


async def test_moderator_role_changes_settings_and_audits(store: Storage, clock: FakeClock) -> None:
    await actions.set_moderator_roles(store, admin(), [MOD_ROLE])
    result = await actions.set_channels(store, MOD, [11, 12, 11])
    assert result.value.allowed_channel_ids == (11, 12)
    assert result.audit.id is not None and result.audit.actor_id == MOD.user_id
    assert result.audit.action == Actions.CHANNELS and result.audit.at == clock.now()
    assert result.audit.details == {"allowed_channel_ids": {"before": [], "after": [11, 12]}}
    stored = await list_audit(store, GUILD, action=Actions.CHANNELS)
    assert stored == [result.audit]


async def test_only_manage_server_hands_out_moderator_roles(store: Storage) -> None:
    await actions.set_moderator_roles(store, admin(), [MOD_ROLE])
    with refused(NotAllowed, "Only moderators"):
        await actions.set_moderator_roles(store, MOD, [MOD_ROLE, 777])
    assert (await store.guilds.get_settings(GUILD)).moderator_role_ids == (MOD_ROLE,)


async def test_limits_validate_keep_and_clear(store: Storage) -> None:
    result = await actions.set_limits(store, admin(), cooldown=90, daily_quota=5, max_in_flight=2, guild_daily_cap=100)
    assert (result.value.cooldown_seconds, result.value.daily_quota, result.value.max_in_flight,
            result.value.guild_daily_cap) == (90.0, 5, 2, 100)
    result = await actions.set_limits(store, admin(), daily_quota=None, cooldown=None)
    assert result.value.daily_quota is None and result.value.cooldown_seconds == 0
    assert result.value.guild_daily_cap == 100  # KEEP by default
    assert set(result.audit.details) == {"daily_quota", "cooldown_seconds"}
    bad = [
        dict(cooldown=-1), dict(cooldown=8 * 86400), dict(daily_quota=2.5), dict(daily_quota=-1),
        dict(max_in_flight=0), dict(guild_daily_cap=0), dict(daily_quota="many"), dict(max_in_flight=True), {},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidInput):
            await actions.set_limits(store, admin(), **kwargs)
    assert len(await list_audit(store, GUILD, action=Actions.LIMITS)) == 2
    assert (await actions.set_limits(store, admin(), daily_quota=0, max_in_flight=KEEP)).value.daily_quota == 0


async def test_pause_resume_and_admission(store: Storage, policy: AdmissionPolicy) -> None:
    result = await actions.pause(store, admin(), "  Upgrading   the GPU @everyone ")
    assert result.value.paused and "@everyone" not in (result.value.pause_message or "")
    with refused(NotAllowed, "paused on this server: Upgrading the GPU"):
        await policy.admit(member(), in_flight=0)
    with pytest.raises(InvalidInput):
        await actions.pause(store, admin(), "x" * 1000)
    resumed = await actions.resume(store, admin())
    assert not resumed.value.paused and resumed.value.pause_message is None
    await policy.admit(member(), in_flight=0)
    assert [r.action for r in await list_audit(store, GUILD)] == [Actions.RESUMED, Actions.PAUSED]


async def test_ban_and_unban(store: Storage, policy: AdmissionPolicy) -> None:
    await actions.set_moderator_roles(store, admin(), [MOD_ROLE])
    result = await actions.ban(store, MOD, 1, "spam")
    assert isinstance(result.value, Ban) and result.value.banned_by == MOD.user_id
    assert result.audit.details == {"user_id": 1, "reason": "spam"}
    with refused(NotAllowed, "Reason: spam"):
        await policy.admit(member(1), in_flight=0)
    with refused(InvalidInput, "yourself"):
        await actions.ban(store, MOD, MOD.user_id)
    undone = await actions.unban(store, MOD, 1)
    assert undone.value == 1 and undone.audit.action == Actions.UNBANNED
    await policy.admit(member(1), in_flight=0)
    with refused(InvalidInput, "is not banned"):
        await actions.unban(store, MOD, 1)
    assert [r.action for r in await list_audit(store, GUILD)] == [
        Actions.UNBANNED, Actions.BANNED, Actions.MODERATOR_ROLES
    ]


async def test_invalid_ids(store: Storage) -> None:
    with pytest.raises(InvalidInput):
        await actions.set_channels(store, admin(), [0])
    with pytest.raises(InvalidInput):
        await actions.set_exempt_roles(store, admin(), range(1, 40))
    with pytest.raises(InvalidInput):
        await actions.set_required_role(store, admin(), -5)


async def test_settings_survive_reopening(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "db" / "jobs.sqlite3"
    async with await Storage.open(path, clock=clock) as store:
        await actions.set_channels(store, admin(), [11])
        await actions.set_required_role(store, admin(), 42)
        await actions.set_limits(store, admin(), cooldown=60, daily_quota=4, max_in_flight=1, guild_daily_cap=50)
        await actions.set_exempt_roles(store, admin(), [EXEMPT_ROLE])
        await actions.set_moderator_roles(store, admin(), [MOD_ROLE])
        await actions.set_allow_others(store, admin(), True)
        await actions.set_audit_channel(store, admin(), 13)
        await actions.pause(store, admin(), "later")
        await actions.ban(store, admin(), 7, "rude")
        expected = await store.guilds.get_settings(GUILD)
    async with await Storage.open(path, clock=clock) as store:
        assert await store.guilds.get_settings(GUILD) == expected == GuildSettings(
            allowed_channel_ids=(11,), required_role_id=42, cooldown_seconds=60, daily_quota=4, max_in_flight=1,
            guild_daily_cap=50, exempt_role_ids=(EXEMPT_ROLE,), allow_animate_others=True, paused=True,
            pause_message="later", moderator_role_ids=(MOD_ROLE,), audit_channel_id=13,
        )
        assert (await store.guilds.get_ban(GUILD, 7)).reason == "rude"
        assert len(await list_audit(store, GUILD)) == 9


def test_describe_settings() -> None:
    rows = dict(describe_settings(GuildSettings(), default_max_in_flight=2))
    assert rows["Channels"] == "all channels" and rows["Required role"] == "none"
    assert rows["Jobs in flight per member"] == "2 (bot default)" and rows["Generation"] == "open"
    custom = dict(describe_settings(GuildSettings(
        allowed_channel_ids=(11, 12), required_role_id=42, cooldown_seconds=90, daily_quota=5,
        exempt_role_ids=(EXEMPT_ROLE,), paused=True, pause_message="brb", audit_channel_id=13,
    )))
    assert custom["Channels"] == "<#11>, <#12>" and custom["Required role"] == "<@&42>"
    assert custom["Cooldown"] == "1 min 30 s" and custom["Daily quota per member"] == "5"
    assert custom["Exempt roles"] == f"<@&{EXEMPT_ROLE}>" and custom["Audit channel"] == "<#13>"
    assert custom["Generation"] == "paused — brb"
