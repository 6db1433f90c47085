"""Progress of a job as a stream of coalesced updates, plus an ETA estimate from step timing.

A producer (the job service following ComfyUI's websocket) calls
:meth:`ProgressStream.publish` as often as it likes; a consumer (the Discord delivery editing a
status message, which must throttle to stay under Discord's rate limits) does
``async for update in stream`` and always gets the *latest* update: intermediate ones
are dropped when it is slower than the producer. The terminal update (phase
``finished``) ends the stream and is always delivered. Several consumers may follow the
same stream, each at its own pace.

Previews are big and rare, so the last preview image seen is also kept on
:attr:`ProgressStream.last_preview`, even after a later update without one.

:func:`progress_from_event` is the one place that turns a ComfyUI event into an update (pure);
the job service's runner publishes what it gives, and ``python -m bot animate`` draws it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from bot.comfy.events import Event, Executing, ExecutionCached, ExecutionStart, PreviewImage, Progress
from bot.workflows import Workflow

__all__ = ["Phase", "PHASES", "ProgressUpdate", "ProgressStream", "ProgressStreams", "EtaEstimator",
           "progress_from_event"]

log = logging.getLogger(__name__)

#: waiting (the bot's line) -> queued (in the ComfyUI server's queue) -> starting -> running
#: (step k of n) -> encoding -> delivering -> finished.
Phase = Literal["waiting", "queued", "starting", "running", "encoding", "delivering", "finished"]
PHASES: tuple[str, ...] = ("waiting", "queued", "starting", "running", "encoding", "delivering", "finished")


@dataclass(frozen=True)
class ProgressUpdate:
    """One snapshot of a job's progress. ``message`` is member-facing text, if any.

    ``position``: place in the bot's queue (phase waiting). ``step``/``steps``/``node``: the
    progress node's step k of n. ``elapsed``/``eta`` in seconds. While the job waits (phases
    waiting and queued) ``ahead`` is the number of jobs before it and ``wait`` the estimated
    seconds until it starts (None while estimating), both added by the wait estimate
    (:mod:`bot.jobs.waits`); ``ahead`` None: no estimate was attached.
    """

    job_id: str
    phase: Phase
    position: int | None = None
    step: int | None = None
    steps: int | None = None
    node: str | None = None
    percent: float | None = None
    preview: bytes | None = field(default=None, repr=False)
    elapsed: float | None = None
    eta: float | None = None
    message: str | None = None
    ahead: int | None = None
    wait: float | None = None

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown progress phase {self.phase!r}")

    @property
    def is_terminal(self) -> bool:
        return self.phase == "finished"

    def with_wait(self, ahead: int, wait: float | None) -> ProgressUpdate:
        """This update with the jobs ahead and the wait set (``dataclasses.replace`` without its
        field-by-field rebuild: it runs for every place in line after every dispatch)."""
        new = object.__new__(ProgressUpdate)
        new.__dict__.update(self.__dict__, ahead=ahead, wait=wait)
        return new


class ProgressStream:
    """Latest-value broadcast of one job's progress (see module docstring)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._latest: ProgressUpdate | None = None
        self._version = 0
        self._closed = False
        self._changed = asyncio.Event()
        self.last_preview: bytes | None = None

    @property
    def latest(self) -> ProgressUpdate | None:
        return self._latest

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def version(self) -> int:
        """Number of updates published so far."""
        return self._version

    def publish(self, update: ProgressUpdate) -> None:
        """Replace the latest update and wake consumers. Ignored once the stream is closed."""
        if update.job_id != self.job_id:
            raise ValueError(f"update for job {update.job_id} published on the stream of job {self.job_id}")
        if self._closed:
            log.debug("job %s: progress update after the end ignored (%s)", self.job_id, update.phase)
            return
        self._latest = update
        self._version += 1
        if update.preview is not None:
            self.last_preview = update.preview
        if update.is_terminal:
            self._closed = True
        self._wake()

    def close(self) -> None:
        """End the stream without a terminal update (consumers stop after the latest one)."""
        if not self._closed:
            self._closed = True
            self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def __aiter__(self) -> _Cursor:
        return _Cursor(self)

    async def _next_after(self, seen: int) -> tuple[int, ProgressUpdate]:
        while True:
            if self._version > seen and self._latest is not None:
                return self._version, self._latest
            if self._closed:
                raise StopAsyncIteration
            await self._changed.wait()


class _Cursor:
    """One consumer's position in a :class:`ProgressStream`."""

    def __init__(self, stream: ProgressStream) -> None:
        self._stream = stream
        self._seen = 0

    def __aiter__(self) -> _Cursor:
        return self

    async def __anext__(self) -> ProgressUpdate:
        self._seen, update = await self._stream._next_after(self._seen)
        return update


