"""The job store: jobs, per-guild settings, bans, usage counters and the audit log on SQLite.

One SQLite file under ``DATA_DIR`` (``Settings.store_path``), opened with
``await JobStore.open(path)``: the file and its folder are created on first start, the
database runs in WAL mode, and the schema is versioned with ``PRAGMA user_version`` and
brought up to date by :data:`MIGRATIONS` on every open. All access goes through aiosqlite
(its own thread), so the event loop never blocks on disk.

Job updates are checked against the state machine of :mod:`bot.jobs.models` *inside* the
UPDATE statement (``WHERE state IN (<allowed predecessors>)``), so two coroutines racing
to finish the same job cannot both win: the second gets :class:`InvalidTransition`.

Days for usage counters are UTC calendar days (``YYYY-MM-DD``); quotas reset at 00:00 UTC.
Usage rows for direct messages use guild id 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from bot.clock import Clock, SystemClock
from bot.jobs.models import (
    ACTIVE_STATES,
    JOB_COLUMNS,
    TERMINAL_STATES,
    InvalidTransition,
    Job,
    JobState,
    encode_field,
    predecessors,
)

__all__ = [
    "JobStore",
    "StoreError",
    "JobNotFound",
    "GuildSettings",
    "Ban",
    "AuditRecord",
    "UsageDecision",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "utc_day",
    "next_utc_midnight",
    "remove_files",
]

log = logging.getLogger(__name__)

DM_GUILD_ID = 0


class StoreError(RuntimeError):
    """The database cannot be used (for example it was written by a newer bot)."""


class JobNotFound(KeyError):
    """No job has this id."""


# --------------------------------------------------------------------------- schema

#: Schema migrations; entry ``i`` brings the database from version ``i`` to ``i + 1``.
#: Append new entries, never edit old ones: a database at version N runs entries N.. on open.
MIGRATIONS: tuple[str, ...] = (
    # v1: jobs and guild settings.
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL,
        guild_id INTEGER,
        channel_id INTEGER NOT NULL,
        interaction_token TEXT,
        application_id INTEGER,
        interaction_created_at REAL,
        status_message_id INTEGER,
        workflow TEXT NOT NULL,
        options TEXT NOT NULL DEFAULT '{}',
        input_path TEXT,
        uploaded_name TEXT,
        state TEXT NOT NULL,
        server TEXT,
        prompt_id TEXT,
        client_id TEXT,
        submit_attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        submitted_at REAL,
        started_at REAL,
        finished_at REAL,
        result_path TEXT,
        result_meta TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        error_detail TEXT
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE guild_settings (
        guild_id INTEGER PRIMARY KEY,
        settings TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # v2: moderation: bans, usage counters, audit log.
    """
    CREATE TABLE bans (
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        reason TEXT,
        banned_by INTEGER,
        banned_at REAL NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    );
    CREATE TABLE usage (
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        day TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 0,
        last_job_at REAL,
        PRIMARY KEY (guild_id, user_id, day)
    );
    CREATE INDEX usage_guild_day ON usage(guild_id, day);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        guild_id INTEGER,
        at REAL NOT NULL,
        actor_id INTEGER,
        action TEXT NOT NULL,
        job_id TEXT,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_guild_at ON audit(guild_id, at);
    CREATE INDEX audit_job ON audit(job_id);
    """,
    # v3: progress, re-roll parent, delivery, soft delete; lookup indexes.
    """
    ALTER TABLE jobs ADD COLUMN progress_step INTEGER;
    ALTER TABLE jobs ADD COLUMN progress_steps INTEGER;
    ALTER TABLE jobs ADD COLUMN progress_percent REAL;
    ALTER TABLE jobs ADD COLUMN progress_phase TEXT;
    ALTER TABLE jobs ADD COLUMN parent_job_id TEXT;
    ALTER TABLE jobs ADD COLUMN delivered_message_id INTEGER;
    ALTER TABLE jobs ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_user_created ON jobs(user_id, created_at);
    CREATE INDEX jobs_guild_created ON jobs(guild_id, created_at);
    CREATE INDEX jobs_created ON jobs(created_at);
    CREATE INDEX jobs_prompt ON jobs(prompt_id);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------- data


