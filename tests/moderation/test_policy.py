"""Admission checks against a real store: each refusal, its message and retry time."""

from __future__ import annotations

import asyncio

import pytest

from standins.fake_clock import FakeClock
from bot.errors import LimitReached, NotAllowed
from bot.moderation import messages
from bot.moderation.policy import AdmissionPolicy, can_moderate_job, is_moderator
from bot.moderation.models import GuildSettings, next_utc_midnight
from bot.storage import Storage
from tests.storage.helpers import usage_today

from .conftest import EXEMPT_ROLE, GUILD, MOD_ROLE, member, refused


async def test_defaults_admit_and_count(policy: AdmissionPolicy, store: Storage) -> None:
    admission = await policy.admit(member(), in_flight=0)
    assert admission.remaining_today is None and admission.quota is None and admission.note is None
    assert admission.max_in_flight == 2  # bot default handed to the fair queue
    assert await usage_today(store, GUILD, 1) == 1


async def test_direct_messages(store: Storage, clock: FakeClock) -> None:
    closed = AdmissionPolicy(store.guilds, clock=clock, allow_dms=False, default_max_in_flight=2)
    with pytest.raises(NotAllowed) as exc:
        await closed.admit(member(guild_id=None), in_flight=0)
    assert exc.value.user_message == messages.dms_not_allowed()
    opened = AdmissionPolicy(store.guilds, clock=clock, allow_dms=True, default_max_in_flight=2)
    assert (await opened.admit(member(guild_id=None), in_flight=0)).max_in_flight == 2
    with refused(NotAllowed, "own images"):
        await opened.admit(member(guild_id=None), in_flight=0, animating_others_image=True)


async def test_banned_member_is_refused_with_reason(policy: AdmissionPolicy, store: Storage) -> None:
    await store.guilds.ban(GUILD, 1, reason="spamming", by=900)
    with pytest.raises(NotAllowed) as exc:
        await policy.admit(member(1), in_flight=0)
    assert exc.value.user_message.endswith("Reason: spamming")
    await policy.admit(member(2), in_flight=0)  # others are fine
    assert await usage_today(store, GUILD, 1) == 0  # a refusal counts nothing


async def test_paused_guild_shows_the_message(policy: AdmissionPolicy, store: Storage) -> None:
    await store.guilds.update_settings(GUILD, paused=True, pause_message="GPU maintenance until 18:00")
    with pytest.raises(NotAllowed) as exc:
        await policy.admit(member(roles=(EXEMPT_ROLE,)), in_flight=0)
    assert exc.value.user_message == "Generation is paused on this server: GPU maintenance until 18:00"


async def test_channel_and_thread(policy: AdmissionPolicy, store: Storage) -> None:
    await store.guilds.update_settings(GUILD, allowed_channel_ids=(11, 12))
    with pytest.raises(NotAllowed) as exc:
        await policy.admit(member(channel_id=10), in_flight=0)
    assert exc.value.user_message == "/animate works in <#11>, <#12>."
    await policy.admit(member(channel_id=12), in_flight=0)
    await policy.admit(member(2, channel_id=77, parent=11), in_flight=0)  # thread of an allowed channel


async def test_required_role(policy: AdmissionPolicy, store: Storage) -> None:
    await store.guilds.update_settings(GUILD, required_role_id=42)
    with pytest.raises(NotAllowed) as exc:
        await policy.admit(member(roles=(MOD_ROLE,)), in_flight=0)
    assert exc.value.user_message == "You need the <@&42> role to use /animate."
    await policy.admit(member(roles=(42,)), in_flight=0)


async def test_others_images(policy: AdmissionPolicy, store: Storage) -> None:
    with pytest.raises(NotAllowed) as exc:
        await policy.admit(member(), in_flight=0, animating_others_image=True)
    assert exc.value.user_message == messages.others_image_not_allowed()
    await store.guilds.update_settings(GUILD, allow_animate_others=True)
    await policy.admit(member(), in_flight=0, animating_others_image=True)


async def test_check_order_ban_before_pause_before_channel(policy: AdmissionPolicy, store: Storage) -> None:
    await store.guilds.update_settings(GUILD, paused=True, allowed_channel_ids=(11,), required_role_id=42)
    await store.guilds.ban(GUILD, 1, reason=None, by=900)
    with refused(NotAllowed, "not allowed to use this bot"):
        await policy.admit(member(1), in_flight=0)
    with refused(NotAllowed, "paused"):
        await policy.admit(member(2), in_flight=0)
    await store.guilds.update_settings(GUILD, paused=False)
    with refused(NotAllowed, "works in"):
        await policy.admit(member(2), in_flight=0)


async def test_in_flight_limit_guild_and_default(policy: AdmissionPolicy, store: Storage) -> None:
    with pytest.raises(LimitReached) as exc:
        await policy.admit(member(), in_flight=2)  # bot default 2
    assert exc.value.user_message == "You already have 2 jobs in progress; wait for one to finish."
    await store.guilds.update_settings(GUILD, max_in_flight=1)
    with refused(LimitReached, "1 job in progress"):
        await policy.admit(member(), in_flight=1)
    assert await usage_today(store, GUILD, 1) == 0  # refused before anything is counted
    assert (await policy.admit(member(), in_flight=0)).max_in_flight == 1