class ProgressStreams:
    """The streams of all live jobs, by job id. A *decorator* (:meth:`decorate_with`) may add to
    every update before it is published (the wait estimate of a waiting job)."""

    def __init__(self) -> None:
        self._streams: dict[str, ProgressStream] = {}
        self._decorate: Callable[[ProgressUpdate], ProgressUpdate] | None = None

    def decorate_with(self, decorate: Callable[[ProgressUpdate], ProgressUpdate]) -> None:
        """Pass every update published from now on through ``decorate`` (quick, pure of I/O)."""
        self._decorate = decorate

    def get(self, job_id: str) -> ProgressStream:
        """The job's stream, created on first use."""
        stream = self._streams.get(job_id)
        if stream is None:
            stream = self._streams[job_id] = ProgressStream(job_id)
        return stream

    def publish(self, update: ProgressUpdate) -> None:
        if self._decorate is not None:
            update = self._decorate(update)
        self.get(update.job_id).publish(update)

    def latest(self, job_id: str) -> ProgressUpdate | None:
        """The job's last update, without creating a stream for it."""
        stream = self._streams.get(job_id)
        return stream.latest if stream is not None else None

    def discard(self, job_id: str) -> None:
        """Forget a job's stream (closing it so its consumers stop). Consumers that already hold
        it still get its last update; call it once the job has ended, so the process does not
        keep every job's stream (and its last preview image) for ever."""
        stream = self._streams.pop(job_id, None)
        if stream is not None:
            stream.close()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._streams

    def __len__(self) -> int:
        return len(self._streams)


class EtaEstimator:
    """Estimates the time left from step timing (exponential moving average per step).

    Feed it every progress message with :meth:`observe`; a change of ``steps`` or a step
    going backwards (a new progress node) starts a new estimate. Times come from the
    caller (the injected clock's ``monotonic()``), so it is pure.
    """

    def __init__(self, *, smoothing: float = 0.3) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        self.smoothing = smoothing
        self.reset()

    def reset(self) -> None:
        self._steps: int | None = None
        self._last_step: int | None = None
        self._last_at: float | None = None
        self._per_step: float | None = None

    @property
    def seconds_per_step(self) -> float | None:
        return self._per_step

    def observe(self, step: int, steps: int, at: float) -> None:
        """Record that the progress node reached ``step`` of ``steps`` at time ``at``."""
        if self._steps != steps or self._last_step is None or self._last_at is None or step < self._last_step:
            self._steps, self._last_step, self._last_at, self._per_step = steps, step, at, None
            return
        if step == self._last_step:
            return
        sample = max(0.0, at - self._last_at) / (step - self._last_step)
        if self._per_step is None:
            self._per_step = sample
        else:
            self._per_step += self.smoothing * (sample - self._per_step)
        self._last_step, self._last_at = step, at

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left for the current progress node, or None before two observations."""
        if self._per_step is None or self._steps is None or self._last_step is None or self._last_at is None:
            return None
        remaining = max(0, self._steps - self._last_step) * self._per_step
        if now is not None:
            remaining -= max(0.0, now - self._last_at)
        return max(0.0, remaining)


def progress_from_event(event: Event, workflow: Workflow, *, job_id: str, latest: ProgressUpdate | None,
                        elapsed: float | None = None) -> ProgressUpdate | None:
    """The update a ComfyUI ``event`` of a job's prompt makes, given the job's ``latest`` update
    (None when there is no new update to show). Pure: the caller publishes it, and adds the ETA
    to a ``running`` update (:class:`EtaEstimator`, fed with its step and steps).

    - the first execution event (while the job is waiting or queued) -> ``starting``;
    - progress of the workflow's progress node -> ``running``, step k of n;
      progress of any other node -> ``encoding``;
    - a preview while ``running`` -> the latest update with that preview;
    - the video node starting, or any node after the last sampling step (decoding the frames
      counts too) -> ``encoding``.
    """
    if isinstance(event, Progress):
        percent = 100.0 * event.value / event.max if event.max else None
        if event.node == workflow.progress_node_id:
            return ProgressUpdate(job_id=job_id, phase="running", step=event.value, steps=event.max, node=event.node,
                                  percent=percent, elapsed=elapsed,
                                  message=workflow.describe_progress(event.node, event.value, event.max))
        return ProgressUpdate(job_id=job_id, phase="encoding", node=event.node, percent=percent, elapsed=elapsed,
                              message="encoding")
    if isinstance(event, PreviewImage):
        return replace(latest, preview=event.image) if latest is not None and latest.phase == "running" else None
    if isinstance(event, Executing) and event.node is not None and (
        event.node == workflow.output_node_id or _past_sampling(latest, event.node)
    ):
        return ProgressUpdate(job_id=job_id, phase="encoding", node=event.node, elapsed=elapsed, message="encoding")
    if isinstance(event, (ExecutionStart, ExecutionCached, Executing)) and (
        latest is None or latest.phase in ("waiting", "queued")
    ):
        return ProgressUpdate(job_id=job_id, phase="starting", elapsed=0.0, message="Starting")
    return None


def _past_sampling(latest: ProgressUpdate | None, node: str) -> bool:
    """Whether the job's last update was the final sampling step and ``node`` is another node."""
    return (latest is not None and latest.phase == "running" and latest.step is not None
            and latest.steps is not None and latest.step >= latest.steps and node != latest.node)
