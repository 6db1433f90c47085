"""The ``withheld`` table: results the content-safety check kept from a channel, for moderators.

One row per job whose result was withheld (:class:`WithheldResult`): who, where, when, the
verdict's labels and scores, the rule that withheld it and the file kept for review. Its state
moves once, from ``withheld`` to ``released`` (a moderator posted it anyway) or ``deleted`` (a
moderator removed the file); :meth:`WithheldStore.decide` does that atomically, so two moderators
pressing at once cannot both win. Rows go with retention (:meth:`WithheldStore.forget_before`),
together with the job's files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import aiosqlite

from bot.storage.database import Database

__all__ = ["WITHHELD", "RELEASED", "DELETED", "WithheldResult", "WithheldStore"]

WITHHELD: Final = "withheld"
RELEASED: Final = "released"
DELETED: Final = "deleted"
_STATES: Final = (WITHHELD, RELEASED, DELETED)


@dataclass(frozen=True)
class WithheldResult:
    """A withheld result. ``labels``: (label, score) pairs, highest first; ``rule``: why it was
    withheld (a :class:`bot.safety.messages.Rule` value); ``mode``: the mode that applied."""

    job_id: str
    guild_id: int | None
    channel_id: int
    user_id: int
    at: float
    level: str
    labels: tuple[tuple[str, float], ...]
    rule: str
    mode: str
    result_path: str | None
    state: str = WITHHELD
    decided_by: int | None = None
    decided_at: float | None = None
    message_id: int | None = None

    @property
    def pending(self) -> bool:
        return self.state == WITHHELD


def _row(row: aiosqlite.Row) -> WithheldResult:
    labels = tuple((str(label), float(score)) for label, score in json.loads(row["labels"] or "[]"))
    return WithheldResult(
        job_id=row["job_id"], guild_id=row["guild_id"], channel_id=row["channel_id"], user_id=row["user_id"],
        at=row["at"], level=row["level"], labels=labels, rule=row["rule"], mode=row["mode"],
        result_path=row["result_path"], state=row["state"], decided_by=row["decided_by"],
        decided_at=row["decided_at"], message_id=row["message_id"],
    )


class WithheldStore:
    """The withheld results of :class:`~bot.storage.database.Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, record: WithheldResult) -> tuple[WithheldResult, bool]:
        """Keep ``record``; returns the stored row and whether it is new. A job withheld again (its
        delivery was tried again after a restart) keeps its first row and any decision on it."""
        values: dict[str, Any] = {
            "job_id": record.job_id, "guild_id": record.guild_id, "channel_id": record.channel_id,
            "user_id": record.user_id, "at": record.at, "level": record.level,
            "labels": json.dumps([[label, score] for label, score in record.labels]), "rule": record.rule,
            "mode": record.mode, "result_path": record.result_path, "state": WITHHELD,
        }
        async with self.db.transaction() as connection:
            cursor = await connection.execute(
                f"INSERT OR IGNORE INTO withheld ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )
            created = cursor.rowcount > 0
        stored = await self.get(record.job_id)
        assert stored is not None
        return stored, created

    async def get(self, job_id: str) -> WithheldResult | None:
        row = await self.db.fetchone("SELECT * FROM withheld WHERE job_id = ?", (job_id,))
        return _row(row) if row else None

    async def for_guild(self, guild_id: int, *, state: str = WITHHELD, limit: int = 25) -> list[WithheldResult]:
        """A guild's results in ``state``, newest first."""
        rows = await self.db.fetchall(
            "SELECT * FROM withheld WHERE guild_id = ? AND state = ? ORDER BY at DESC, rowid DESC LIMIT ?",
            (guild_id, state, limit),
        )
        return [_row(r) for r in rows]

    async def count(self, guild_id: int, *, state: str = WITHHELD) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM withheld WHERE guild_id = ? AND state = ?", (guild_id, state))
        return int(row[0]) if row else 0

    async def decide(self, job_id: str, state: str, *, by: int, at: float, message_id: int | None = None,
                     expect: str = WITHHELD) -> WithheldResult | None:
        """Move a row from ``expect`` to ``state`` (compare-and-set); None when it was not in ``expect``."""
        if state not in _STATES or expect not in _STATES:
            raise ValueError(f"unknown withheld state {state!r} or {expect!r}")
        async with self.db.transaction() as connection:
            cursor = await connection.execute(
                "UPDATE withheld SET state = ?, decided_by = ?, decided_at = ?, message_id = ? "
                "WHERE job_id = ? AND state = ?",
                (state, by, at, message_id, job_id, expect),
            )
            changed = cursor.rowcount > 0
        return await self.get(job_id) if changed else None

    async def forget_before(self, cutoff: float) -> int:
        """Retention: drop the rows of results withheld before ``cutoff`` (their files go with the jobs')."""
        async with self.db.transaction() as connection:
            cursor = await connection.execute("DELETE FROM withheld WHERE at < ?", (cutoff,))
            return cursor.rowcount
