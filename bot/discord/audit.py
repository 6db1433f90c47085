"""The audit log on Discord: every job event and moderation action, stored and posted.

The bot makes one :class:`AuditLog` (it needs the Discord client) and the wiring
(:func:`bot.app.build`) registers it as a job-service listener (:meth:`JobService.add_listener`):
each job event (queued, delivered, failed, cancelled, timed out, deleted) becomes an
:class:`~bot.storage.AuditRecord` built by :func:`bot.moderation.audit_text.job_record` and is
*always* stored (``store.audit.add``). Moderation actions are stored by
:mod:`bot.moderation.actions`; the /mod cog hands their records to :meth:`AuditLog.post`, or has
:meth:`AuditLog.record` store and post one it describes.

Content safety (issue 16): the :class:`~bot.safety.gate.SafetyGate` hands every refusal and withheld
result to :meth:`AuditLog.on_safety_event` (wired by :func:`bot.app.build`): stored, and posted with
the labels and scores; a withheld result's post carries the Release and Delete buttons
(:mod:`bot.discord.withheld_buttons`).

Posting: when the guild has an audit channel, the record's one-line rendering
(:func:`bot.moderation.audit_text.render`) is sent there with mentions disabled. A queued job, a
refused input and a withheld result carry a small thumbnail (made in a thread) **only when the
audit channel is age-restricted** (Discord's NSFW flag, read when posting). Posts go through one worker
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

from bot.discord.safe_delivery import channel_age_restricted
from bot.discord.withheld_buttons import withheld_view
from bot.errors import JobFailed
from bot.jobs.models import Job
from bot.logs import log_failure
from bot.media.thumbnails import thumbnail_png
from bot.media.video import poster_frame
from bot.moderation.audit_text import JobEvents, SafetyActions, job_record, render
from bot.safety.gate import SafetyEvent
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


#: Safety event kind -> audit action.
SAFETY_ACTIONS: dict[str, str] = {"refused": SafetyActions.REFUSED, "withheld": SafetyActions.WITHHELD}


@dataclasses.dataclass(frozen=True)
class _Post:
    record: AuditRecord
    thumbnail: Path | bytes | None = None  # an image file, a video's first frame, or PNG bytes
    withheld_job: str | None = None  # carries Release and Delete for this job's withheld result


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

    async def on_safety_event(self, event: SafetyEvent) -> None:
        """The safety gate's listener: store a refusal or withheld result, then queue its post."""
        action = SAFETY_ACTIONS.get(event.kind)
        if action is None:
            return
        record = AuditRecord(guild_id=event.guild_id, at=event.at, actor_id=event.user_id, action=action,
                             job_id=event.job_id, details=event.details())
        record = dataclasses.replace(record, id=await self.store.audit.add(record))
        thumbnail: Path | bytes | None = event.thumbnail if event.thumbnail is not None else event.result_path
        self.post(record, thumbnail=thumbnail,
                  withheld_job=event.job_id if action == SafetyActions.WITHHELD else None)

    async def record(self, *, guild_id: int, actor_id: int, action: str, details: dict[str, Any],
                     job_id: str | None = None) -> AuditRecord:
        """Store a moderation record made now and queue its post; returns it with its id."""
        record = AuditRecord(guild_id=guild_id, at=self.store.clock.now(), actor_id=actor_id, action=action,
                             job_id=job_id, details=details)
        record = dataclasses.replace(record, id=await self.store.audit.add(record))
        self.post(record)
        return record

    # ------------------------------------------------------------------ posting

    def post(self, record: AuditRecord, *, thumbnail: Path | bytes | None = None,
             withheld_job: str | None = None) -> None:
        """Queue ``record`` (already stored) for the guild's audit channel, if it has one."""
        if record.guild_id is None or self._closed:
            return
        try:
            self._queue.put_nowait(_Post(record, thumbnail, withheld_job))
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
        # Images only where Discord marks the audit channel age-restricted (issue 16).
        if item.thumbnail is not None and channel_age_restricted(self.client, settings.audit_channel_id, record.guild_id):
            data = await asyncio.to_thread(_thumbnail, item.thumbnail)
            if data is not None:
                name = "result" if record.action == SafetyActions.WITHHELD else "input"
                fields["file"] = discord.File(io.BytesIO(data), filename=f"{name}_{record.job_id or 'job'}.png")
        if item.withheld_job is not None:
            fields["view"] = withheld_view([item.withheld_job])
        channel = self.client.get_partial_messageable(settings.audit_channel_id, guild_id=record.guild_id)
        await channel.send(render(record), allowed_mentions=discord.AllowedMentions.none(), **fields)
        self.posted += 1


def _thumbnail(source: Path | bytes) -> bytes | None:
    """A small PNG of an image file, of PNG bytes, or of a video's first frame (blocking)."""
    data = thumbnail_png(source)
    if data is None and isinstance(source, Path):
        try:
            return poster_frame(source, max_side=256)
        except JobFailed:
            return None
    return data
