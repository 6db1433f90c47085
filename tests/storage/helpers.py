"""Reads of the bot's records that only tests need (the bot itself never asks these questions).

Each takes the :class:`~bot.storage.Storage` under test and reads its database directly.
"""

from __future__ import annotations

import json
from typing import Any

from bot.jobs.models import ACTIVE_STATES, Job, JobState
from bot.moderation.models import Ban, GuildSettings, utc_day
from bot.storage import AuditRecord, Storage
from bot.storage.database import placeholders
from bot.storage.guilds import DM_GUILD_ID


async def job_by_prompt_id(store: Storage, prompt_id: str) -> Job | None:
    row = await store.db.fetchone("SELECT * FROM jobs WHERE prompt_id = ?", (prompt_id,))
    return Job.from_row(row) if row else None


async def active_jobs_for_user(store: Storage, user_id: int, guild_id: int | None = None) -> list[Job]:
    """A member's jobs not yet ended, oldest first; ``guild_id=None`` means anywhere."""
    states = sorted(s.value for s in ACTIVE_STATES)
    sql = f"SELECT * FROM jobs WHERE user_id = ? AND state IN ({placeholders(len(states))})"
    params: list[Any] = [user_id, *states]
    if guild_id is not None:
        sql += " AND guild_id = ?"
        params.append(guild_id)
    return [Job.from_row(r) for r in await store.db.fetchall(sql + " ORDER BY created_at, rowid", params)]


async def count_waiting(store: Storage, guild_id: int | None = None) -> int:
    """Jobs in the bot's own queue (state waiting), in one guild or overall."""
    sql = "SELECT COUNT(*) FROM jobs WHERE state = ?"
    params: list[Any] = [JobState.WAITING.value]
    if guild_id is not None:
        sql += " AND guild_id = ?"
        params.append(guild_id)
    row = await store.db.fetchone(sql, params)
    return int(row[0]) if row else 0


async def set_guild_settings(store: Storage, guild_id: int, settings: GuildSettings) -> None:
    """Replace every setting of a guild."""
    await store.guilds.update_settings(guild_id, **settings.to_dict())


async def is_banned(store: Storage, guild_id: int, user_id: int) -> bool:
    return await store.guilds.get_ban(guild_id, user_id) is not None


async def list_bans(store: Storage, guild_id: int) -> list[Ban]:
    rows = await store.db.fetchall("SELECT * FROM bans WHERE guild_id = ? ORDER BY banned_at", (guild_id,))
    return [Ban(r["guild_id"], r["user_id"], r["reason"], r["banned_by"], r["banned_at"]) for r in rows]


async def record_usage(store: Storage, guild_id: int | None, user_id: int, *, at: float | None = None) -> int:
    """Count one job for the member on ``at``'s UTC day (as for an exempt member: no limits);
    returns the member's count that day."""
    return (await store.guilds.try_record_usage(guild_id, user_id, at=at)).member_today


async def usage_today(store: Storage, guild_id: int | None, user_id: int, *, now: float | None = None) -> int:
    """How many jobs the member started on the current UTC day."""
    now = store.clock.now() if now is None else now
    row = await store.db.fetchone(
        "SELECT count FROM usage WHERE guild_id = ? AND user_id = ? AND day = ?",
        (guild_id or DM_GUILD_ID, user_id, utc_day(now)),
    )
    return int(row[0]) if row else 0


async def guild_usage_today(store: Storage, guild_id: int | None, *, now: float | None = None) -> int:
    """How many jobs the whole guild started on the current UTC day."""
    now = store.clock.now() if now is None else now
    row = await store.db.fetchone(
        "SELECT COALESCE(SUM(count), 0) FROM usage WHERE guild_id = ? AND day = ?",
        (guild_id or DM_GUILD_ID, utc_day(now)),
    )
    return int(row[0]) if row else 0


async def last_job_at(store: Storage, guild_id: int | None, user_id: int) -> float | None:
    """When the member last started a job in this guild (what the cooldown runs from), or None."""
    row = await store.db.fetchone(
        "SELECT MAX(last_job_at) FROM usage WHERE guild_id = ? AND user_id = ?", (guild_id or DM_GUILD_ID, user_id)
    )
    return float(row[0]) if row and row[0] is not None else None


async def list_audit(
    store: Storage, guild_id: int | None, *, limit: int = 50, job_id: str | None = None, action: str | None = None
) -> list[AuditRecord]:
    """A guild's audit records, newest first, optionally for one job or one action."""
    sql = "SELECT * FROM audit WHERE guild_id IS ?"
    params: list[Any] = [guild_id]
    if job_id is not None:
        sql += " AND job_id = ?"
        params.append(job_id)
    if action is not None:
        sql += " AND action = ?"
        params.append(action)
    rows = await store.db.fetchall(sql + " ORDER BY at DESC, id DESC LIMIT ?", [*params, limit])
    return [
        AuditRecord(guild_id=r["guild_id"], at=r["at"], actor_id=r["actor_id"], action=r["action"], job_id=r["job_id"],
                    details=json.loads(r["details"]), id=r["id"])
        for r in rows
    ]
