"""Who may generate, where and how much: the admission checks run before a job is queued.

:class:`Requester` is what the Discord layer knows about the member asking (ids, roles and
two permissions), so everything here is testable without Discord. :class:`AdmissionPolicy`
runs the checks in a fixed order and raises :class:`bot.errors.NotAllowed` or
:class:`bot.errors.LimitReached` with a message from :mod:`bot.moderation.messages`:

1. direct messages allowed (``ALLOW_DMS``);
2. not banned in the guild;
3. guild not paused;
4. channel allowed (a thread counts as its parent channel);
5. required role held;
6. animating someone else's image allowed;
7. jobs in flight below the guild's ``max_in_flight`` (or the bot default);
8. cooldown, member daily quota and guild daily cap, checked *and counted* in one store
   transaction (:meth:`bot.storage.guilds.GuildStore.try_record_usage`), so a burst cannot slip past.

Exempt roles skip the member limits (7 and the cooldown/quota of 8) but their jobs still
count towards the day's usage, and the guild daily cap still applies to them (it protects
the server owner's GPU budget). Moderators are *not* exempt from limits unless they also
hold an exempt role; give the moderator role an exempt entry to lift their limits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from bot.clock import Clock
from bot.errors import LimitReached, NotAllowed
from bot.moderation import messages
from bot.moderation.caps import OptionCaps, OptionRules
from bot.moderation.models import Ban, GuildSettings, UsageDecision, next_utc_midnight

__all__ = [
    "Requester",
    "Admission",
    "AdmissionPolicy",
    "PolicyStore",
    "is_moderator",
    "can_moderate_job",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requester:
    """The member asking, as the Discord layer sees them.

    ``guild_id`` is None in direct messages. ``parent_channel_id`` is the parent channel
    when the request comes from a thread (channel rules apply to the parent), else None.
    ``can_manage_guild``/``can_manage_messages`` are the member's resolved permissions in
    that channel (administrators have both).
    """

    user_id: int
    guild_id: int | None
    channel_id: int
    role_ids: frozenset[int] = frozenset()
    can_manage_guild: bool = False
    can_manage_messages: bool = False
    parent_channel_id: int | None = None


@dataclass(frozen=True)
class Admission:
    """A request that passed every check (its usage is already counted).

    ``remaining_today``/``quota``: the member's daily quota and what is left after this job
    (None when no quota applies: none set, or exempt). ``resets_at``: epoch time of the
    next 00:00 UTC when a daily limit applies, else None. ``note``: a line the UI may show
    with the job ("2 of 5 generations left today; resets at 00:00 UTC"), or None.
    ``max_in_flight``: what to pass as ``JobRequest.max_in_flight`` so the fair queue enforces
    the same limit atomically (None for exempt members). ``exempt``: an exempt role applied.
    ``recorded_at``/``guild_id``/``user_id``: which usage was counted (for :meth:`AdmissionPolicy.refund`).
    """

    remaining_today: int | None
    quota: int | None
    resets_at: float | None
    note: str | None
    max_in_flight: int | None = None
    exempt: bool = False
    recorded_at: float | None = None
    guild_id: int | None = None
    user_id: int | None = None


class PolicyStore(Protocol):
    """What the admission policy needs of the guild records (:class:`bot.storage.guilds.GuildStore`)."""

    async def get_settings(self, guild_id: int) -> GuildSettings: ...

    async def get_ban(self, guild_id: int, user_id: int) -> Ban | None: ...

    async def get_option_rules(self, guild_id: int) -> OptionRules: ...

    async def refund_usage(self, guild_id: int | None, user_id: int, *, at: float) -> bool: ...

    async def try_record_usage(
        self,
        guild_id: int | None,
        user_id: int,
        *,
        at: float | None = None,
        cooldown: float = 0.0,
        daily_quota: int | None = None,
        guild_daily_cap: int | None = None,
    ) -> UsageDecision: ...


def is_moderator(requester: Requester, settings: GuildSettings) -> bool:
    """Manage Server, or one of the guild's moderator roles. Never true in direct messages."""
    if requester.guild_id is None:
        return False
    return requester.can_manage_guild or settings.is_moderator_role(requester.role_ids)


def can_moderate_job(requester: Requester, job_owner_id: int, settings: GuildSettings) -> bool:
    """May cancel/delete this job: its owner, a moderator, or a member with Manage Messages."""
    if requester.user_id == job_owner_id:
        return True
    if requester.guild_id is None:
        return False
    return is_moderator(requester, settings) or requester.can_manage_messages


def _channel_allowed(requester: Requester, settings: GuildSettings) -> bool:
    if settings.channel_allowed(requester.channel_id):
        return True
    return requester.parent_channel_id is not None and settings.channel_allowed(requester.parent_channel_id)


