"""The database under the job store: one SQLite file, its connection, schema version and migrations.

This module owns the connection and the schema; the tables' contents belong to
:mod:`bot.storage.jobs`, :mod:`bot.storage.guilds` and :mod:`bot.storage.audit`, which share one
:class:`Database`. ``await Database.open(path)`` creates the file and its folder on first start,
refuses a database written by a newer bot (:class:`StoreError`), puts the file in WAL mode and
brings the schema up to date with :data:`MIGRATIONS`. All access goes through aiosqlite (its own
thread), so the event loop never blocks on disk.

The schema version is ``PRAGMA user_version``. Before the first migration that changes an
existing database, the old file is copied next to it as ``<name>.v<old version>.bak`` (its WAL is
checkpointed first, so that one file holds the whole old database). Each migration runs in one
transaction together with its version bump: a failed migration leaves the database at the
version before it.

Adding a migration: append a :class:`Migration` with the next version number to
:data:`MIGRATIONS` (never edit or reorder the ones already released; a database at version N runs
those above N on open), update the dataclasses that read the tables, and extend the upgrade
test in ``tests/storage/test_migration.py``. A migration is SQL only; SQLite's JSON functions
(``json_extract``, ``json_remove``) can move a value out of a JSON column into a column of its own.
Version 4 drops columns, which needs SQLite 3.35 or newer. Version 5 keeps each guild's content-safety
mode and thresholds in columns of ``guild_settings`` (not in its JSON), and adds ``withheld``.
Version 7 adds ``guild_options``: each guild's defaults for member options (JSON) and its caps
(``allowed_formats`` a JSON list, NULL for every format; NULL caps for none set). Version 8 keeps an
extension's chain in ``jobs``: ``chain_root_id`` (the first job, whose result was extended) and
``extension_index`` (0 for every other job; 1, 2, ... for the extensions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

__all__ = ["Database", "Migration", "MIGRATIONS", "SCHEMA_VERSION", "StoreError", "backup_path", "placeholders"]

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The database cannot be used (for example it was written by a newer bot)."""


@dataclass(frozen=True)
class Migration:
    """SQL that brings the database from ``version - 1`` to ``version``."""

    version: int
    summary: str
    sql: str


