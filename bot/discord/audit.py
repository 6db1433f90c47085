"""The audit log on Discord: every job event and moderation action, stored and posted.

The bot makes one :class:`AuditLog` (it needs the Discord client) and the wiring
(:func:`bot.app.build`) registers it as a job-service listener (:meth:`JobService.add_listener`):
each job event (queued, delivered, failed, cancelled, timed out, deleted) becomes an
:class:`~bot.storage.AuditRecord` built by :func:`bot.moderation.audit_text.job_record` and is
*always* stored (``store.audit.add``). Moderation actions are stored by
:mod:`bot.moderation.actions`; the /mod cog hands their records to :meth:`AuditLog.post`, or has
:meth:`AuditLog.record` store and post one it describes.

Posting: when the guild has an audit channel, the record's one-line rendering
(:func:`bot.moderation.audit_text.render`) is sent there with mentions disabled; a queued job
carries a small thumbnail of its input image (made in a thread). Posts go through one worker
in order, so a burst of events never floods the channel with parallel requests, and a slow
or failing Discord never holds up the job service. Once closed it posts nothing more (records
are still stored).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from pathlib import Path
from typing import Any

import discord

from bot.jobs.models import Job
from bot.logs import log_failure
from bot.media.thumbnails import thumbnail_png
from bot.moderation.audit_text import JobEvents, job_record, render
from bot.storage import AuditRecord, Storage
from bot.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MAX_PENDING_POSTS = 500

#: Job-service event name -> audit action.
EVENT_ACTIONS: dict[str, str] = {
    "queued": JobEvents.QUEUED,
    "delivered": JobEvents.DELIVERED,
    "failed": JobEvents.FAILED,
    "cancelled": JobEvents.CANCELLED,
    "timed_out": JobEvents.TIMED_OUT,
    "deleted": JobEvents.DELETED,
}

__all__ = ["AuditLog", "EVENT_ACTIONS"]


@dataclasses.dataclass(frozen=True)
class _Post:
    record: AuditRecord
    thumbnail: Path | None = None


class AuditLog:
    """Stores job events and posts audit lines to each guild's audit channel (see module docstring)."""

    def __init__(self, client: discord.Client, store: Storage) -> None:
        self.client = client
        self.store = store
        self._queue: asyncio.Queue[_Post] = asyncio.Queue(maxsize=MAX_PENDING_POSTS)
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.posted = 0

    # ------------------------------------------------------------------ job events

    async def on_job_event(self, job: Job, event: str, actor_id: int | None) -> None:
        """The job-service listener: store the event's record, then queue its post."""
        action = EVENT_ACTIONS.get(event)
        if action is None:
            return
        record = job_record(job, action, at=self.store.clock.now(), actor_id=actor_id)
        record = dataclasses.replace(record, id=await self.store.audit.add(record))
        thumbnail = Path(job.input_path) if event == "queued" and job.input_path else None
        self.post(record, thumbnail=thumbnail)

    async def record(self, *, guild_id: int, actor_id: int, action: str, details: dict[str, Any]) -> AuditRecord:
        """Store a moderation record made now and queue its post; returns it with its id."""
        record = AuditRecord(guild_id=guild_id, at=self.store.clock.now(), actor_id=actor_id, action=action,
                             details=details)
        record = dataclasses.replace(record, id=await self.store.audit.add(record))
        self.post(record)
        return record

    # ------------------------------------------------------------------ posting

    def post(self, record: AuditRecord, *, thumbnail: Path | None = None) -> None:
        """Queue ``record`` (already stored) for the guild's audit channel, if it has one."""
        if record.guild_id is None or self._closed:
            return
        try:
            self._queue.put_nowait(_Post(record, thumbnail))
        except asyncio.QueueFull:
            log.warning("audit channel posts are backed up; not posting record %s", record.id)
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="audit-log")

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued post went out (or failed)."""
        async with asyncio.timeout(timeout):
            await self._queue.join()

    async def close(self) -> None:
        """Stop posting; posts still queued are dropped (their records are stored)."""
        self._closed = True
        worker, self._worker = self._worker, None
        await cancel_and_wait(worker)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._send(item)
            except asyncio.CancelledError:
                raise
            except discord.HTTPException as exc:
                log.warning("could not post audit record %s (HTTP %s)", item.record.id, exc.status)
            except Exception:
                log_failure(log, logging.ERROR, "could not post audit record %s", item.record.id)
            finally:
                self._queue.task_done()

    async def _send(self, item: _Post) -> None:
        record = item.record
        assert record.guild_id is not None
        settings = await self.store.guilds.get_settings(record.guild_id)
        if settings.audit_channel_id is None:
            return
        fields: dict[str, Any] = {}
        if item.thumbnail is not None:
            data = await asyncio.to_thread(thumbnail_png, item.thumbnail)
            if data is not None:
                fields["file"] = discord.File(io.BytesIO(data), filename=f"input_{record.job_id or 'job'}.png")
        channel = self.client.get_partial_messageable(settings.audit_channel_id, guild_id=record.guild_id)
        await channel.send(render(record), allowed_mentions=discord.AllowedMentions.none(), **fields)
        self.posted += 1