class AdmissionPolicy:
    """Decides whether a member may start a job now, and counts it if so.

    ``store``: the guild records (``Storage.guilds``, or anything with :class:`PolicyStore`'s methods).
    ``clock``: the time source for usage (use the store's clock).
    ``allow_dms``: whether direct messages may generate (``ALLOW_DMS``).
    ``default_max_in_flight``: per-member jobs in flight when the guild sets none
    (``MAX_JOBS_PER_MEMBER``); None means no limit.
    """

    def __init__(
        self,
        store: PolicyStore,
        *,
        clock: Clock,
        allow_dms: bool,
        default_max_in_flight: int | None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.allow_dms = allow_dms
        self.default_max_in_flight = default_max_in_flight

    async def settings_for(self, requester: Requester) -> GuildSettings:
        """The guild's settings; direct messages get the defaults."""
        if requester.guild_id is None:
            return GuildSettings()
        return await self.store.get_settings(requester.guild_id)

    async def option_rules(self, guild_id: int | None) -> OptionRules:
        """The guild's option defaults and caps (:mod:`bot.moderation.caps`); direct messages: none."""
        if guild_id is None:
            return OptionRules()
        return await self.store.get_option_rules(guild_id)

    async def caps_for(self, guild_id: int | None) -> OptionCaps:
        """The guild's caps alone (``max_extensions`` always has a value; direct messages: the defaults)."""
        return (await self.option_rules(guild_id)).caps

    def in_flight_limit(self, settings: GuildSettings) -> int | None:
        """The per-member jobs-in-flight limit for a non-exempt member."""
        return settings.max_in_flight if settings.max_in_flight is not None else self.default_max_in_flight

    async def check_access(self, requester: Requester, *, animating_others_image: bool = False) -> GuildSettings:
        """Checks 1-6 (no limits, nothing counted); returns the guild settings.

        Cogs may call this alone to refuse early (for example before downloading an image).
        """
        if requester.guild_id is None:
            if not self.allow_dms:
                raise NotAllowed(messages.dms_not_allowed(), detail="direct messages are disabled")
            settings = GuildSettings()
        else:
            ban = await self.store.get_ban(requester.guild_id, requester.user_id)
            if ban is not None:
                raise NotAllowed(messages.banned(ban.reason), detail=f"user {requester.user_id} is banned")
            settings = await self.store.get_settings(requester.guild_id)
            if settings.paused:
                raise NotAllowed(messages.paused(settings.pause_message), detail="guild paused")
            if not _channel_allowed(requester, settings):
                mentions = [messages.channel_mention(c) for c in settings.allowed_channel_ids]
                raise NotAllowed(messages.wrong_channel(mentions), detail=f"channel {requester.channel_id} not allowed")
            if settings.required_role_id is not None and settings.required_role_id not in requester.role_ids:
                raise NotAllowed(
                    messages.missing_role(messages.role_mention(settings.required_role_id)),
                    detail="required role missing",
                )
        if animating_others_image and not settings.allow_animate_others:
            raise NotAllowed(messages.others_image_not_allowed(), detail="animating others' images is off")
        return settings

    async def admit(
        self, requester: Requester, *, animating_others_image: bool = False, in_flight: int
    ) -> Admission:
        """Run every check and count the job; raise NotAllowed/LimitReached on refusal.

        ``in_flight``: the member's jobs waiting or running now (the fair queue's count).
        On success the job is already counted towards cooldown, quota and guild cap; call
        :meth:`refund` if it is then refused before it ran (for example the queue is full).
        """
        settings = await self.check_access(requester, animating_others_image=animating_others_image)
        exempt = settings.is_exempt(requester.role_ids)
        limit = None if exempt else self.in_flight_limit(settings)
        if limit is not None and in_flight >= limit:
            raise LimitReached(
                messages.jobs_in_flight(limit), detail=f"user {requester.user_id}: {in_flight} in flight, limit {limit}"
            )

        now = self.clock.now()
        quota = None if exempt else settings.daily_quota
        decision = await self.store.try_record_usage(
            requester.guild_id,
            requester.user_id,
            at=now,
            cooldown=0.0 if exempt else settings.cooldown_seconds,
            daily_quota=quota,
            guild_daily_cap=settings.guild_daily_cap,
        )
        if not decision.allowed:
            retry = decision.retry_after if decision.retry_after is not None else 0.0
            detail = f"user {requester.user_id}: {decision.reason} (member {decision.member_today}, guild {decision.guild_today})"
            if decision.reason == "cooldown":
                raise LimitReached(messages.cooldown(retry), retry_after=retry, detail=detail)
            if decision.reason == "quota":
                raise LimitReached(messages.daily_quota(quota or 0, retry), retry_after=retry, detail=detail)
            if decision.reason == "guild_cap":
                raise LimitReached(
                    messages.guild_daily_cap(settings.guild_daily_cap or 0, retry), retry_after=retry, detail=detail
                )
            raise RuntimeError(f"unknown usage refusal {decision.reason!r}")

        remaining = None if quota is None else max(0, quota - decision.member_today)
        daily_limit = quota is not None or settings.guild_daily_cap is not None
        return Admission(
            remaining_today=remaining,
            quota=quota,
            resets_at=next_utc_midnight(now) if daily_limit else None,
            note=messages.remaining_quota(remaining, quota) if quota is not None and remaining is not None else None,
            max_in_flight=limit,
            exempt=exempt,
            recorded_at=now,
            guild_id=requester.guild_id,
            user_id=requester.user_id,
        )

    async def refund(self, admission: Admission) -> bool:
        """Give back the usage counted by :meth:`admit` for a job refused before it ran."""
        if admission.recorded_at is None or admission.user_id is None:
            return False
        return await self.store.refund_usage(admission.guild_id, admission.user_id, at=admission.recorded_at)
