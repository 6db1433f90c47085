"""Moderation actions: validated changes to a guild's settings, bans, each written to the audit log.

Every action takes the store and the acting :class:`~bot.moderation.policy.Requester`,
checks that the actor is a moderator (:func:`~bot.moderation.policy.is_moderator`, else
:class:`bot.errors.NotAllowed`), validates its input (else :class:`bot.errors.InvalidInput`),
applies the change and appends an :class:`bot.storage.AuditRecord`. It returns an
:class:`ActionResult` with the new value and the stored record (with its id), which the
cog can render with :func:`bot.moderation.audit_text.render` for the audit channel.

Changing who is a moderator (:func:`set_moderator_roles`) and the content-safety mode or thresholds
(:func:`set_safety`) need Manage Server itself: a moderator role alone cannot do either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from bot.errors import InvalidInput, NotAllowed
from bot.moderation import messages
from bot.moderation.policy import Requester, is_moderator
from bot.moderation.models import SAFETY_MODES, Ban, GuildSettings
from bot.safety.messages import ALWAYS_STRICT, mode_summary
from bot.safety.verdict import Thresholds
from bot.storage import AuditRecord, Storage

__all__ = [
    "ActionResult",
    "KEEP",
    "Actions",
    "MAX_ROLES",
    "MAX_CHANNELS",
    "MAX_COOLDOWN",
    "MAX_DAILY_QUOTA",
    "MAX_IN_FLIGHT",
    "MAX_GUILD_DAILY_CAP",
    "set_channels",
    "set_required_role",
    "set_limits",
    "set_exempt_roles",
    "set_moderator_roles",
    "set_allow_others",
    "pause",
    "resume",
    "ban",
    "unban",
    "set_audit_channel",
    "set_safety",
    "describe_settings",
]

T = TypeVar("T")

MAX_CHANNELS: Final = 25
MAX_ROLES: Final = 25
MAX_COOLDOWN: Final = 7 * 86400.0
MAX_DAILY_QUOTA: Final = 10_000
MAX_IN_FLIGHT: Final = 100
MAX_GUILD_DAILY_CAP: Final = 1_000_000


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: "Leave this limit as it is" in :func:`set_limits` (None means "no limit").
KEEP: Final = _Keep()


class Actions:
    """Audit action names for moderation (job events are in :mod:`bot.moderation.audit_text`)."""

    CHANNELS = "settings.channels"
    REQUIRED_ROLE = "settings.required_role"
    LIMITS = "settings.limits"
    EXEMPT_ROLES = "settings.exempt_roles"
    MODERATOR_ROLES = "settings.moderator_roles"
    ALLOW_OTHERS = "settings.allow_others"
    AUDIT_CHANNEL = "settings.audit_channel"
    SAFETY = "settings.safety"
    #: ``/mod defaults`` and ``/mod caps`` (:mod:`bot.moderation.option_actions`).
    OPTION_DEFAULTS = "settings.option_defaults"
    OPTION_CAPS = "settings.option_caps"
    PAUSED = "guild.paused"
    RESUMED = "guild.resumed"
    BANNED = "member.banned"
    UNBANNED = "member.unbanned"
    #: Written by the job service when a moderator clears the guild's waiting jobs
    #: (details: ``{"count": n}``).
    QUEUE_CLEARED = "queue.cleared"


@dataclass(frozen=True)
class ActionResult(Generic[T]):
    """What an action produced: the new settings (or ban, or lifted ban) and its audit record."""

    value: T
    audit: AuditRecord


# --------------------------------------------------------------------------- helpers


async def _require_moderator(store: Storage, actor: Requester, *, manage_guild: bool = False) -> tuple[int, GuildSettings]:
    if actor.guild_id is None:
        raise NotAllowed(messages.guild_only(), detail="moderation action outside a guild")
    settings = await store.guilds.get_settings(actor.guild_id)
    allowed = actor.can_manage_guild if manage_guild else is_moderator(actor, settings)
    if not allowed:
        raise NotAllowed(messages.not_moderator(), detail=f"user {actor.user_id} is not a moderator")
    return actor.guild_id, settings


def _valid_ids(values: Iterable[int], *, what: str, limit: int) -> tuple[int, ...]:
    ids: list[int] = []
    for value in values:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"That is not a valid {what}.") from None
        if number <= 0:
            raise InvalidInput(f"That is not a valid {what}.")
        if number not in ids:
            ids.append(number)
    if len(ids) > limit:
        raise InvalidInput(f"You can set at most {limit} {what}s.")
    return tuple(ids)


def _valid_id(value: int | None, *, what: str) -> int | None:
    if value is None:
        return None
    return _valid_ids([value], what=what, limit=1)[0]


def _valid_member(value: int) -> int:
    return _valid_ids([value], what="member", limit=1)[0]


async def _audit(store: Storage, actor: Requester, action: str, details: dict[str, Any]) -> AuditRecord:
    record = AuditRecord(
        guild_id=actor.guild_id, at=store.clock.now(), actor_id=actor.user_id, action=action, details=details
    )
    record_id = await store.audit.add(record)
    return dataclasses.replace(record, id=record_id)


async def _change(
    store: Storage, actor: Requester, action: str, *, manage_guild: bool = False, **changes: Any
) -> ActionResult[GuildSettings]:
    guild_id, before = await _require_moderator(store, actor, manage_guild=manage_guild)
    after = await store.guilds.update_settings(guild_id, **changes)
    details: dict[str, Any] = {}
    for name in changes:
        old, new = getattr(before, name), getattr(after, name)
        details[name] = {"before": list(old) if isinstance(old, tuple) else old,
                         "after": list(new) if isinstance(new, tuple) else new}
    return ActionResult(after, await _audit(store, actor, action, details))


# --------------------------------------------------------------------------- settings


async def set_channels(store: Storage, actor: Requester, channel_ids: Iterable[int]) -> ActionResult[GuildSettings]:
    """Channels where /animate works; empty means every channel."""
    ids = _valid_ids(channel_ids, what="channel", limit=MAX_CHANNELS)
    return await _change(store, actor, Actions.CHANNELS, allowed_channel_ids=ids)


async def set_required_role(store: Storage, actor: Requester, role_id: int | None) -> ActionResult[GuildSettings]:
    """A role a member needs to use /animate; None removes the requirement."""
    return await _change(store, actor, Actions.REQUIRED_ROLE, required_role_id=_valid_id(role_id, what="role"))


def _limit(value: Any, name: str, *, low: float, high: float, integer: bool = True) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"The {name} must be a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"The {name} must be a number.") from None
    if integer:
        if not number.is_integer():
            raise InvalidInput(f"The {name} must be a whole number.")
        number = int(number)
    if not low <= number <= high:
        shown_high = messages.format_duration(high) if name == "cooldown" else f"{high:g}"
        raise InvalidInput(f"The {name} must be between {low:g} and {shown_high}.")
    return number


async def set_limits(
    store: Storage,
    actor: Requester,
    *,
    cooldown: float | None | _Keep = KEEP,
    daily_quota: int | None | _Keep = KEEP,
    max_in_flight: int | None | _Keep = KEEP,
    guild_daily_cap: int | None | _Keep = KEEP,
) -> ActionResult[GuildSettings]:
    """Change some limits; :data:`KEEP` leaves one as is, None removes it.

    ``cooldown`` in seconds (None or 0: none, at most 7 days); ``daily_quota`` per member
    (0 allowed: only exempt roles may generate); ``max_in_flight`` per member (at least 1;
    None: the bot default); ``guild_daily_cap`` for the whole guild (at least 1).
    """
    changes: dict[str, Any] = {}
    if not isinstance(cooldown, _Keep):
        changes["cooldown_seconds"] = _limit(cooldown, "cooldown", low=0, high=MAX_COOLDOWN, integer=False) or 0.0
    if not isinstance(daily_quota, _Keep):
        changes["daily_quota"] = _limit(daily_quota, "daily quota", low=0, high=MAX_DAILY_QUOTA)
    if not isinstance(max_in_flight, _Keep):
        changes["max_in_flight"] = _limit(max_in_flight, "jobs in flight limit", low=1, high=MAX_IN_FLIGHT)
    if not isinstance(guild_daily_cap, _Keep):
        changes["guild_daily_cap"] = _limit(guild_daily_cap, "server daily cap", low=1, high=MAX_GUILD_DAILY_CAP)
    if not changes:
        raise InvalidInput("Give at least one limit to change.")
    return await _change(store, actor, Actions.LIMITS, **changes)


async def set_exempt_roles(store: Storage, actor: Requester, role_ids: Iterable[int]) -> ActionResult[GuildSettings]:
    """Roles whose members skip the per-member limits (cooldown, quota, jobs in flight)."""
    ids = _valid_ids(role_ids, what="role", limit=MAX_ROLES)
    return await _change(store, actor, Actions.EXEMPT_ROLES, exempt_role_ids=ids)


async def set_moderator_roles(store: Storage, actor: Requester, role_ids: Iterable[int]) -> ActionResult[GuildSettings]:
    """Roles that may use /mod. Needs Manage Server (a moderator role cannot grant itself more)."""
    ids = _valid_ids(role_ids, what="role", limit=MAX_ROLES)
    return await _change(store, actor, Actions.MODERATOR_ROLES, manage_guild=True, moderator_role_ids=ids)


async def set_allow_others(store: Storage, actor: Requester, allowed: bool) -> ActionResult[GuildSettings]:
    """Whether members may animate other members' images (context menu)."""
    return await _change(store, actor, Actions.ALLOW_OTHERS, allow_animate_others=bool(allowed))


