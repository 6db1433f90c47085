"""Guild records: settings, bans and usage counters (the daily limits decided atomically)."""

from __future__ import annotations

import asyncio

import pytest

from bot.moderation.models import GuildSettings, next_utc_midnight
from bot.storage import Storage
from standins.fake_clock import FakeClock
from tests.storage.conftest import DAY
from tests.storage.helpers import (
    guild_usage_today,
    is_banned,
    last_job_at,
    list_bans,
    record_usage,
    set_guild_settings,
    usage_today,
)


async def test_guild_settings(store: Storage) -> None:
    assert await store.guilds.get_settings(7) == GuildSettings()
    assert GuildSettings().allow_animate_others is False
    settings = GuildSettings(
        allowed_channel_ids=(1, 2),
        required_role_id=3,
        cooldown_seconds=30,
        daily_quota=5,
        max_in_flight=1,
        guild_daily_cap=100,
        exempt_role_ids=(4,),
        paused=True,
        pause_message="Back soon",
        moderator_role_ids=(9,),
        audit_channel_id=77,
    )
    await set_guild_settings(store, 7, settings)
    assert await store.guilds.get_settings(7) == settings
    assert await store.guilds.get_settings(8) == GuildSettings()
    updated = await store.guilds.update_settings(7, paused=False, daily_quota=None)
    assert updated.paused is False and updated.daily_quota is None and updated.cooldown_seconds == 30
    assert await store.guilds.get_settings(7) == updated
    assert settings.channel_allowed(2) and not settings.channel_allowed(3)
    assert GuildSettings().channel_allowed(3)
    assert settings.is_exempt([4, 5]) and not settings.is_exempt([5])
    with pytest.raises(ValueError):
        GuildSettings(cooldown_seconds=-1)
    with pytest.raises(ValueError):
        await store.guilds.update_settings(7, daily_quota=-1)
    assert await store.guilds.get_settings(7) == updated  # a refused change changes nothing
    # Settings written by a newer bot (unknown key) still load.
    assert GuildSettings.from_dict({"paused": True, "future_knob": 1}).paused


async def test_bans(store: Storage, clock: FakeClock) -> None:
    assert not await is_banned(store, 1, 2)
    await store.guilds.ban(1, 2, reason="spam", by=99)
    assert await is_banned(store, 1, 2)
    assert not await is_banned(store, 3, 2)  # per guild
    ban = await store.guilds.get_ban(1, 2)
    assert ban is not None and ban.reason == "spam" and ban.banned_by == 99 and ban.banned_at == clock.now()
    clock.advance(5)
    again = await store.guilds.ban(1, 2, reason="still spamming", by=98)  # banning again replaces
    assert await store.guilds.get_ban(1, 2) == again and again.banned_at == clock.now()
    assert [b.user_id for b in await list_bans(store, 1)] == [2]
    assert await store.guilds.unban(1, 2)
    assert not await store.guilds.unban(1, 2)
    assert not await is_banned(store, 1, 2)


async def test_usage_counts_per_utc_day(store: Storage, clock: FakeClock) -> None:
    start_of_day = next_utc_midnight(clock.now())
    clock.advance(start_of_day - clock.now() + 3600)  # 01:00 UTC
    assert await usage_today(store, 100, 1) == 0
    assert await last_job_at(store, 100, 1) is None
    assert await record_usage(store, 100, 1) == 1
    clock.advance(60)
    assert await record_usage(store, 100, 1) == 2
    await record_usage(store, 100, 2)
    await record_usage(store, 200, 1)
    assert await usage_today(store, 100, 1) == 2
    assert await guild_usage_today(store, 100) == 3
    assert await last_job_at(store, 100, 1) == clock.now()
    clock.advance(DAY)  # next day: the quota resets, the cooldown memory stays
    assert await usage_today(store, 100, 1) == 0
    assert await guild_usage_today(store, 100) == 0
    assert await last_job_at(store, 100, 1) == clock.now() - DAY
    await record_usage(store, None, 1)  # direct messages
    assert await usage_today(store, None, 1) == 1


async def test_try_record_usage_enforces_limits_atomically(store: Storage, clock: FakeClock) -> None:
    clock.advance(next_utc_midnight(clock.now()) - clock.now() + 3600)  # 01:00 UTC
    # A burst of 20 concurrent requests from one member with a quota of 3: exactly 3 pass.
    results = await asyncio.gather(*(store.guilds.try_record_usage(100, 1, daily_quota=3) for _ in range(20)))
    assert sum(r.allowed for r in results) == 3
    refused = [r for r in results if not r.allowed]
    assert {r.reason for r in refused} == {"quota"}
    assert refused[0].retry_after == pytest.approx(23 * 3600)  # resets at 00:00 UTC
    assert await usage_today(store, 100, 1) == 3

    # Cooldown: refused with the time left, allowed once it has passed.
    first = await store.guilds.try_record_usage(100, 2, cooldown=60)
    assert first.allowed and first.member_today == 1
    clock.advance(20)
    second = await store.guilds.try_record_usage(100, 2, cooldown=60)
    assert not second.allowed and second.reason == "cooldown" and second.retry_after == pytest.approx(40)
    clock.advance(40)
    assert (await store.guilds.try_record_usage(100, 2, cooldown=60)).allowed

    # Guild cap counts every member; an exempt member (no limits passed) still counts.
    assert (await store.guilds.try_record_usage(100, 3)).allowed
    capped = await store.guilds.try_record_usage(100, 4, guild_daily_cap=6)
    assert not capped.allowed and capped.reason == "guild_cap" and capped.guild_today == 6
    assert (await store.guilds.try_record_usage(200, 4, guild_daily_cap=6)).allowed  # another guild


async def test_refund_takes_back_one_use_and_its_cooldown(store: Storage, clock: FakeClock) -> None:
    at = clock.now()
    assert (await store.guilds.try_record_usage(100, 1, at=at, cooldown=60)).allowed
    assert await store.guilds.refund_usage(100, 1, at=at)
    assert await usage_today(store, 100, 1) == 0 and await last_job_at(store, 100, 1) is None
    assert not await store.guilds.refund_usage(100, 1, at=at)  # nothing left to take back
    assert (await store.guilds.try_record_usage(100, 1, cooldown=60)).allowed  # no cooldown from the refunded use
