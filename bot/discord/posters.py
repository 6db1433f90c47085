"""Posters: the still image shown in a result's embed, made while the job is still on a server.

Discord shows a GIF or WebP inline, animated, first frame first, so those get no poster. An MP4
is shown as a player; its poster is made from the prepared input (what the video's first frame
shows) in a thread while the job runs, so delivering costs nothing for it. When the input is gone
the poster comes from the video's first frame instead. An Extend's input is the previous clip's
last frame, not the joined clip's first, so an extension's poster always comes from the video.

:class:`Posters` keeps one task per job from the moment its poster is started until it is taken
by the delivery or dropped when the job ends (``JobService.memory_counts()`` counts them).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot.jobs.models import Job
from bot.logs import log_failure
from bot.media.video import poster_frame, poster_from_image
from bot.tasks import cancelling

log = logging.getLogger(__name__)

__all__ = ["INLINE_FORMATS", "POSTER_MARGIN", "POSTER_PHASES", "POSTER_SHARE", "Posters"]

#: Phases in which a job's poster is made ahead of its result: it is on (or about to be on) a server.
POSTER_PHASES = frozenset({"queued", "starting", "running", "encoding"})
#: Results Discord shows inline as animated images: their first frame is what it shows anyway, so no poster.
INLINE_FORMATS = frozenset({"gif", "webp"})
POSTER_MARGIN = 64 * 1024  # room left for the form overhead
POSTER_SHARE = 8  # the poster may take at most 1/8 of the upload limit, else it is left out


class Posters:
    """Posters being made, one task per job (see the module docstring)."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[bytes | None]] = {}

    def start(self, job: Job, *, ahead: bool = True) -> None:
        """Start making the job's poster from its prepared input, in a thread, once (kept until the
        job ends). Only jobs on a server have one, so a long line costs no memory; ``ahead``: not
        for a job that asked for a GIF or WebP (it gets none unless it must become an MP4)."""
        if job.id in self._tasks or not job.input_path or job.extension_index:  # an Extend's input is not frame 0
            return
        if ahead and str(job.options.get("format", "")).lower() in INLINE_FORMATS:
            return
        self._tasks[job.id] = asyncio.create_task(asyncio.to_thread(poster_from_image, Path(job.input_path)),
                                                  name=f"poster-{job.id}")

    async def take(self, job: Job, video: bytes) -> bytes:
        """The poster made while the job ran, else one made now: from the prepared input, or from
        the video's first frame when the input is gone (:class:`JobFailed` if that is unreadable)."""
        task = self._tasks.pop(job.id, None)
        if task is None and job.input_path:
            self.start(job, ahead=False)
            task = self._tasks.pop(job.id, None)
        poster: bytes | None = None
        if task is not None:
            try:
                poster = await task
            except asyncio.CancelledError:
                if cancelling() or not task.cancelled():
                    raise
                poster = None  # only the poster was cancelled (the bot is closing)
            except Exception:
                log_failure(log, logging.INFO, "job %s: no poster from its input", job.id)
                poster = None
        if poster is None:
            poster = await asyncio.to_thread(poster_frame, video)
        return poster

    def drop(self, job_id: str) -> None:
        """The job ended: its poster (if still being made) is not needed; the thread finishes on its own."""
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()

    def __len__(self) -> int:
        return len(self._tasks)

    def pending(self) -> list[asyncio.Task[bytes | None]]:
        """Every poster task, removed from here (the delivery is closing and cancels them)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        return tasks