async def pause(store: Storage, actor: Requester, message: str | None = None) -> ActionResult[GuildSettings]:
    """Stop new jobs in the guild; members see ``message``. Running jobs are not touched."""
    text = messages.clean_free_text(message)
    if message is not None and len(" ".join(message.split())) > messages.MAX_FREE_TEXT:
        raise InvalidInput(f"The pause message can be at most {messages.MAX_FREE_TEXT} characters.")
    return await _change(store, actor, Actions.PAUSED, paused=True, pause_message=text)


async def resume(store: Storage, actor: Requester) -> ActionResult[GuildSettings]:
    """Accept new jobs again."""
    return await _change(store, actor, Actions.RESUMED, paused=False, pause_message=None)


async def set_audit_channel(store: Storage, actor: Requester, channel_id: int | None) -> ActionResult[GuildSettings]:
    """Where audit lines are posted; None turns the audit channel off (records are still kept)."""
    return await _change(store, actor, Actions.AUDIT_CHANNEL, audit_channel_id=_valid_id(channel_id, what="channel"))


async def set_safety(
    store: Storage,
    actor: Requester,
    *,
    mode: str | _Keep = KEEP,
    suggestive: float | None | _Keep = KEEP,
    explicit: float | None | _Keep = KEEP,
) -> ActionResult[GuildSettings]:
    """The content-safety mode (strict, standard, off) and thresholds; Manage Server only.

    A threshold of None goes back to the bot's default; :data:`KEEP` leaves it. Thresholds must
    lie between the detector's floor (0.25) and 1, suggestive not above explicit.
    """
    changes: dict[str, Any] = {}
    if not isinstance(mode, _Keep):
        if mode not in SAFETY_MODES:
            raise InvalidInput(f"The safety mode must be one of {', '.join(SAFETY_MODES)}.")
        changes["safety_mode"] = mode
    if not isinstance(suggestive, _Keep):
        changes["safety_suggestive"] = suggestive
    if not isinstance(explicit, _Keep):
        changes["safety_explicit"] = explicit
    if not changes:
        raise InvalidInput("Give a mode or a threshold to change; /mod settings shows the current ones.")
    if actor.guild_id is not None and ("safety_suggestive" in changes or "safety_explicit" in changes):
        after = (await store.guilds.get_settings(actor.guild_id)).replace(**changes)
        defaults = Thresholds()
        try:
            Thresholds(
                suggestive=defaults.suggestive if after.safety_suggestive is None else after.safety_suggestive,
                explicit=defaults.explicit if after.safety_explicit is None else after.safety_explicit,
            )
        except ValueError as exc:
            raise InvalidInput(f"Those thresholds can't be used: {exc}.") from None
    return await _change(store, actor, Actions.SAFETY, manage_guild=True, **changes)


