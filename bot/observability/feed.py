"""What moves the bot's metrics: :class:`MetricsFeed` listens to the job service from outside.

Nothing in the job service knows about metrics; the feed uses the signals it already gives:

- job events (``JobService.add_listener``, the audit log's hook): a job that ends is counted by
  final state and workflow, and its times observed from the job's own timestamps (the injected
  clock's ``now()``): waiting = ``started_at - created_at``, running = from ``started_at`` to the
  start of its delivery (:class:`~bot.observability.legs.TimedDelivery`) or, without one, to
  ``finished_at``, end to end = ``finished_at - created_at``. A phase the job never reached is
  not observed (a job cancelled while waiting has no waiting or running time, only its total);
- the server pool's health listener (``pool.add_listener``): up/down as soon as it changes;
- each websocket hub's ``on_reconnect``: a reconnection of that server's websocket;
- :meth:`refresh`, awaited before each scrape of ``/metrics``: jobs not yet ended by state (one
  ``COUNT ... GROUP BY`` on the job store's state index) and every server's health and queue
  length from ``server_views()`` (what ``/owner servers`` shows);
- :meth:`refused`: the animate flow's refusals (:func:`~bot.observability.metrics.refusal_reason_for`).

A server counts as up when it answers health checks and, after a failed check, while its
websocket is still connected: the same rule by which the job service accepts new jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.jobs.backends import Backend, ServerView
from bot.jobs.models import ACTIVE_STATES, TERMINAL_STATES, Job, JobState
from bot.jobs.service import JobService
from bot.observability.legs import TimedDelivery
from bot.observability.metrics import BotMetrics, refusal_reason_for
from bot.storage import Storage

__all__ = ["MetricsFeed", "answering"]

log = logging.getLogger(__name__)

_TERMINAL = frozenset(state.value for state in TERMINAL_STATES)


def answering(view: ServerView) -> bool:
    """Whether a server takes jobs now (healthy, and after a failed check still on its websocket)."""
    status = view.status
    return status.healthy and (status.consecutive_failures == 0 or view.websocket_connected)


class MetricsFeed:
    """Feeds ``metrics`` from the job service's signals (see the module docstring)."""

    def __init__(self, metrics: BotMetrics, *, jobs: JobService, store: Storage,
                 delivery: TimedDelivery | None = None) -> None:
        self.metrics = metrics
        self.jobs = jobs
        self.store = store
        self.delivery = delivery
        self._connected = False

    def connect(self) -> None:
        """Listen to the job service, its server pool and its hubs (once, before it starts)."""
        if self._connected:
            return
        self._connected = True
        self.jobs.add_listener(self.on_job_event)
        self.jobs.pool.add_listener(self.on_health)
        for name, hub in self.jobs.hubs.items():
            hub.on_reconnect(self._reconnected(name))
        self.metrics.add_workflows(self.jobs.workflows.names())

    # ---- signals ----------------------------------------------------------------------

    async def on_job_event(self, job: Job, event: str, actor: int | None) -> None:
        if event not in _TERMINAL:
            return
        delivery_start = self.delivery.take_delivery_start(job.id) if self.delivery is not None else None
        if job.workflow in self.jobs.workflows:
            self.metrics.add_workflows([job.workflow])
        started, created, finished = job.started_at, job.created_at, job.finished_at
        ran_until = delivery_start if delivery_start is not None else finished
        self.metrics.job_ended(
            JobState(event),
            job.workflow,
            waited_s=None if started is None else started - created,
            ran_s=None if started is None or ran_until is None else ran_until - started,
            total_s=None if finished is None else finished - created,
        )

    def on_health(self, backend: Backend, healthy: bool) -> None:
        self.metrics.server_status(backend.name, up=healthy, queue_depth=backend.queue_remaining if healthy else None)

    def _reconnected(self, name: str) -> Callable[[], Awaitable[None]]:
        async def on_reconnect() -> None:
            self.metrics.ws_reconnected(name)

        return on_reconnect

    def refused(self, exc: BaseException) -> None:
        """Count a refused request, when ``exc`` is one of the refusals (else nothing)."""
        reason = refusal_reason_for(exc)
        if reason is not None:
            self.metrics.refused(reason)

    # ---- at scrape time -----------------------------------------------------------------

    async def refresh(self) -> None:
        """Jobs by state and every server's health and queue, read now (before a scrape)."""
        self.metrics.add_workflows(self.jobs.workflows.names())
        for view in self.jobs.server_views():
            up = answering(view)
            self.metrics.server_status(view.status.name, up=up, queue_depth=view.status.queue_remaining if up else None)
        found = await self.store.jobs.count_by_state(ACTIVE_STATES)
        counts: dict[JobState | str, int] = {state: n for state, n in found.items()}
        self.metrics.job_counts(counts)
