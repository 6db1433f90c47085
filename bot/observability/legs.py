"""Timing the submit leg and the deliver leg of each job, from outside the job service.

- **Submit leg**: from the start of the input upload (``POST /upload/image``) to the answer of
  ``POST /prompt``: upload, graph injection, storing the prompt id, the POST. The job service
  runs both calls for a job in the same asyncio task, one after the other, so
  :class:`SubmitLegTimer` pairs them by task: :class:`TimedComfyClient` (a
  :class:`~bot.comfy.client.ComfyClient` the wiring builds when metrics are on) tells it when an
  upload starts and when a POST was answered. A task's mark is kept in a weak dictionary, so a
  job whose upload failed leaves nothing behind once its task ends.
- **Deliver leg**: each call of the delivery's ``deliver()`` (posting the result to Discord).
  :class:`TimedDelivery` wraps the Discord delivery handed to the job service and also notes
  when a job's first delivery began (the end of its run on ComfyUI), which
  :class:`~bot.observability.feed.MetricsFeed` reads when the job ends.

Neither imports discord.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bot.comfy.client import ComfyClient
from bot.comfy.models import FileRef, QueuedPrompt
from bot.jobs.models import Job

__all__ = ["Delivery", "SubmitLegTimer", "TimedComfyClient", "TimedDelivery"]


class Delivery(Protocol):
    """What the job service hands results and endings to (``bot.jobs.service.Delivery``)."""

    async def deliver(self, job: Job, result: Path, attempt: int) -> int | None: ...

    async def job_ended(self, job: Job) -> None: ...

    def follow(self, job: Job) -> None: ...


class SubmitLegTimer:
    """Pairs each task's upload start with its ``POST /prompt`` answer and passes the seconds
    between them to ``observe``."""

    def __init__(self, observe: Callable[[float], None], *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._observe = observe
        self._monotonic = monotonic
        self._starts: weakref.WeakKeyDictionary[asyncio.Task[Any], float] = weakref.WeakKeyDictionary()

    def upload_started(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._starts[task] = self._monotonic()

    def prompt_posted(self, ok: bool) -> None:
        """The task's ``POST /prompt`` ended (``ok``: answered); a failed one observes nothing."""
        task = asyncio.current_task()
        if task is None:
            return
        started = self._starts.pop(task, None)
        if ok and started is not None:
            self._observe(self._monotonic() - started)

    def __len__(self) -> int:
        return len(self._starts)


class TimedComfyClient(ComfyClient):
    """A :class:`ComfyClient` that reports its uploads and prompt posts to a :class:`SubmitLegTimer`."""

    def __init__(self, *args: Any, submit_timer: SubmitLegTimer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._submit_timer = submit_timer

    async def upload_image(
        self, data: bytes, filename: str, *, subfolder: str = "", type: str = "input", overwrite: bool = False
    ) -> FileRef:
        self._submit_timer.upload_started()
        return await super().upload_image(data, filename, subfolder=subfolder, type=type, overwrite=overwrite)

    async def queue_prompt(
        self,
        graph: dict[str, Any],
        *,
        client_id: str,
        prompt_id: str | None = None,
        extra_data: dict[str, Any] | None = None,
        front: bool = False,
    ) -> QueuedPrompt:
        ok = False
        try:
            queued = await super().queue_prompt(graph, client_id=client_id, prompt_id=prompt_id,
                                                extra_data=extra_data, front=front)
            ok = True
            return queued
        finally:
            self._submit_timer.prompt_posted(ok)


class TimedDelivery:
    """The job service's :class:`~bot.jobs.service.Delivery`, timed: each ``deliver()`` that
    returns is a deliver leg (``observe(seconds)``; one that raises is not), and the first one's
    start is kept per job until :meth:`take_delivery_start` (the job's end) so the running time
    can end there."""

    def __init__(self, inner: Delivery, observe: Callable[[float], None], *,
                 monotonic: Callable[[], float] = time.monotonic, now: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self._observe = observe
        self._monotonic = monotonic
        self._now = now
        self._delivery_started: dict[str, float] = {}  # job id -> wall time of its first deliver() call

    async def deliver(self, job: Job, result: Path, attempt: int) -> int | None:
        self._delivery_started.setdefault(job.id, self._now())
        started = self._monotonic()
        message_id = await self.inner.deliver(job, result, attempt)
        self._observe(self._monotonic() - started)
        return message_id

    async def job_ended(self, job: Job) -> None:
        await self.inner.job_ended(job)

    def follow(self, job: Job) -> None:
        self.inner.follow(job)

    def take_delivery_start(self, job_id: str) -> float | None:
        """When the job's first delivery began (wall time), forgetting it; None if it had none."""
        return self._delivery_started.pop(job_id, None)

    def per_job_counts(self) -> dict[str, int]:
        """The wrapped delivery's per-job records plus this one's (see ``JobService.memory_counts``)."""
        inner = getattr(self.inner, "per_job_counts", None)
        counts: dict[str, int] = dict(inner()) if callable(inner) else {}
        counts["timed_deliveries"] = len(self._delivery_started)
        return counts