# --------------------------------------------------------------------------- bans


async def ban(store: Storage, actor: Requester, user_id: int, reason: str | None = None) -> ActionResult[Ban]:
    """Ban a member from the bot in this guild (banning again updates the reason)."""
    guild_id, _ = await _require_moderator(store, actor)
    target = _valid_member(user_id)
    if target == actor.user_id:
        raise InvalidInput("You cannot ban yourself.")
    if reason is not None and len(" ".join(reason.split())) > messages.MAX_FREE_TEXT:
        raise InvalidInput(f"The reason can be at most {messages.MAX_FREE_TEXT} characters.")
    text = messages.clean_free_text(reason)
    record = await store.guilds.ban(guild_id, target, reason=text, by=actor.user_id)
    audit = await _audit(store, actor, Actions.BANNED, {"user_id": target, "reason": text})
    return ActionResult(record, audit)


async def unban(store: Storage, actor: Requester, user_id: int) -> ActionResult[int]:
    """Lift a ban; :class:`InvalidInput` if the member was not banned. The value is the user id."""
    guild_id, _ = await _require_moderator(store, actor)
    target = _valid_member(user_id)
    if not await store.guilds.unban(guild_id, target):
        raise InvalidInput(f"{messages.user_mention(target)} is not banned.")
    audit = await _audit(store, actor, Actions.UNBANNED, {"user_id": target})
    return ActionResult(target, audit)


