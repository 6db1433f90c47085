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
coarse on purpose). The waits of all those jobs are computed together, in one pass over the line
per group of jobs with the same servers and workflow
(:meth:`~bot.jobs.estimate.WaitEstimator.line_waits`), and kept until the code running now
yields, so a burst of updates (every place in line after a dispatch) costs one pass; progress
updates may use a pass up to ``DECORATE_MAX_AGE`` (0.25 s) old, and the waits are then told again
from a new pass within ``STALE_REFRESH_DELAY`` (1 s), so a busy line costs a few passes a second
rather than one per dispatch. Runs learnt close together share one refresh (:meth:`WaitBoard.refresh_soon`). Nothing
is kept per job here.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bot.jobs.attempt import Attempt
from bot.jobs.backends import Backend
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
#: Seconds between a run being learnt and the waits being told again (runs learnt meanwhile share it).
REFRESH_DELAY = 0.5
#: How old (seconds) a pass over the line may be for a progress update's wait (see WaitBoard._snapshot).
DECORATE_MAX_AGE = 0.25
#: Seconds until waits told from an older pass are told again (one refresh for a whole busy spell).
STALE_REFRESH_DELAY = 1.0


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
        self._cache: dict[str, WaitEstimate] | None = None  # the last pass (see _snapshot)
        self._fresh = False  # the last pass was made in the code running now
        self._cache_at = 0.0  # event-loop time of the last pass
        self._refresh_handle: asyncio.Handle | None = None

    # ------------------------------------------------------------------ estimates

    def estimate(self, job_id: str, *, max_age: float = 0.0) -> WaitEstimate | None:
        """The wait of a job in the line or in a server's queue; None otherwise. ``max_age``: a
        pass made up to that many seconds ago will do (the waits are told again soon after)."""
        found = self._snapshot(max_age).get(job_id)
        if found is None and self._cache is not None and not self._fresh:  # the line changed since: look again
            self._cache = None
            found = self._snapshot().get(job_id)
        return found

    def _snapshot(self, max_age: float = 0.0) -> dict[str, WaitEstimate]:
        """Every waiting or queued job's wait, computed at once (a long line costs one pass), kept
        until the code running now yields (a burst of updates shares it), and, for ``max_age``
        seconds, for the progress updates: a pass per change of the line would cost a pass per
        dispatch. Waits told from an older pass are told again, from a new one, shortly after
        (:meth:`refresh_soon`), so what a member sees lags the line by about a second at most."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # no loop running (a test): nothing is kept
        if self._cache is not None and loop is not None:
            if self._fresh:
                return self._cache
            if loop.time() - self._cache_at <= max_age:
                self.refresh_soon(STALE_REFRESH_DELAY)
                return self._cache
        flights = self._flights()
        now = self.ctx.clock.monotonic()
        found = self._on_servers(flights, now)
        found.update(self._in_line(flights, now))
        if loop is not None:
            self._cache, self._fresh, self._cache_at = found, True, loop.time()
            loop.call_soon(self._no_longer_fresh)
        return found

    def _no_longer_fresh(self) -> None:
        self._fresh = False

    def _on_servers(self, flights: list[_Flight], now: float) -> dict[str, WaitEstimate]:
        """Each job in a server's queue waits for what runs there and what was posted before it."""
        found = {}
        for server in {f.server for f in flights}:
            here = [f for f in flights if f.server == server]
            running = [Running(f.server, f.work, started_at=f.started_at) for f in here if f.started]
            posted = sorted((f for f in here if not f.started), key=lambda f: f.order)
            for i, mine in enumerate(posted):
                ahead = [Queued(f.work, f.server) for f in posted[:i]]
                seconds = self.estimator.estimate_wait(mine.work, ahead, running, [server], now=now)
                found[mine.job_id] = WaitEstimate(len(running) + i, seconds)
        return found

    def _in_line(self, flights: list[_Flight], now: float) -> dict[str, WaitEstimate]:
        """Each job in the bot's line, in groups of the same servers and workflow (one pass each)."""
        ctx = self.ctx
        healthy = [b for b in ctx.pool if b.healthy]
        line = [(entry.job_id, self.needs.get(entry.job_id)) for entry in ctx.queue.order()]
        accepted = self._accepted(line, healthy)
        works = [self._work(needs) for _, needs in line]
        found = {}
        groups: dict[tuple[frozenset[str], str], list[int]] = {}
        for i, (job_id, needs) in enumerate(line):
            if accepted[i] and needs is not None:
                groups.setdefault((accepted[i], needs.workflow), []).append(i)
            else:
                found[job_id] = WaitEstimate(i, None)  # no answering server can run it now
        for (servers, workflow), members in groups.items():
            names = [b.name for b in healthy if b.name in servers]
            on_them = [f for f in flights if f.server in servers]
            running = [Running(f.server, f.work, started_at=f.started_at) for f in on_them if f.started]
            queued = [Queued(f.work, f.server) for f in on_them if not f.started]
            asked = set(members)
            ahead_of = [i for i in range(members[-1] + 1)  # those that may use them
                        if accepted[i] is servers or accepted[i] & servers]
            waits = self.estimator.line_waits(workflow, [(works[i], i in asked) for i in ahead_of], running,
                                              queued, names, now=now)
            for count, (i, seconds) in enumerate(zip(ahead_of, waits)):
                if i in asked:
                    found[line[i][0]] = WaitEstimate(len(on_them) + count, seconds)
        return found

    def _accepted(self, line: list[tuple[str, Needs | None]], healthy: list[Backend]) -> list[frozenset[str]]:
        """The answering servers that can run each job of the line (per workflow when no server
        refuses any of its option values, which is the rule; per job otherwise)."""
        support, router = self.ctx.support, self.ctx.router
        every = frozenset(b.name for b in healthy)
        per_workflow: dict[str, frozenset[str] | None] = {}
        accepted = []
        for _, needs in line:
            if needs is None:
                accepted.append(every)
                continue
            if needs.workflow not in per_workflow:
                clean = not any(support.partial_problems(b.name, needs.workflow) for b in healthy)
                per_workflow[needs.workflow] = frozenset(
                    b.name for b in healthy if not support.problems(b.name, needs.workflow)) if clean else None
            shared = per_workflow[needs.workflow]
            if shared is None:
                accept = router.accepts(needs)
                shared = frozenset(b.name for b in healthy if accept is None or accept(b))
            accepted.append(shared)
        return accepted

    def _work(self, needs: Needs | None) -> Work:
        if needs is None:
            return work_of("", {}, None)
        if needs.work is not None:  # worked out once, when the job joined the line
            return needs.work
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
            found = self.estimate(update.job_id, max_age=DECORATE_MAX_AGE)
        except Exception:  # an estimate must never stop a progress update
            log_failure(log, logging.WARNING, "job %s: no wait estimate", update.job_id)
            return update
        return update if found is None else update.with_wait(found.ahead, found.seconds)

    def refresh(self) -> int:
        """Publish again the latest update of each job whose shown wait changed; returns how many."""
        self._cache = None  # what is known now
        changed = 0
        for job_id, found in self._snapshot().items():
            latest = self.ctx.streams.latest(job_id)
            if latest is None or latest.phase not in WAITING_PHASES:
                continue
            if (latest.ahead, format_wait(latest.wait)) == (found.ahead, found.words):
                continue
            self.ctx.streams.publish(latest.with_wait(found.ahead, found.seconds))
            changed += 1
        return changed

    def refresh_soon(self, delay: float = REFRESH_DELAY) -> None:
        """Refresh once, ``delay`` seconds from now (event-loop time), however many runs are learnt
        meanwhile: jobs finishing one after another cost one pass, not one each."""
        if self._refresh_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh()
            return
        self._refresh_handle = loop.call_later(delay, self._scheduled_refresh)

    def _scheduled_refresh(self) -> None:
        self._refresh_handle = None
        try:
            self.refresh()
        except Exception:
            log_failure(log, logging.WARNING, "refreshing the wait estimates failed")

    def close(self) -> None:
        """Drop a scheduled refresh (the job service is closing)."""
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh_handle = None

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