def _ids(values: Iterable[Any] | None) -> tuple[int, ...]:
    return tuple(int(v) for v in (values or ()))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class GuildSettings:
    """Moderation settings of one guild. The defaults are what a new guild gets.

    ``None`` for a limit means "no guild-specific limit": ``daily_quota``/``guild_daily_cap``
    are then unlimited and ``max_in_flight`` falls back to ``MAX_JOBS_PER_MEMBER``.
    An empty ``allowed_channel_ids`` means every channel.
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
class AuditRecord:
    """One audit-log line: a job event or a moderation action. ``id`` is set by the store."""

    guild_id: int | None
    at: float
    actor_id: int | None
    action: str
    job_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True)
class UsageDecision:
    """Outcome of :meth:`JobStore.try_record_usage`.

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


async def remove_files(paths: Iterable[Path]) -> int:
    """Delete files (in a thread); missing ones are fine. Returns how many were removed."""

    def _remove(items: list[Path]) -> int:
        removed = 0
        for p in items:
            try:
                p.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove %s: %s", p, exc)
        return removed

    return await asyncio.to_thread(_remove, list(paths))


# --------------------------------------------------------------------------- store


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


class JobStore:
    """Async access to the bot's SQLite database. Create with :meth:`open`; call :meth:`close`.

    Writes are serialised by an internal lock and each runs in its own transaction.
    Methods that need "now" take it as an argument and default to the store's clock.
    """

    def __init__(self, db: aiosqlite.Connection, path: Path | str, clock: Clock) -> None:
        self._db = db
        self.path = path
        self.clock = clock
        self._lock = asyncio.Lock()

    # ---- lifecycle

    @classmethod
    async def open(cls, path: Path | str, *, clock: Clock | None = None) -> JobStore:
        """Open (creating file and folder if needed), enable WAL and migrate to the latest schema."""
        memory = str(path) == ":memory:"
        if not memory:
            path = Path(path)
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            if not memory:
                await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            store = cls(db, path, clock or SystemClock())
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> JobStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        version = await self.schema_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} has schema version {version}, newer than this bot ({SCHEMA_VERSION})"
            )
        for index in range(version, SCHEMA_VERSION):
            log.info("migrating job store from schema version %d to %d", index, index + 1)
            # executescript runs the whole migration and the version bump in one transaction.
            await self._db.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[index]}\nPRAGMA user_version = {index + 1};\nCOMMIT;"
            )

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                try:
                    await self._db.execute("ROLLBACK")
                except aiosqlite.Error as exc:  # keep the original error, not this one
                    log.warning("rollback failed: %s", exc)
                raise
            else:
                await self._db.execute("COMMIT")

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self._db.execute(sql, params) as cur:
            return await cur.fetchone()

    # ---- jobs

    async def add_job(self, job: Job) -> None:
        """Insert a new job. Raises ``ValueError`` if a job with this id already exists."""
        row = job.to_row()
        cols = ",".join(row)
        try:
            async with self._transaction() as db:
                await db.execute(f"INSERT INTO jobs ({cols}) VALUES ({_placeholders(len(row))})", tuple(row.values()))
        except aiosqlite.IntegrityError as exc:
            raise ValueError(f"job {job.id} already exists") from exc

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(row) if row else None

    async def job_by_prompt_id(self, prompt_id: str) -> Job | None:
        row = await self._fetchone(
            "SELECT * FROM jobs WHERE prompt_id = ? ORDER BY created_at DESC LIMIT 1", (prompt_id,)
        )
        return Job.from_row(row) if row else None

    async def update_job(
        self, job_id: str, /, *, expect: Collection[JobState] | None = None, **fields: Any
    ) -> Job:
        """Change some fields of a job and return the updated job.

        If ``state`` is among the fields, the change must be allowed by the state machine
        (checked atomically in SQL), else :class:`InvalidTransition` is raised and nothing
        changes. ``expect`` additionally requires the current state to be one of these
        (compare-and-set, e.g. "mark delivering only if still running").
        Raises :class:`JobNotFound` for an unknown id and ``ValueError`` for unknown fields.
        """
        unknown = set(fields) - set(JOB_COLUMNS)
        if unknown or "id" in fields:
            raise ValueError(f"cannot update job fields: {sorted(unknown | ({'id'} & set(fields)))}")
        allowed: set[JobState] | None = None
        new_state: JobState | None = None
        if "state" in fields:
            new_state = JobState(fields["state"])
            allowed = set(predecessors(new_state))
        if expect is not None:
            expected = {JobState(s) for s in expect}
            allowed = expected if allowed is None else allowed & expected
        sql_sets = ", ".join(f"{name} = ?" for name in fields)
        params: list[Any] = [encode_field(name, value) for name, value in fields.items()]
        where = "id = ?"
        params.append(job_id)
        if allowed is not None:
            where += f" AND state IN ({_placeholders(len(allowed))})" if allowed else " AND 0"
            params.extend(s.value for s in sorted(allowed, key=lambda s: s.value))
        async with self._transaction() as db:
            if fields:
                cur = await db.execute(f"UPDATE jobs SET {sql_sets} WHERE {where}", params)
                changed = cur.rowcount
            else:
                changed = 1 if await self._fetchone(f"SELECT 1 FROM jobs WHERE {where}", params) else 0
            row = await self._fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise JobNotFound(job_id)
        if changed == 0:
            current = JobState(row["state"])
            raise InvalidTransition(job_id, current, new_state or current)
        return Job.from_row(row)

    async def jobs_in_states(self, states: Iterable[JobState | str]) -> list[Job]:
        """Jobs in any of these states, oldest first (creation order)."""
        values = sorted({JobState(s).value for s in states})
        if not values:
            return []
        rows = await self._fetchall(
            f"SELECT * FROM jobs WHERE state IN ({_placeholders(len(values))}) ORDER BY created_at, rowid",
            values,
        )
        return [Job.from_row(r) for r in rows]

    async def active_jobs(self) -> list[Job]:
        """Every job not in a terminal state, oldest first (what recovery reconciles)."""
        return await self.jobs_in_states(ACTIVE_STATES)

    async def jobs_for_user(self, user_id: int, guild_id: int | None = None, limit: int = 10) -> list[Job]:
        """A member's most recent jobs, newest first; ``guild_id=None`` means in any guild or DM."""
        if guild_id is None:
            rows = await self._fetchall(
                "SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (user_id, limit),
            )
        else:
            rows = await self._fetchall(
                "SELECT * FROM jobs WHERE user_id = ? AND guild_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (user_id, guild_id, limit),
            )
        return [Job.from_row(r) for r in rows]

    async def active_jobs_for_user(self, user_id: int, guild_id: int | None = None) -> list[Job]:
        """A member's jobs not yet ended, oldest first; ``guild_id=None`` means anywhere."""
        states = sorted(s.value for s in ACTIVE_STATES)
        sql = f"SELECT * FROM jobs WHERE user_id = ? AND state IN ({_placeholders(len(states))})"
        params: list[Any] = [user_id, *states]
        if guild_id is not None:
            sql += " AND guild_id = ?"
            params.append(guild_id)
        rows = await self._fetchall(sql + " ORDER BY created_at, rowid", params)
        return [Job.from_row(r) for r in rows]

    async def jobs_for_guild(
        self, guild_id: int, states: Iterable[JobState | str] | None = None, limit: int = 50
    ) -> list[Job]:
        """A guild's jobs (optionally only in some states), newest first."""
        sql = "SELECT * FROM jobs WHERE guild_id = ?"
        params: list[Any] = [guild_id]
        if states is not None:
            values = sorted({JobState(s).value for s in states})
            if not values:
                return []
            sql += f" AND state IN ({_placeholders(len(values))})"
            params.extend(values)
        rows = await self._fetchall(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", [*params, limit])
        return [Job.from_row(r) for r in rows]

    async def count_waiting(self, guild_id: int | None = None) -> int:
        """Jobs in the bot's own queue (state waiting), in one guild or overall."""
        sql = "SELECT COUNT(*) FROM jobs WHERE state = ?"
        params: list[Any] = [JobState.WAITING.value]
        if guild_id is not None:
            sql += " AND guild_id = ?"
            params.append(guild_id)
        row = await self._fetchone(sql, params)
        return int(row[0]) if row else 0

    # ---- guild settings

    async def get_guild_settings(self, guild_id: int) -> GuildSettings:
        """The guild's settings, or the defaults if it never changed any."""
        row = await self._fetchone("SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,))
        if row is None:
            return GuildSettings()
        return GuildSettings.from_dict(json.loads(row["settings"]))

    async def set_guild_settings(self, guild_id: int, settings: GuildSettings, *, at: float | None = None) -> None:
        blob = json.dumps(settings.to_dict(), sort_keys=True)
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO guild_settings (guild_id, settings, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(guild_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                (guild_id, blob, self.clock.now() if at is None else at),
            )

    async def update_guild_settings(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings (read-modify-write under the write lock) and return the result."""
        async with self._transaction() as db:
            row = await self._fetchone("SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,))
            current = GuildSettings.from_dict(json.loads(row["settings"])) if row else GuildSettings()
            updated = current.replace(**changes)
            await db.execute(
                "INSERT INTO guild_settings (guild_id, settings, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(guild_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
                (guild_id, json.dumps(updated.to_dict(), sort_keys=True), self.clock.now()),
            )
        return updated

    # ---- bans

    async def ban(
        self, guild_id: int, user_id: int, *, reason: str | None, by: int | None, at: float | None = None
    ) -> Ban:
        """Ban a member from the bot in a guild (banning again replaces reason and author)."""
        record = Ban(guild_id, user_id, reason, by, self.clock.now() if at is None else at)
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO bans (guild_id, user_id, reason, banned_by, banned_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(guild_id, user_id) DO UPDATE SET reason = excluded.reason, "
                "banned_by = excluded.banned_by, banned_at = excluded.banned_at",
                (record.guild_id, record.user_id, record.reason, record.banned_by, record.banned_at),
            )
        return record

    async def unban(self, guild_id: int, user_id: int) -> bool:
        """Lift a ban; False if the member was not banned."""
        async with self._transaction() as db:
            cur = await db.execute("DELETE FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
            return cur.rowcount > 0

    async def get_ban(self, guild_id: int, user_id: int) -> Ban | None:
        row = await self._fetchone("SELECT * FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
        return Ban(row["guild_id"], row["user_id"], row["reason"], row["banned_by"], row["banned_at"]) if row else None

    async def is_banned(self, guild_id: int, user_id: int) -> bool:
        return await self.get_ban(guild_id, user_id) is not None

    async def list_bans(self, guild_id: int) -> list[Ban]:
        rows = await self._fetchall("SELECT * FROM bans WHERE guild_id = ? ORDER BY banned_at", (guild_id,))
        return [Ban(r["guild_id"], r["user_id"], r["reason"], r["banned_by"], r["banned_at"]) for r in rows]

    # ---- usage

    async def record_usage(self, guild_id: int | None, user_id: int, *, at: float | None = None) -> int:
        """Count one job for the member on ``at``'s UTC day; returns the member's count that day."""
        at = self.clock.now() if at is None else at
        async with self._transaction() as db:
            async with db.execute(
                "INSERT INTO usage (guild_id, user_id, day, count, last_job_at) VALUES (?, ?, ?, 1, ?) "
                "ON CONFLICT(guild_id, user_id, day) DO UPDATE SET count = count + 1, "
                "last_job_at = MAX(COALESCE(last_job_at, 0), excluded.last_job_at) RETURNING count",
                (guild_id or DM_GUILD_ID, user_id, utc_day(at), at),
            ) as cur:
                row = await cur.fetchone()
        return int(row[0]) if row else 1

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
        async with self._transaction() as db:
            row = await self._fetchone(
                "SELECT COALESCE(SUM(CASE WHEN user_id = ? THEN count END), 0), COALESCE(SUM(count), 0) "
                "FROM usage WHERE guild_id = ? AND day = ?",
                (user_id, gid, day),
            )
            member_today, guild_today = (int(row[0]), int(row[1])) if row else (0, 0)
            last_row = await self._fetchone(
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
            await db.execute(
                "INSERT INTO usage (guild_id, user_id, day, count, last_job_at) VALUES (?, ?, ?, 1, ?) "
                "ON CONFLICT(guild_id, user_id, day) DO UPDATE SET count = count + 1, "
                "last_job_at = MAX(COALESCE(last_job_at, 0), excluded.last_job_at)",
                (gid, user_id, day, at),
            )
        return UsageDecision(True, "ok", member_today + 1, guild_today + 1)

    async def refund_usage(self, guild_id: int | None, user_id: int, *, at: float) -> bool:
        """Take back one use counted at ``at`` (the job was refused before it ran).

        The count of that UTC day goes down by one; if that use was the member's latest, the
        cooldown no longer runs from it. Returns False when there was nothing to take back.
        """
        gid, day = guild_id or DM_GUILD_ID, utc_day(at)
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE usage SET count = count - 1, "
                "last_job_at = CASE WHEN last_job_at = ? THEN NULL ELSE last_job_at END "
                "WHERE guild_id = ? AND user_id = ? AND day = ? AND count > 0",
                (at, gid, user_id, day),
            )
            return cursor.rowcount > 0

    async def usage_today(self, guild_id: int | None, user_id: int, *, now: float | None = None) -> int:
        """How many jobs the member started on the current UTC day."""
        now = self.clock.now() if now is None else now
        row = await self._fetchone(
            "SELECT count FROM usage WHERE guild_id = ? AND user_id = ? AND day = ?",
            (guild_id or DM_GUILD_ID, user_id, utc_day(now)),
        )
        return int(row[0]) if row else 0

    async def guild_usage_today(self, guild_id: int | None, *, now: float | None = None) -> int:
        """How many jobs the whole guild started on the current UTC day (for the guild cap)."""
        now = self.clock.now() if now is None else now
        row = await self._fetchone(
            "SELECT COALESCE(SUM(count), 0) FROM usage WHERE guild_id = ? AND day = ?",
            (guild_id or DM_GUILD_ID, utc_day(now)),
        )
        return int(row[0]) if row else 0

    async def last_job_at(self, guild_id: int | None, user_id: int) -> float | None:
        """When the member last started a job in this guild (for the cooldown), or None."""
        row = await self._fetchone(
            "SELECT MAX(last_job_at) FROM usage WHERE guild_id = ? AND user_id = ?",
            (guild_id or DM_GUILD_ID, user_id),
        )
        return float(row[0]) if row and row[0] is not None else None

    # ---- audit

    async def add_audit(self, record: AuditRecord) -> int:
        """Append an audit record; returns its id."""
        async with self._transaction() as db:
            cur = await db.execute(
                "INSERT INTO audit (guild_id, at, actor_id, action, job_id, details) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.guild_id,
                    record.at,
                    record.actor_id,
                    record.action,
                    record.job_id,
                    json.dumps(dict(record.details), sort_keys=True, default=str),
                ),
            )
            return int(cur.lastrowid or 0)

    async def list_audit(
        self, guild_id: int | None, *, limit: int = 50, job_id: str | None = None, action: str | None = None
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
        rows = await self._fetchall(sql + " ORDER BY at DESC, id DESC LIMIT ?", [*params, limit])
        return [
            AuditRecord(
                guild_id=r["guild_id"],
                at=r["at"],
                actor_id=r["actor_id"],
                action=r["action"],
                job_id=r["job_id"],
                details=json.loads(r["details"]),
                id=r["id"],
            )
            for r in rows
        ]

    # ---- retention

    async def purge_older_than(self, cutoff: float) -> list[Path]:
        """Forget the files of jobs that ended before ``cutoff``; return the paths to delete.

        Only terminal jobs are touched; their ``input_path``/``result_path`` are cleared
        (the rows stay, for history and audit). A file still referenced by a newer job (a
        re-roll shares its parent's input) is kept. Usage rows of days before the cutoff's
        day are dropped. The caller deletes the returned files (see :func:`remove_files`).
        """
        terminal = sorted(s.value for s in TERMINAL_STATES)
        purge_where = (
            f"state IN ({_placeholders(len(terminal))}) AND COALESCE(finished_at, created_at) < ? "
            "AND (input_path IS NOT NULL OR result_path IS NOT NULL)"
        )
        purge_params = [*terminal, cutoff]
        async with self._transaction() as db:
            rows = await self._fetchall(f"SELECT input_path, result_path FROM jobs WHERE {purge_where}", purge_params)
            candidates = {p for r in rows for p in (r["input_path"], r["result_path"]) if p}
            kept_rows = await self._fetchall(
                f"SELECT input_path, result_path FROM jobs WHERE NOT ({purge_where}) "
                "AND (input_path IS NOT NULL OR result_path IS NOT NULL)",
                purge_params,
            )
            still_used = {p for r in kept_rows for p in (r["input_path"], r["result_path"]) if p}
            await db.execute(f"UPDATE jobs SET input_path = NULL, result_path = NULL WHERE {purge_where}", purge_params)
            await db.execute("DELETE FROM usage WHERE day < ?", (utc_day(cutoff),))
        paths = sorted(candidates - still_used)
        if paths:
            log.info("retention: %d file(s) of jobs ended before %s to delete", len(paths), utc_day(cutoff))
        return [Path(p) for p in paths]
