"""The ``jobs`` table: every job and its state, and the files retention may delete.

:class:`JobStore` stores :class:`bot.jobs.models.Job` rows and checks each state change against
the state machine of :mod:`bot.jobs.models` *inside* the UPDATE statement (``WHERE state IN
(<allowed predecessors>)``), so two coroutines racing to finish the same job cannot both win:
the second gets :class:`~bot.jobs.models.InvalidTransition`. A terminal job never changes state
again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

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
from bot.storage.database import Database, placeholders

__all__ = ["JobStore", "JobNotFound", "remove_files"]

log = logging.getLogger(__name__)


#: The files a job may keep: its input, its result, and those its result_meta names.
_FILES = ("input_path, result_path, json_extract(result_meta, '$.original_path'), "
          "json_extract(result_meta, '$.segment_path')")


class JobNotFound(KeyError):
    """No job has this id."""


class JobStore:
    """The jobs of :class:`~bot.storage.database.Database` (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, job: Job) -> None:
        """Insert a new job. Raises ``ValueError`` if a job with this id already exists."""
        row = job.to_row()
        columns = ",".join(row)
        try:
            async with self.db.transaction() as connection:
                await connection.execute(
                    f"INSERT INTO jobs ({columns}) VALUES ({placeholders(len(row))})", tuple(row.values())
                )
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise ValueError(f"job {job.id} already exists") from exc
            raise

    async def get(self, job_id: str) -> Job | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(row) if row else None

    async def update(self, job_id: str, *, expect: Collection[JobState | str] | None = None, **fields: Any) -> Job:
        """Change some fields of a job atomically and return the updated job.

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
            where += f" AND state IN ({placeholders(len(allowed))})" if allowed else " AND 0"
            params.extend(s.value for s in sorted(allowed, key=lambda s: s.value))
        if fields:  # one statement: the change and the row as it is now
            rows = await self.db.write_one(f"UPDATE jobs SET {sql_sets} WHERE {where} RETURNING *", params)
            if rows:
                return Job.from_row(rows[0])
            changed = 0
        else:
            changed = 1 if await self.db.fetchone(f"SELECT 1 FROM jobs WHERE {where}", params) else 0
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise JobNotFound(job_id)
        if changed == 0:
            current = JobState(row["state"])
            raise InvalidTransition(job_id, current, new_state or current)
        return Job.from_row(row)

    async def in_states(self, states: Iterable[JobState | str]) -> list[Job]:
        """Jobs in any of these states, oldest first (creation order)."""
        values = sorted({JobState(s).value for s in states})
        if not values:
            return []
        rows = await self.db.fetchall(
            f"SELECT * FROM jobs WHERE state IN ({placeholders(len(values))}) ORDER BY created_at, rowid", values
        )
        return [Job.from_row(r) for r in rows]

    async def count_by_state(self, states: Iterable[JobState | str]) -> dict[JobState, int]:
        """How many jobs are in each of these states (a state with none is left out); for metrics."""
        values = sorted({JobState(s).value for s in states})
        if not values:
            return {}
        rows = await self.db.fetchall(
            f"SELECT state, COUNT(*) FROM jobs WHERE state IN ({placeholders(len(values))}) GROUP BY state", values
        )
        return {JobState(row[0]): int(row[1]) for row in rows}

    async def active(self) -> list[Job]:
        """Every job not in a terminal state, oldest first (what recovery reconciles)."""
        return await self.in_states(ACTIVE_STATES)

    async def for_user(self, user_id: int, guild_id: int | None = None, limit: int = 10) -> list[Job]:
        """A member's most recent jobs, newest first; ``guild_id=None`` means in any guild or DM."""
        sql = "SELECT * FROM jobs WHERE user_id = ?"
        params: list[Any] = [user_id]
        if guild_id is not None:
            sql += " AND guild_id = ?"
            params.append(guild_id)
        rows = await self.db.fetchall(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", [*params, limit])
        return [Job.from_row(r) for r in rows]

    async def for_guild(
        self, guild_id: int, states: Iterable[JobState | str] | None = None, limit: int = 50
    ) -> list[Job]:
        """A guild's jobs (optionally only in some states), newest first."""
        sql = "SELECT * FROM jobs WHERE guild_id = ?"
        params: list[Any] = [guild_id]
        if states is not None:
            values = sorted({JobState(s).value for s in states})
            if not values:
                return []
            sql += f" AND state IN ({placeholders(len(values))})"
            params.extend(values)
        rows = await self.db.fetchall(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", [*params, limit])
        return [Job.from_row(r) for r in rows]

    async def forget_files_before(self, cutoff: float) -> list[Path]:
        """Forget the files of jobs that ended before ``cutoff``; return the paths to delete.

        Only terminal jobs are touched; their ``input_path``/``result_path`` are cleared
        (the rows stay, for history and audit), and the other files their ``result_meta`` names go
        too (the original beside a boomerang the bot made, an extension's new clip). A file still
        referenced by a newer job (a re-roll shares its parent's input, an extension not yet joined
        its parent's result) is kept. The caller deletes the returned files
        (see :func:`remove_files`).
        """
        terminal = sorted(s.value for s in TERMINAL_STATES)
        purge_where = (
            f"state IN ({placeholders(len(terminal))}) AND COALESCE(finished_at, created_at) < ? "
            "AND (input_path IS NOT NULL OR result_path IS NOT NULL)"
        )
        purge_params = [*terminal, cutoff]
        async with self.db.transaction() as connection:
            rows = await self.db.fetchall(f"SELECT {_FILES} FROM jobs WHERE {purge_where}", purge_params)
            candidates = {p for r in rows for p in r if p}
            kept_rows = await self.db.fetchall(
                f"SELECT {_FILES}, json_extract(result_meta, '$.extend.base') FROM jobs WHERE NOT ({purge_where}) "
                "AND (input_path IS NOT NULL OR result_path IS NOT NULL)",
                purge_params,
            )
            still_used = {p for r in kept_rows for p in r if p}
            await connection.execute(
                f"UPDATE jobs SET input_path = NULL, result_path = NULL WHERE {purge_where}", purge_params
            )
        return [Path(p) for p in sorted(candidates - still_used)]


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
