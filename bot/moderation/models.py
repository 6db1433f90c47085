"""Moderation data: a guild's :class:`GuildSettings`, a :class:`Ban`, and the :class:`UsageDecision`
of the daily limits, with the UTC days those limits count in.

Plain values, no I/O: :mod:`bot.storage.guilds` keeps them, :mod:`bot.moderation.policy` and
:mod:`bot.moderation.actions` decide with them. Days for usage counters are UTC calendar days
(``YYYY-MM-DD``); quotas reset at 00:00 UTC.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GuildSettings", "Ban", "UsageDecision", "SAFETY_MODES", "SAFETY_FIELDS", "utc_day", "next_utc_midnight"]

#: A guild's content-safety modes (``bot.safety.policy.Mode`` values); ``strict`` is every guild's default.
SAFETY_MODES: tuple[str, ...] = ("strict", "standard", "off")
#: The settings kept in columns of their own (``guild_settings``), not in its JSON.
SAFETY_FIELDS: tuple[str, ...] = ("safety_mode", "safety_suggestive", "safety_explicit")


def _ids(values: Iterable[Any] | None) -> tuple[int, ...]:
    return tuple(int(v) for v in (values or ()))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class GuildSettings:
    """Moderation settings of one guild. The defaults are what a new guild gets.

    ``None`` for a limit means "no guild-specific limit": ``daily_quota``/``guild_daily_cap``
    are then unlimited and ``max_in_flight`` falls back to ``MAX_JOBS_PER_MEMBER``.
    An empty ``allowed_channel_ids`` means every channel. ``safety_mode`` is one of
    :data:`SAFETY_MODES`; ``safety_suggestive``/``safety_explicit`` are the guild's detection
    thresholds, None for the bot's defaults (``bot.safety.Thresholds``).
    """

    allowed_channel_ids: tuple[int, ...] = ()
    required_role_id: int | None = None
    cooldown_seconds: float = 0.0
    daily_quota: int | None = None
    max_in_flight: int | None = None
    guild_daily_cap: int | None = None
    exempt_role_ids: tuple[int, ...] = ()
    allow_animate_others: bool = False
    paused: bool = False
    pause_message: str | None = None
    moderator_role_ids: tuple[int, ...] = ()
    audit_channel_id: int | None = None
    safety_mode: str = "strict"
    safety_suggestive: float | None = None
    safety_explicit: float | None = None

    def __post_init__(self) -> None:
        # Normalise (JSON gives lists; callers may pass strings of ids).
        object.__setattr__(self, "allowed_channel_ids", _ids(self.allowed_channel_ids))
        object.__setattr__(self, "exempt_role_ids", _ids(self.exempt_role_ids))
        object.__setattr__(self, "moderator_role_ids", _ids(self.moderator_role_ids))
        object.__setattr__(self, "required_role_id", _opt_int(self.required_role_id))
        object.__setattr__(self, "audit_channel_id", _opt_int(self.audit_channel_id))
        object.__setattr__(self, "daily_quota", _opt_int(self.daily_quota))
        object.__setattr__(self, "max_in_flight", _opt_int(self.max_in_flight))
        object.__setattr__(self, "guild_daily_cap", _opt_int(self.guild_daily_cap))
        object.__setattr__(self, "cooldown_seconds", float(self.cooldown_seconds))
        object.__setattr__(self, "safety_mode", str(self.safety_mode or "strict"))
        if self.safety_mode not in SAFETY_MODES:
            raise ValueError(f"safety_mode must be one of {', '.join(SAFETY_MODES)}, not {self.safety_mode!r}")
        for name in ("safety_suggestive", "safety_explicit"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else float(value))
        for name in ("cooldown_seconds", "daily_quota", "max_in_flight", "guild_daily_cap"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} cannot be negative")

    def channel_allowed(self, channel_id: int) -> bool:
        return not self.allowed_channel_ids or int(channel_id) in self.allowed_channel_ids

    def is_exempt(self, role_ids: Iterable[int]) -> bool:
        return bool(set(self.exempt_role_ids) & {int(r) for r in role_ids})

    def is_moderator_role(self, role_ids: Iterable[int]) -> bool:
        return bool(set(self.moderator_role_ids) & {int(r) for r in role_ids})

    def replace(self, **changes: Any) -> GuildSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GuildSettings:
        """Tolerant: unknown keys (from a newer bot) are ignored, missing keys default."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Ban:
    guild_id: int
    user_id: int
    reason: str | None
    banned_by: int | None
    banned_at: float


@dataclass(frozen=True)
class UsageDecision:
    """Outcome of :meth:`bot.storage.guilds.GuildStore.try_record_usage`.

    ``reason`` is ``"ok"`` or the limit that refused: ``"cooldown"``, ``"quota"`` or
    ``"guild_cap"``. ``retry_after`` is the number of seconds until the refusing limit lets the
    member try again (cooldown left, or time to 00:00 UTC). ``member_today``/``guild_today``
    are the day's counts after the call (including this job when allowed).
    """

    allowed: bool
    reason: str
    member_today: int
    guild_today: int
    retry_after: float | None = None


def utc_day(at: float) -> str:
    """The UTC calendar day ``YYYY-MM-DD`` of an epoch time."""
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def next_utc_midnight(at: float) -> float:
    """Epoch time of the next 00:00 UTC after ``at`` (when daily quotas reset)."""
    return (int(at) // 86400 + 1) * 86400.0
