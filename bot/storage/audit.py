"""The ``audit`` table: the audit log of job events and moderation actions, append-only.

:class:`AuditRecord` is one line of it; :class:`AuditStore` appends them. What a record says is
decided by :mod:`bot.moderation.actions` and :mod:`bot.moderation.audit_text`; how it is posted,
by :mod:`bot.discord.audit`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.storage.database import Database

__all__ = ["AuditRecord", "AuditStore"]


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


class AuditStore:
    """The audit log of :class:`~bot.storage.database.Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, record: AuditRecord) -> int:
        """Append an audit record; returns its id."""
        details = json.dumps(dict(record.details), sort_keys=True, default=str)
        async with self.db.transaction() as connection:
            cursor = await connection.execute(
                "INSERT INTO audit (guild_id, at, actor_id, action, job_id, details) VALUES (?, ?, ?, ?, ?, ?)",
                (record.guild_id, record.at, record.actor_id, record.action, record.job_id, details),
            )
            return int(cursor.lastrowid or 0)