async def test_cooldown_refuses_with_time_left(policy: AdmissionPolicy, store: Storage, clock: FakeClock) -> None:
    await store.guilds.update_settings(GUILD, cooldown_seconds=180)
    await policy.admit(member(), in_flight=0)
    clock.advance(30)
    with pytest.raises(LimitReached) as exc:
        await policy.admit(member(), in_flight=0)
    assert exc.value.retry_after == pytest.approx(150)
    assert exc.value.user_message == "You can animate again in 3 min."
    clock.advance(149)
    with refused(LimitReached, "in 1 s"):
        await policy.admit(member(), in_flight=0)
    clock.advance(1)
    await policy.admit(member(), in_flight=0)
    await policy.admit(member(2), in_flight=0)  # the cooldown is per member


async def test_daily_quota_counts_down_and_resets_at_midnight(
    policy: AdmissionPolicy, store: Storage, clock: FakeClock
) -> None:
    await store.guilds.update_settings(GUILD, daily_quota=3)
    first = await policy.admit(member(), in_flight=0)
    assert (first.remaining_today, first.quota) == (2, 3)
    assert first.note == "2 of 3 generations left today; resets at 00:00 UTC"
    assert first.resets_at == next_utc_midnight(clock.now())
    await policy.admit(member(), in_flight=0)
    assert (await policy.admit(member(), in_flight=0)).remaining_today == 0
    clock.advance(48 * 60)  # 01:48 UTC: 22 h 12 min to midnight
    with pytest.raises(LimitReached) as exc:
        await policy.admit(member(), in_flight=0)
    assert exc.value.retry_after == pytest.approx(22 * 3600 + 12 * 60)
    assert exc.value.user_message == (
        "You've used all 3 generations for today; they reset at 00:00 UTC (in 22 h 12 min)."
    )
    clock.advance(exc.value.retry_after)
    assert (await policy.admit(member(), in_flight=0)).remaining_today == 2


async def test_guild_cap_applies_to_everyone(policy: AdmissionPolicy, store: Storage) -> None:
    await store.guilds.update_settings(GUILD, guild_daily_cap=2, exempt_role_ids=(EXEMPT_ROLE,))
    await policy.admit(member(1), in_flight=0)
    await policy.admit(member(2, roles=(EXEMPT_ROLE,)), in_flight=0)  # exempt still counts
    for who in (member(3), member(4, roles=(EXEMPT_ROLE,))):
        with pytest.raises(LimitReached) as exc:
            await policy.admit(who, in_flight=0)
        assert exc.value.user_message.startswith("This server has used all 2 generations it allows per day")
        assert exc.value.retry_after == pytest.approx(23 * 3600)


async def test_exempt_role_skips_member_limits(policy: AdmissionPolicy, store: Storage, clock: FakeClock) -> None:
    await store.guilds.update_settings(
        GUILD, daily_quota=1, cooldown_seconds=600, max_in_flight=1, exempt_role_ids=(EXEMPT_ROLE,)
    )
    vip = member(roles=(EXEMPT_ROLE,))
    for _ in range(5):
        admission = await policy.admit(vip, in_flight=10)
        assert admission.exempt and admission.max_in_flight is None and admission.note is None
    assert await usage_today(store, GUILD, 1) == 5  # still counted
    # A moderator without an exempt role is limited like everyone.
    mod = member(2, roles=(MOD_ROLE,), manage_guild=True)
    await policy.admit(mod, in_flight=0)
    with pytest.raises(LimitReached):
        await policy.admit(mod, in_flight=0)


@pytest.mark.timeout(10)
async def test_a_burst_never_exceeds_the_quota(policy: AdmissionPolicy, store: Storage) -> None:
    await store.guilds.update_settings(GUILD, daily_quota=5)
    results = await asyncio.gather(
        *(policy.admit(member(), in_flight=0) for _ in range(40)), return_exceptions=True
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(admitted) == 5
    assert sorted(a.remaining_today for a in admitted) == [0, 1, 2, 3, 4]
    assert all(isinstance(r, LimitReached) and "all 5 generations" in r.user_message for r in refused)
    assert await usage_today(store, GUILD, 1) == 5


async def test_refund_gives_the_quota_slot_back_once(policy: AdmissionPolicy, store: Storage) -> None:
    await store.guilds.update_settings(GUILD, daily_quota=1)
    admission = await policy.admit(member(), in_flight=0)
    assert await policy.refund(admission)
    again = await policy.admit(member(), in_flight=0)  # the quota slot came back
    assert again.remaining_today == 0
    with pytest.raises(LimitReached):
        await policy.admit(member(), in_flight=0)
    assert await policy.refund(again)
    assert await usage_today(store, GUILD, 1) == 0
    assert not await policy.refund(again)  # nothing left to take back


def test_moderator_checks() -> None:
    settings = GuildSettings(moderator_role_ids=(MOD_ROLE,))
    assert is_moderator(member(manage_guild=True), settings)
    assert is_moderator(member(roles=(MOD_ROLE,)), settings)
    assert not is_moderator(member(roles=(EXEMPT_ROLE,)), settings)
    assert not is_moderator(member(guild_id=None, manage_guild=True), settings)
    assert can_moderate_job(member(1), 1, settings)  # own job
    assert not can_moderate_job(member(1), 2, settings)
    assert can_moderate_job(member(1, roles=(MOD_ROLE,)), 2, settings)
    assert can_moderate_job(member(1, manage_messages=True), 2, settings)
    assert not can_moderate_job(member(1, guild_id=None, manage_messages=True), 2, settings)
