"""Per-guild moderation records: the ``guild_settings``, ``guild_options``, ``bans`` and ``usage`` tables.

:class:`GuildStore` keeps each guild's :class:`~bot.moderation.models.GuildSettings` (as JSON, but
for the content-safety mode and thresholds, which have columns of their own: ``SAFETY_FIELDS``),
its :class:`~bot.moderation.models.Ban` list and the members' daily usage counters, and decides
the daily limits atomically (:meth:`GuildStore.try_record_usage`). Its option defaults and cost
caps (:class:`~bot.moderation.caps.OptionRules`) have a table of their own, ``guild_options``. The rules about who may do
what live in :mod:`bot.moderation`; this module only keeps the records.

Days for usage counters are UTC calendar days (``YYYY-MM-DD``); quotas reset at 00:00 UTC.
Usage rows for direct messages use guild id 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiosqlite

from bot.clock import Clock
from bot.moderation.caps import OptionCaps, OptionRules
from bot.moderation.models import SAFETY_FIELDS, Ban, GuildSettings, UsageDecision, next_utc_midnight, utc_day
from bot.storage.database import Database

__all__ = ["GuildStore", "DM_GUILD_ID"]

DM_GUILD_ID = 0

_UPSERT_SETTINGS = (
    f"INSERT INTO guild_settings (guild_id, settings, updated_at, {', '.join(SAFETY_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(guild_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at, "
    + ", ".join(f"{name} = excluded.{name}" for name in SAFETY_FIELDS)
)
_SELECT_SETTINGS = f"SELECT settings, {', '.join(SAFETY_FIELDS)} FROM guild_settings WHERE guild_id = ?"
_SELECT_OPTIONS = (
    "SELECT defaults, max_frames, max_steps, allowed_formats, max_extensions FROM guild_options WHERE guild_id = ?"
)
_UPSERT_OPTIONS = (
    "INSERT INTO guild_options (guild_id, defaults, max_frames, max_steps, allowed_formats, max_extensions, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(guild_id) DO UPDATE SET defaults = excluded.defaults, "
    "max_frames = excluded.max_frames, max_steps = excluded.max_steps, allowed_formats = excluded.allowed_formats, "
    "max_extensions = excluded.max_extensions, updated_at = excluded.updated_at"
)
_UPSERT_BAN = (
    "INSERT INTO bans (guild_id, user_id, reason, banned_by, banned_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(guild_id, user_id) DO UPDATE SET reason = excluded.reason, "
    "banned_by = excluded.banned_by, banned_at = excluded.banned_at"
)
_COUNT_USE = (
    "INSERT INTO usage (guild_id, user_id, day, count, last_job_at) VALUES (?, ?, ?, 1, ?) "
    "ON CONFLICT(guild_id, user_id, day) DO UPDATE SET count = count + 1, "
    "last_job_at = MAX(COALESCE(last_job_at, 0), excluded.last_job_at)"
)


def _ban(row: aiosqlite.Row) -> Ban:
    return Ban(row["guild_id"], row["user_id"], row["reason"], row["banned_by"], row["banned_at"])


def _option_rules(row: aiosqlite.Row) -> OptionRules:
    formats = row["allowed_formats"]
    caps = OptionCaps(
        max_frames=row["max_frames"],
        max_steps=row["max_steps"],
        allowed_formats=None if formats is None else tuple(json.loads(formats)),
        **({} if row["max_extensions"] is None else {"max_extensions": row["max_extensions"]}),
    )
    return OptionRules(defaults=json.loads(row["defaults"] or "{}"), caps=caps)


class GuildStore:
    """Guild settings, bans and usage of :class:`~bot.storage.database.Database`.

    Methods that need "now" take it as an argument and default to ``clock``. Settings are read
    for every job several times (admission, content safety): each guild's are kept in memory once
    read, and every change goes through :meth:`update_settings`, which keeps that copy current.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._settings: dict[int, GuildSettings] = {}  # one per guild seen (settings are immutable)

    # ---- settings

    async def get_settings(self, guild_id: int) -> GuildSettings:
        """The guild's settings, or the defaults if it never changed any."""
        known = self._settings.get(guild_id)
        if known is not None:
            return known
        row = await self.db.fetchone(_SELECT_SETTINGS, (guild_id,))
        if row is None:
            settings = GuildSettings()
        else:
            data = {k: v for k, v in json.loads(row["settings"]).items() if k not in SAFETY_FIELDS}
            settings = GuildSettings.from_dict(data | {name: row[name] for name in SAFETY_FIELDS})
        self._settings[guild_id] = settings
        return settings

    async def update_settings(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings (read-modify-write under the write lock) and return the result."""
        async with self.db.transaction() as connection:
            updated = (await self.get_settings(guild_id)).replace(**changes)
            data = updated.to_dict()
            columns = tuple(data.pop(name) for name in SAFETY_FIELDS)
            blob = json.dumps(data, sort_keys=True)
            await connection.execute(_UPSERT_SETTINGS, (guild_id, blob, self.clock.now(), *columns))
        self._settings[guild_id] = updated  # committed
        return updated

    # ---- option defaults and caps

    async def get_option_rules(self, guild_id: int) -> OptionRules:
        """The guild's option defaults and caps, or none (``max_extensions`` at its default) if never set."""
        row = await self.db.fetchone(_SELECT_OPTIONS, (guild_id,))
        return OptionRules() if row is None else _option_rules(row)

    async def update_option_rules(
        self, guild_id: int, change: Callable[[OptionRules], OptionRules]
    ) -> tuple[OptionRules, OptionRules]:
        """Replace the guild's rules by ``change(current)`` under the write lock; returns (before, after).
        ``change`` may raise to leave them as they were."""
        async with self.db.transaction() as connection:
            before = await self.get_option_rules(guild_id)
            after = change(before)
            caps = after.caps
            formats = None if caps.allowed_formats is None else json.dumps(list(caps.allowed_formats))
            await connection.execute(_UPSERT_OPTIONS, (
                guild_id, json.dumps(dict(after.defaults)), caps.max_frames, caps.max_steps, formats,
                caps.max_extensions, self.clock.now()))
        return before, after

    # ---- bans

    async def ban(
        self, guild_id: int, user_id: int, *, reason: str | None, by: int | None, at: float | None = None
    ) -> Ban:
        """Ban a member from the bot in a guild (banning again replaces reason and author)."""
        record = Ban(guild_id, user_id, reason, by, self.clock.now() if at is None else at)
        async with self.db.transaction() as connection:
            await connection.execute(
                _UPSERT_BAN, (record.guild_id, record.user_id, record.reason, record.banned_by, record.banned_at)
            )
        return record

    async def unban(self, guild_id: int, user_id: int) -> bool:
        """Lift a ban; False if the member was not banned."""
        async with self.db.transaction() as connection:
            cursor = await connection.execute("DELETE FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
            return cursor.rowcount > 0

    async def get_ban(self, guild_id: int, user_id: int) -> Ban | None:
        row = await self.db.fetchone("SELECT * FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
        return _ban(row) if row else None

    # ---- usage

    async def try_record_usage(
        self,
        guild_id: int | None,
        user_id: int,
        *,
        at: float | None = None,
        cooldown: float = 0.0,
        daily_quota: int | None = None,
        guild_daily_cap: int | None = None,
    ) -> UsageDecision:
        """Check the cooldown, the member's daily quota and the guild's daily cap, and count
        the job only if all allow it, in one transaction (a burst of requests cannot slip
        past a limit between the check and the count). Pass no limits for exempt members.
        """
        at = self.clock.now() if at is None else at
        gid, day = guild_id or DM_GUILD_ID, utc_day(at)
        async with self.db.transaction() as connection:
            row = await self.db.fetchone(
                "SELECT COALESCE(SUM(CASE WHEN user_id = ? THEN count END), 0), COALESCE(SUM(count), 0) "
                "FROM usage WHERE guild_id = ? AND day = ?",
                (user_id, gid, day),
            )
            member_today, guild_today = (int(row[0]), int(row[1])) if row else (0, 0)
            last_row = await self.db.fetchone(
                "SELECT MAX(last_job_at) FROM usage WHERE guild_id = ? AND user_id = ?", (gid, user_id)
            )
            last = float(last_row[0]) if last_row and last_row[0] is not None else None
            refusal: tuple[str, float] | None = None
            if cooldown > 0 and last is not None and at - last < cooldown:
                refusal = ("cooldown", cooldown - (at - last))
            elif daily_quota is not None and member_today >= daily_quota:
                refusal = ("quota", next_utc_midnight(at) - at)
            elif guild_daily_cap is not None and guild_today >= guild_daily_cap:
                refusal = ("guild_cap", next_utc_midnight(at) - at)
            if refusal is not None:
                return UsageDecision(False, refusal[0], member_today, guild_today, refusal[1])
            await connection.execute(_COUNT_USE, (gid, user_id, day, at))
        return UsageDecision(True, "ok", member_today + 1, guild_today + 1)

    async def refund_usage(self, guild_id: int | None, user_id: int, *, at: float) -> bool:
        """Take back one use counted at ``at`` (the job was refused before it ran).

        The count of that UTC day goes down by one; if that use was the member's latest, the
        cooldown no longer runs from it. Returns False when there was nothing to take back.
        """
        gid, day = guild_id or DM_GUILD_ID, utc_day(at)
        async with self.db.transaction() as connection:
            cursor = await connection.execute(
                "UPDATE usage SET count = count - 1, "
                "last_job_at = CASE WHEN last_job_at = ? THEN NULL ELSE last_job_at END "
                "WHERE guild_id = ? AND user_id = ? AND day = ? AND count > 0",
                (at, gid, user_id, day),
            )
            return cursor.rowcount > 0

    async def forget_usage_before(self, cutoff: float) -> None:
        """Drop the usage rows of the UTC days before ``cutoff``'s day (retention)."""
        async with self.db.transaction() as connection:
            await connection.execute("DELETE FROM usage WHERE day < ?", (utc_day(cutoff),))