#: Every schema change since the first release, oldest first (see the module docstring).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs and guild settings", """
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
    """),
    Migration(2, "moderation: bans, usage counters, audit log", """
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
    """),
    Migration(3, "progress, re-roll parent, delivery, soft delete; lookup indexes", """
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
    """),
    Migration(4, "drop the progress columns nothing writes (progress lives in memory only)", """
    ALTER TABLE jobs DROP COLUMN progress_step;
    ALTER TABLE jobs DROP COLUMN progress_steps;
    ALTER TABLE jobs DROP COLUMN progress_percent;
    ALTER TABLE jobs DROP COLUMN progress_phase;
    """),
    Migration(5, "content safety: each guild's mode and thresholds; results withheld for moderators", """
    ALTER TABLE guild_settings ADD COLUMN safety_mode TEXT NOT NULL DEFAULT 'strict';
    ALTER TABLE guild_settings ADD COLUMN safety_suggestive REAL;
    ALTER TABLE guild_settings ADD COLUMN safety_explicit REAL;
    CREATE TABLE withheld (
        job_id TEXT PRIMARY KEY,
        guild_id INTEGER,
        channel_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        at REAL NOT NULL,
        level TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '[]',
        rule TEXT NOT NULL,
        mode TEXT NOT NULL,
        result_path TEXT,
        state TEXT NOT NULL DEFAULT 'withheld',
        decided_by INTEGER,
        decided_at REAL,
        message_id INTEGER
    );
    CREATE INDEX withheld_guild_state ON withheld(guild_id, state, at);
    CREATE INDEX withheld_at ON withheld(at);
    """),
    Migration(6, "the moved flag and the delivery attempts, which drive recovery, become columns", """
    ALTER TABLE jobs ADD COLUMN moved INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET
        moved = CASE WHEN json_extract(result_meta, '$.moved') THEN 1 ELSE 0 END,
        delivery_attempts = COALESCE(json_extract(result_meta, '$.delivery_attempts'), 0),
        result_meta = json_remove(result_meta, '$.moved', '$.delivery_attempts')
    WHERE json_type(result_meta, '$.moved') IS NOT NULL OR json_type(result_meta, '$.delivery_attempts') IS NOT NULL;
    """),
    Migration(7, "each guild's defaults for member options and its cost caps", """
    CREATE TABLE guild_options (
        guild_id INTEGER PRIMARY KEY,
        defaults TEXT NOT NULL DEFAULT '{}',
        max_frames INTEGER,
        max_steps INTEGER,
        allowed_formats TEXT,
        max_extensions INTEGER,
        updated_at REAL NOT NULL
    );
    """),
    Migration(8, "Extend: each job's chain (its first job) and which extension it is", """
    ALTER TABLE jobs ADD COLUMN chain_root_id TEXT;
    ALTER TABLE jobs ADD COLUMN extension_index INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_chain ON jobs(chain_root_id);
    """),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def backup_path(path: Path, version: int) -> Path:
    """Where the file of a database at ``version`` is kept before migrating it."""
    return path.with_name(f"{path.name}.v{version}.bak")


def placeholders(n: int) -> str:
    """``?,?,...`` for an SQL ``IN (...)`` of ``n`` values."""
    return ",".join("?" * n)


class Database:
    """One aiosqlite connection with a write lock. Create with :meth:`open`; call :meth:`close`.

    Writes go through :meth:`transaction` (serialised by the lock, one ``BEGIN IMMEDIATE``
    transaction each), or :meth:`write_one` for a single statement (atomic on its own); reads use
    :meth:`fetchall`/:meth:`fetchone` directly. Each of these is one trip to aiosqlite's thread
    (a statement and its rows together), which is most of what a store call costs.
    """

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        """Open (creating file and folder if needed), back up, migrate; see the module docstring."""
        path = Path(path)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        connection = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            connection.row_factory = aiosqlite.Row
            database = cls(connection, path)
            await database._migrate()
        except BaseException:
            await connection.close()
            raise
        return database

    async def close(self) -> None:
        await self.connection.close()

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        await self.connection.execute("PRAGMA busy_timeout=5000")
        version = await self.schema_version()
        latest = MIGRATIONS[-1].version
        if version > latest:
            raise StoreError(
                f"the database {self.path} has schema version {version}, but this bot knows versions up to "
                f"{latest}: it was written by a newer bot. Run that version again, or restore a backup "
                f"({self.path.name}.v<N>.bak) made before the upgrade."
            )
        pending = [m for m in MIGRATIONS if m.version > version]
        if pending and version > 0:
            await self._back_up(version, latest)
        await self.connection.execute("PRAGMA journal_mode=WAL")
        await self.connection.execute("PRAGMA synchronous=NORMAL")
        for migration in pending:
            log.info("migrating the job store to schema version %d: %s", migration.version, migration.summary)
            try:
                # The migration and its version bump commit together, or not at all.
                await self.connection.executescript(
                    f"BEGIN IMMEDIATE;\n{migration.sql}\nPRAGMA user_version = {migration.version};\nCOMMIT;"
                )
            except BaseException:
                with contextlib.suppress(aiosqlite.Error):
                    await self.connection.execute("ROLLBACK")
                raise

    async def _back_up(self, version: int, latest: int) -> None:
        """Copy the file of a database about to be migrated (after moving its WAL into it)."""
        row = await self.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
        if row is not None and int(row[0]) != 0:
            raise StoreError(f"the database {self.path} is in use by another process; stop it before upgrading")
        target = backup_path(self.path, version)
        await asyncio.to_thread(_copy_file, self.path, target)
        log.info("job store %s is at schema version %d; kept a copy as %s before migrating it to %d",
                 self.path, version, target.name, latest)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed on exit, rolled back on error."""
        async with self._lock:
            await self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                try:
                    await self.connection.execute("ROLLBACK")
                except aiosqlite.Error as exc:  # keep the original error, not this one
                    log.warning("rollback failed: %s", exc)
                raise
            else:
                await self.connection.execute("COMMIT")

    async def write_one(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """One write statement (e.g. ``UPDATE ... RETURNING *``) under the write lock, committed on
        its own, and the rows it returns."""
        async with self._lock:
            return list(await self.connection.execute_fetchall(sql, params))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self.connection.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        """The first row (queries here return one row at most)."""
        rows = await self.connection.execute_fetchall(sql, params)
        return next(iter(rows), None)


def _copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` durably: a partial copy never carries the target's name."""
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, target)