# --------------------------------------------------------------------------- display


def _seconds(value: float) -> str:
    return "none" if value <= 0 else messages.format_duration(value, exact=True)


def describe_settings(settings: GuildSettings, *, default_max_in_flight: int | None = None) -> list[tuple[str, str]]:
    """(label, value) rows for ``/mod settings``; mentions as ``<#id>`` / ``<@&id>``."""

    def mentions(ids: Iterable[int], make: Any, empty: str) -> str:
        listed = [make(i) for i in ids]
        return ", ".join(listed) if listed else empty

    if settings.max_in_flight is not None:
        in_flight = str(settings.max_in_flight)
    elif default_max_in_flight is not None:
        in_flight = f"{default_max_in_flight} (bot default)"
    else:
        in_flight = "bot default"
    status = "paused" if settings.paused else "open"
    if settings.paused and settings.pause_message:
        status += f" — {settings.pause_message}"
    return [
        ("Generation", status),
        ("Channels", mentions(settings.allowed_channel_ids, messages.channel_mention, "all channels")),
        ("Required role", messages.role_mention(settings.required_role_id) if settings.required_role_id else "none"),
        ("Cooldown", _seconds(settings.cooldown_seconds)),
        ("Daily quota per member", "unlimited" if settings.daily_quota is None else str(settings.daily_quota)),
        ("Jobs in flight per member", in_flight),
        ("Server daily cap", "unlimited" if settings.guild_daily_cap is None else str(settings.guild_daily_cap)),
        ("Exempt roles", mentions(settings.exempt_role_ids, messages.role_mention, "none")),
        ("Moderator roles", mentions(settings.moderator_role_ids, messages.role_mention, "Manage Server only")),
        ("Animate others' images", "allowed" if settings.allow_animate_others else "own images only"),
        ("Audit channel", messages.channel_mention(settings.audit_channel_id) if settings.audit_channel_id else "off"),
        ("Content safety", f"{mode_summary(settings.safety_mode)}. {ALWAYS_STRICT}"),
        ("Safety thresholds", safety_thresholds_text(settings)),
    ]


def safety_thresholds_text(settings: GuildSettings) -> str:
    """``suggestive 0.40 (default) · explicit 0.50 (default)``"""
    defaults = Thresholds()

    def one(name: str, value: float | None, default: float) -> str:
        return f"{name} {default:.2f} (default)" if value is None else f"{name} {value:.2f}"

    return (one("suggestive", settings.safety_suggestive, defaults.suggestive) + " · "
            + one("explicit", settings.safety_explicit, defaults.explicit))
