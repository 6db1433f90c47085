"""The :class:`Storage` object: one database file and its parts, opened and closed together.

``storage = await Storage.open(settings.store_path, clock=clock)`` opens (and migrates) the
database and gives each kind of record its own part: ``storage.jobs``
(:class:`~bot.storage.jobs.JobStore`), ``storage.guilds`` (:class:`~bot.storage.guilds.GuildStore`:
settings, bans, usage), ``storage.audit`` (:class:`~bot.storage.audit.AuditStore`) and ``storage.withheld``
(:class:`~bot.storage.withheld.WithheldStore`: results the safety check withheld). A service
that needs one kind of record can be given just that part. Retention spans the parts, so it is
here (:meth:`Storage.purge_older_than`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from bot.clock import Clock, SystemClock
from bot.moderation.models import utc_day
from bot.storage.audit import AuditStore
from bot.storage.database import Database
from bot.storage.guilds import GuildStore
from bot.storage.jobs import JobStore
from bot.storage.withheld import WithheldStore

__all__ = ["Storage"]

log = logging.getLogger(__name__)


class Storage:
    """The bot's records (see the module docstring). Create with :meth:`open`; call :meth:`close`."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.jobs = JobStore(db)
        self.guilds = GuildStore(db, clock)
        self.audit = AuditStore(db)
        self.withheld = WithheldStore(db)

    @classmethod
    async def open(cls, path: Path | str, *, clock: Clock | None = None) -> Storage:
        """Open the database at ``path`` (see :meth:`bot.storage.database.Database.open`)."""
        return cls(await Database.open(path), clock or SystemClock())

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        return await self.db.schema_version()

    async def purge_older_than(self, cutoff: float) -> list[Path]:
        """Retention: forget the files of jobs that ended before ``cutoff`` and return them (the
        caller deletes them, see :func:`bot.storage.jobs.remove_files`); drop the usage rows of
        days before ``cutoff``'s day and the results withheld before ``cutoff``."""
        paths = await self.jobs.forget_files_before(cutoff)
        await self.guilds.forget_usage_before(cutoff)
        await self.withheld.forget_before(cutoff)
        if paths:
            log.info("retention: %d file(s) of jobs ended before %s to delete", len(paths), utc_day(cutoff))
        return paths
