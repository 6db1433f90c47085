"""What the parts of the job service share: :class:`JobContext`, and :class:`TaskRegistry`, the one registry of its tasks.

:class:`~bot.jobs.service.JobService` makes one context and hands it to each of its parts
(intake, dispatcher, runner, fleet, recovery, housekeeping). It holds what they all read: the
job store, the server pool and its websocket hubs, the workflows and what each server can run
(router), the fair queue, the progress streams, the clock, the limits, the delivery (the
Discord layer, connected after the service is built) and the listeners of job events. It also
holds the dispatcher's wake-up (:meth:`JobContext.wake`) and :class:`TaskRegistry`, which owns
every task the service starts: one per job being run, short helpers, and the service's loops.
Nothing here decides anything about a job.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from bot.clock import Clock
from bot.comfy.client import ComfyClient
from bot.comfy.hub import ComfyHub
from bot.jobs.backends import Backend, BackendPool
from bot.jobs.fairqueue import FairQueue, QueueWording
from bot.jobs.models import Job
from bot.jobs.progress import ProgressStreams
from bot.jobs.routing import WorkflowRouter
from bot.logs import log_failure
from bot.moderation import messages
from bot.storage import Storage
from bot.workflows import WorkflowRegistry
from bot.workflows.support import WorkflowSupport

log = logging.getLogger(__name__)

__all__ = ["QUEUE_WORDING", "Delivery", "JobContext", "JobListener", "ServiceLimits", "TaskRegistry", "comfy"]

#: The bot's own words for the line's refusals (every limit message is in bot.moderation.messages).
QUEUE_WORDING = QueueWording(queue_full=messages.queue_full(), in_flight=messages.jobs_in_flight)

#: Called with (job, event, actor id) when a job is queued, ends or is deleted; ``event`` is
#: ``"queued"``, ``"deleted"`` or the terminal state's value (``delivered``, ``failed``,
#: ``cancelled``, ``timed_out``). ``actor id``: who cancelled or deleted it (else None).
JobListener = Callable[[Job, str, "int | None"], Awaitable[None]]


class Delivery(Protocol):
    """Where results and endings go (the Discord layer implements it)."""

    async def deliver(self, job: Job, result: Path, attempt: int) -> int | None:
        """Post the result and return its message id. ``attempt`` counts the tries across restarts:
        above 1, an earlier try may have posted it already, so look for it first."""

    async def job_ended(self, job: Job) -> None: ...

    def follow(self, job: Job) -> None:
        """Show a job's progress (called for jobs recovered after a restart)."""


@dataclass(frozen=True)
class ServiceLimits:
    """Limits from the settings."""

    job_timeout: float = 900.0
    max_waiting: int = 50
    max_in_flight: int = 2
    max_input_pixels: int = 100_000_000
    retention_days: int = 7
    delivery_attempts: int = 5


def comfy(backend: Backend) -> ComfyClient:
    """The ComfyUI client of a backend (the pool only needs a narrow protocol of it)."""
    return cast(ComfyClient, backend.client)


class TaskRegistry:
    """Every task the job service starts, in one place, so closing it cancels them all.

    - a *job task* runs one job (at most one per job id; :meth:`job_running` tells);
    - a *helper* is a short piece of work started from synchronous code (a health change, a
      job that can never run) and dropped when done;
    - a *loop* runs for the service's life (dispatch, health checks, housekeeping), by name.

    ``on_job_done`` is called whenever a job task ends (the dispatcher may have room again).
    """

    def __init__(self, on_job_done: Callable[[], None]) -> None:
        self._on_job_done = on_job_done
        self._jobs: dict[str, asyncio.Future[None]] = {}
        self._helpers: dict[int, asyncio.Future[Any]] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._ids = itertools.count()

    def run_job(self, job_id: str, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._jobs[job_id] = task

        def done(t: asyncio.Future[None]) -> None:
            if self._jobs.get(job_id) is t:
                del self._jobs[job_id]
            self._on_job_done()

        task.add_done_callback(done)

    def spawn(self, work: Awaitable[Any]) -> None:
        key = next(self._ids)
        task = asyncio.ensure_future(work)
        self._helpers[key] = task
        task.add_done_callback(lambda _t: self._helpers.pop(key, None))

    def run_loop(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        self._loops[name] = asyncio.create_task(work, name=name)

    def job_running(self, job_id: str) -> bool:
        return job_id in self._jobs

    def job_count(self) -> int:
        return len(self._jobs)

    def helper_count(self) -> int:
        return len(self._helpers)

    async def cancel_all(self) -> None:
        """Cancel every task and wait for them (their own failures are not raised)."""
        tasks = [*self._loops.values(), *self._jobs.values(), *self._helpers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops.clear()
        self._jobs.clear()
        self._helpers.clear()


class JobContext:
    """The job service's shared state (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Storage,
        pool: BackendPool,
        hubs: Mapping[str, ComfyHub],
        workflows: WorkflowRegistry,
        data_dir: Path,
        limits: ServiceLimits,
        clock: Clock,
    ) -> None:
        self.store = store
        self.pool = pool
        self.hubs = dict(hubs)
        self.workflows = workflows
        self.support = WorkflowSupport()
        self.router = WorkflowRouter(pool, self.support, lambda: self.workflows)
        self.limits = limits
        self.clock = clock
        self.inputs_dir = data_dir / "inputs"
        self.results_dir = data_dir / "results"
        self.queue = FairQueue(wording=QUEUE_WORDING, max_waiting=limits.max_waiting, max_in_flight=limits.max_in_flight)
        self.streams = ProgressStreams()
        self.delivery: Delivery | None = None
        self.listeners: list[JobListener] = []
        self.started = False
        self.closing = False
        self.wakeup = asyncio.Event()
        self.tasks = TaskRegistry(on_job_done=self.wake)

    def wake(self) -> None:
        """Tell the dispatcher to look again (a job waits, a server has room)."""
        self.wakeup.set()

    async def emit(self, job: Job, event: str, actor: int | None = None) -> None:
        """Tell every listener about a job event (see :data:`JobListener`)."""
        if self.closing:
            return  # shutting down: the store may be closed; recovery reports what happens next
        for listener in list(self.listeners):
            try:
                await listener(job, event, actor)
            except asyncio.CancelledError:
                raise
            except Exception:
                log_failure(log, logging.WARNING, "job %s: a %s listener failed", job.id, event)
