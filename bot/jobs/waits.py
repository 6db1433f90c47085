"""What a job that has not started yet is told: how many jobs are ahead of it, and about how long until it starts.

:class:`WaitBoard` answers for a job in the bot's line or in a ComfyUI server's own queue
(:class:`WaitEstimate`; None for a job that runs or has ended):

- in the line: the jobs on the servers that can run it (running, or posted and waiting in their
  queue) and the jobs before it in the fair line's order that one of those servers can run; the
  servers that can run it are the answering ones that accept its workflow and options
  (:class:`~bot.jobs.routing.WorkflowRouter`);
- in a server's queue: the job that server runs and those posted there before it.

The seconds come from the :class:`~bot.jobs.estimate.WaitEstimator` (its docstring gives the
model and its approximations), fed by :class:`~bot.jobs.run_timing.RunTimer`; a running job's
remaining time is its estimate less the time since its run started. Until the servers that can
run the job have a few warm runs of its workflow, ``seconds`` is None: "estimating...".

It reaches the member through the job's progress stream: :meth:`WaitBoard.decorate` adds
``ahead`` and ``wait`` to every waiting or queued update as it is published (so a new place in
line comes with its estimate), and :meth:`WaitBoard.refresh` (after each run learnt, and every
``interval`` seconds, :meth:`WaitBoard.run`) publishes a job's latest update again only when what
its status shows changed: the count ahead, or the wait in words (:func:`~bot.jobs.estimate.format_wait`,
coarse on purpose). Nothing is kept per job here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from bot.jobs.attempt import Attempt
from bot.jobs.context import JobContext
from bot.jobs.estimate import Queued, Running, WaitEstimator, Work, format_wait
from bot.jobs.progress import ProgressUpdate
from bot.jobs.routing import Needs
from bot.jobs.run_timing import RunTimer
from bot.jobs.workload import input_pixels, work_of
from bot.logs import log_failure

log = logging.getLogger(__name__)

__all__ = ["WAITING_PHASES", "WaitBoard", "WaitEstimate"]

#: The phases in which a job has not started and is told its wait.
WAITING_PHASES = frozenset({"waiting", "queued"})


@dataclass(frozen=True)
class WaitEstimate:
    """``ahead``: jobs before this one; ``seconds``: until it starts (None: estimating)."""

    ahead: int
    seconds: float | None

    @property
    def words(self) -> str:
        """The wait as a member reads it (``"starts in about 3 min"``, ``"estimating..."``)."""
        return format_wait(self.seconds)


@dataclass(frozen=True)
class _Flight:
    """A job given to a server: running there, or posted (or about to be) and waiting."""

    job_id: str
    server: str
    work: Work
    started: bool
    started_at: float | None  # monotonic(), when its run's start was seen
    order: tuple[float, str]  # posted earlier first; not posted yet last


class WaitBoard:
    """See the module docstring. ``needs`` is the dispatcher's (what each waiting job needs),
    ``attempts()`` the runner's attempts going on now."""

    def __init__(self, ctx: JobContext, estimator: WaitEstimator, timer: RunTimer, *, needs: Mapping[str, Needs],
                 attempts: Callable[[], Iterable[Attempt]]) -> None:
        self.ctx = ctx
        self.estimator = estimator
        self.timer = timer
        self.needs = needs
        self.attempts = attempts

    # ------------------------------------------------------------------ estimates

    def estimate(self, job_id: str) -> WaitEstimate | None:
        """The wait of a job in the line or in a server's queue; None otherwise."""
        return self._estimate(job_id, self._flights())

    def _estimate(self, job_id: str, flights: list[_Flight]) -> WaitEstimate | None:
        if job_id in self.ctx.queue:
            return self._in_line(job_id, flights)
        mine = next((f for f in flights if f.job_id == job_id), None)
        if mine is None or mine.started:
            return None
        return self._on_server(mine, flights)

    def _on_server(self, mine: _Flight, flights: list[_Flight]) -> WaitEstimate:
        others = [f for f in flights if f.server == mine.server and f.job_id != mine.job_id]
        running = [Running(f.server, f.work, started_at=f.started_at) for f in others if f.started]
        ahead = [Queued(f.work, f.server) for f in others if not f.started and f.order < mine.order]
        seconds = self.estimator.estimate_wait(mine.work, ahead, running, [mine.server], now=self.ctx.clock.monotonic())
        return WaitEstimate(len(running) + len(ahead), seconds)

    def _in_line(self, job_id: str, flights: list[_Flight]) -> WaitEstimate:
        ctx, needs = self.ctx, self.needs.get(job_id)
        accept = ctx.router.accepts(needs)
        backends = [b for b in ctx.pool if b.healthy and (accept is None or accept(b))]
        names = {b.name for b in backends}
        on_mine = [f for f in flights if f.server in names]
        running = [Running(f.server, f.work, started_at=f.started_at) for f in on_mine if f.started]
        ahead = [Queued(f.work, f.server) for f in on_mine if not f.started]
        line = 0
        for entry in ctx.queue.order():
            if entry.job_id == job_id:
                break
            other = self.needs.get(entry.job_id)
            other_accept = ctx.router.accepts(other)
            if other_accept is None or any(other_accept(b) for b in backends):
                ahead.append(Queued(self._work(other)))
                line += 1
        seconds = None
        if backends and needs is not None:
            seconds = self.estimator.estimate_wait(self._work(needs), ahead, running, [b.name for b in backends],
                                                   now=ctx.clock.monotonic())
        return WaitEstimate(len(on_mine) + line, seconds)

    def _work(self, needs: Needs | None) -> Work:
        if needs is None:
            return work_of("", {}, None)
        return work_of(needs.workflow, needs.options, needs.pixels, self.ctx.workflows.get(needs.workflow))

    def _flights(self) -> list[_Flight]:
        flights = []
        for attempt in self.attempts():
            job = attempt.job
            if job is None or attempt.decided:
                continue
            started_at = self.timer.started_at(attempt.prompt_id) if attempt.prompt_id else None
            work = work_of(job.workflow, job.options, input_pixels(job), self.ctx.workflows.get(job.workflow))
            posted = job.submitted_at if attempt.prompt_id and job.submitted_at is not None else math.inf
            flights.append(_Flight(job.id, attempt.backend.name, work, attempt.started or started_at is not None,
                                   started_at, (posted, job.id)))
        return flights

    # ------------------------------------------------------------------ telling the member

    def decorate(self, update: ProgressUpdate) -> ProgressUpdate:
        """``update`` with the job's wait added, if it is a waiting or queued one without it."""
        if update.phase not in WAITING_PHASES or update.ahead is not None:
            return update
        try:
            found = self.estimate(update.job_id)
        except Exception:  # an estimate must never stop a progress update
            log_failure(log, logging.WARNING, "job %s: no wait estimate", update.job_id)
            return update
        return update if found is None else replace(update, ahead=found.ahead, wait=found.seconds)

    def refresh(self) -> int:
        """Publish again the latest update of each job whose shown wait changed; returns how many."""
        ctx = self.ctx
        flights = self._flights()
        job_ids = [*ctx.queue.positions(), *(f.job_id for f in flights if not f.started)]
        changed = 0
        for job_id in job_ids:
            latest = ctx.streams.latest(job_id)
            if latest is None or latest.phase not in WAITING_PHASES:
                continue
            found = self._estimate(job_id, flights)
            if found is None or (latest.ahead, format_wait(latest.wait)) == (found.ahead, found.words):
                continue
            ctx.streams.publish(replace(latest, ahead=found.ahead, wait=found.seconds))
            changed += 1
        return changed

    async def run(self, interval: float) -> None:
        """Refresh every ``interval`` seconds (time passes for the running jobs), and drop the
        run timelines of prompts no job follows any more, until cancelled."""
        while True:
            await self.ctx.clock.sleep(interval)
            try:
                self.refresh()
                self.timer.prune({a.prompt_id for a in self.attempts() if a.prompt_id})
            except Exception:
                log_failure(log, logging.WARNING, "refreshing the wait estimates failed")
