"""The job service: a fair queue over several ComfyUI servers that never loses a job; :class:`JobService` is its facade.

A job is stored (SQLite) before anything is sent anywhere, waits in the bot's own round-robin
line, runs on the least-loaded healthy server that can run it, and ends delivered, failed (with
a reason members understand), cancelled or timed out. :class:`JobService` is the narrow, typed
surface the Discord layer, the cogs, the tools and the tests use; the work is done by its parts,
each in its own module, over one shared :class:`~bot.jobs.context.JobContext`:

- :mod:`bot.jobs.intake`: submit, re-roll, extend (:mod:`bot.jobs.extend`), cancel, clear, the limits (and the slot reserved for
  an admitted request while its image is prepared);
- :mod:`bot.jobs.dispatcher`: the fair line, choosing a server, places in line, time-outs while
  waiting;
- :mod:`bot.jobs.runner` (with :mod:`bot.jobs.attempt`): one attempt at running a job on a server
  and the one reason it ends (:mod:`bot.jobs.endings` writes every end);
- :mod:`bot.jobs.fleet`: server health, evacuating a dead server, removing abandoned prompts,
  which workflows each server can run;
- :mod:`bot.jobs.recovery`: every unfinished job on start, through the runner;
- :mod:`bot.jobs.housekeeping`: the periodic sweep and retention;
- :mod:`bot.jobs.run_timing` and :mod:`bot.jobs.waits`: run times learnt from the servers'
  websockets (into the :class:`~bot.jobs.estimate.WaitEstimator` given), and the wait of each job
  not started yet, added to its progress updates (:meth:`JobService.wait_estimate`).

Every task the service starts is in one registry (:class:`~bot.jobs.context.TaskRegistry`);
:meth:`JobService.memory_counts` names every per-job record kept in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.clock import Clock, SystemClock
from bot.comfy.hub import ComfyHub
from bot.jobs.backends import Backend, BackendPool, ServerView, WorkflowProblems
from bot.jobs.context import QUEUE_WORDING, Delivery, JobContext, JobListener, ServiceLimits
from bot.jobs.dispatcher import Dispatcher
from bot.jobs.endings import GENERIC_FAILURE, Endings
from bot.jobs.estimate import WaitEstimator
from bot.jobs.extend import JoiningDelivery
from bot.jobs.fairqueue import DEFAULT, FairQueue, Limit, Reservation
from bot.jobs.fleet import Fleet
from bot.jobs.housekeeping import apply_retention, sweep
from bot.jobs.intake import Intake, JobRequest
from bot.jobs.models import ACTIVE_STATES, Job, JobState
from bot.jobs.progress import ProgressStream, ProgressStreams, ProgressUpdate
from bot.jobs.recovery import recover
from bot.jobs.run_timing import RunTimer
from bot.jobs.runner import Runner
from bot.jobs.waits import WaitBoard, WaitEstimate
from bot.safety.ahead import ResultCheckAhead
from bot.safety.gate import InputCheck
from bot.storage import Storage
from bot.workflows import Workflow, WorkflowRegistry
from bot.workflows.support import WorkflowSupport

log = logging.getLogger(__name__)

__all__ = ["ACTIVE_STATES", "DEFAULT", "GENERIC_FAILURE", "QUEUE_WORDING", "Delivery", "JobListener", "JobRequest",
           "JobService", "Reservation", "ServerView", "ServiceLimits", "WaitEstimate", "WorkflowProblems"]


class JobService:
    """See the module docstring."""

    def __init__(
        self,
        *,
        store: Storage,
        pool: BackendPool,
        hubs: Mapping[str, ComfyHub],
        workflows: WorkflowRegistry,
        data_dir: Path,
        limits: ServiceLimits | None = None,
        clock: Clock | None = None,
        rng: Any = None,
        health_interval: float = 5.0,
        sweep_interval: float = 5.0,
        owns_hubs: bool = True,
        input_check: InputCheck | None = None,
        result_check: ResultCheckAhead | None = None,
        estimator: WaitEstimator | None = None,
        wait_interval: float = 5.0,
    ) -> None:
        self.ctx = ctx = JobContext(store=store, pool=pool, hubs=hubs, workflows=workflows, data_dir=data_dir,
                                    limits=limits or ServiceLimits(), clock=clock or SystemClock())
        self._health_interval = health_interval
        self._sweep_interval = sweep_interval
        self._owns_hubs = owns_hubs
        self._wait_interval = wait_interval

        def start(job_id: str, backend: Backend) -> None:
            self.runner.start_new(job_id, backend)

        def lost(backend: Backend) -> None:
            self.runner.server_lost(backend)

        self.endings = Endings(ctx)
        self.dispatcher = Dispatcher(ctx, self.endings, start)
        self.fleet = Fleet(ctx, lost)
        self.runner = Runner(ctx, self.endings, self.dispatcher, self.fleet.abandon, result_check=result_check)
        self.intake = Intake(ctx, dispatcher=self.dispatcher, runner=self.runner, endings=self.endings, fleet=self.fleet,
                             rng=rng, input_check=input_check)
        self.estimator = estimator or WaitEstimator()
        self.run_timer = RunTimer(self.estimator, clock=ctx.clock, job_of_prompt=self._job_of_prompt,
                                  workflows=lambda: ctx.workflows, on_recorded=lambda: self.waits.refresh_soon())
        self.run_timer.watch(ctx.hubs, ctx.pool)
        self.waits = WaitBoard(ctx, self.estimator, self.run_timer, needs=self.dispatcher.needs,
                               attempts=lambda: self.runner.attempts.values())
        ctx.streams.decorate_with(self.waits.decorate)

    # ------------------------------------------------------------------ what it is built on

    @property
    def store(self) -> Storage:
        return self.ctx.store

    @property
    def pool(self) -> BackendPool:
        return self.ctx.pool

    @property
    def hubs(self) -> dict[str, ComfyHub]:
        return self.ctx.hubs

    @property
    def workflows(self) -> WorkflowRegistry:
        return self.ctx.workflows

    @property
    def support(self) -> WorkflowSupport:
        return self.ctx.support

    @property
    def queue(self) -> FairQueue:
        return self.ctx.queue

    @property
    def streams(self) -> ProgressStreams:
        return self.ctx.streams

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self.ctx.closing

    # ------------------------------------------------------------------ life cycle

    def connect(self, delivery: Delivery, *, result_check: ResultCheckAhead | None = None) -> None:
        """Hand results and endings to ``delivery`` (the Discord layer, built after the service
        because it needs the Discord client). Before :meth:`start`: recovery may deliver. An
        extension's clip is joined onto the result it extends before it is handed over
        (:class:`~bot.jobs.extend.JoiningDelivery`). ``result_check``: the check ``delivery``
        runs on every result (content safety), started on each result as soon as it is downloaded."""
        if self.ctx.started:
            raise RuntimeError("connect the delivery before starting the job service")
        self.ctx.delivery = JoiningDelivery(delivery, self.ctx.store.jobs)
        if result_check is not None:
            self.runner.collector.ahead = result_check

    def add_listener(self, listener: JobListener) -> None:
        """Be told about job events (see :data:`JobListener`), e.g. for the audit log."""
        if listener not in self.ctx.listeners:
            self.ctx.listeners.append(listener)

    async def start(self) -> None:
        """Check the servers, connect the hubs, recover stored jobs, start dispatching."""
        ctx = self.ctx
        await asyncio.to_thread(_make_dirs, ctx.inputs_dir, ctx.results_dir)
        await self.fleet.start(start_hubs=self._owns_hubs)
        await ctx.pool.check_all()
        await self.fleet.check_workflow_support()
        await recover(ctx, self.dispatcher, self.runner)
        ctx.tasks.run_loop("jobs-dispatch", self.dispatcher.run())
        ctx.tasks.run_loop("jobs-health", ctx.pool.run_health_checks(self._health_interval, ctx.clock))
        ctx.tasks.run_loop("jobs-sweep", sweep(ctx, self.dispatcher, self._sweep_interval))
        ctx.tasks.run_loop("jobs-waits", self.waits.run(self._wait_interval))
        ctx.started = True
        ctx.wake()
        log.info("Job service started with %d server(s) and %d workflow(s)", len(ctx.pool), len(ctx.workflows))

    async def close(self) -> None:
        """Stop following and dispatching; unfinished jobs stay stored and are recovered on the next start."""
        self.ctx.closing = True
        self.waits.close()
        await self.ctx.tasks.cancel_all()
        if self._owns_hubs:
            await asyncio.gather(*(hub.close() for hub in self.ctx.hubs.values()), return_exceptions=True)
        await self.ctx.store.close()

    # ------------------------------------------------------------------ workflows and servers

    def workflow_for(self, name: str | None, options: Mapping[str, Any] | None = None) -> Workflow:
        """The workflow a new job runs; see :meth:`bot.jobs.routing.WorkflowRouter.workflow_for`."""
        return self.ctx.router.workflow_for(name, options)

    def replace_workflows(self, registry: WorkflowRegistry) -> None:
        """Use newly loaded workflows and learn again which server can run which."""
        self.ctx.workflows = registry
        self.ctx.tasks.spawn(self.fleet.check_workflow_support())

    async def check_workflow_support(self, names: list[str] | None = None) -> None:
        """Ask the servers (all, or those named) which workflows they can run."""
        await self.fleet.check_workflow_support(names)

    def require_runnable(self, workflow: Workflow, options: Mapping[str, Any] | None = None) -> None:
        """Refuse (:class:`BackendUnavailable`) when no server answers, or a workflow, or a
        choice of its options, that no answering server can run."""
        self.intake.require_runnable(workflow, options)

    def member_option_names(self, workflow: str) -> list[str] | None:
        """The options a member may set for ``workflow`` (None: no such workflow)."""
        found = self.ctx.workflows.get(workflow)
        return [o.name for o in found.member_options] if found is not None else None

    def server_views(self) -> list[ServerView]:
        """Each server as ``/queue`` and ``/owner servers`` show it (by name, never a URL)."""
        return self.fleet.server_views()

    # ------------------------------------------------------------------ jobs in and out

    def check_can_accept(self, user_id: int, max_in_flight: Limit = DEFAULT) -> None:
        """Refuse now (before any work) when no server answers or a queue limit is reached."""
        self.intake.check_can_accept(user_id, max_in_flight)

    def reserve(self, user_id: int, max_in_flight: Limit = DEFAULT) -> Reservation:
        """:meth:`check_can_accept`, then hold the member's slot (counted by :meth:`in_flight`)
        until the job is submitted with it (``JobRequest.reservation``) or it is released."""
        return self.intake.reserve(user_id, max_in_flight)

    async def submit(self, request: JobRequest) -> Job:
        """Check, prepare and queue a new job. Raises :class:`UserFacingError` subclasses."""
        return await self.intake.submit(request)

    async def reroll(
        self,
        job_id: str,
        *,
        user_id: int,
        channel_id: int,
        guild_id: int | None,
        overrides: Mapping[str, Any] | None = None,
        new_seed: bool = True,
        interaction_token: str | None = None,
        application_id: int | None = None,
        interaction_created_at: float | None = None,
        status_message_id: int | None = None,
        max_in_flight: Limit = DEFAULT,
        extra: Mapping[str, Any] | None = None,
        reservation: Reservation | None = None,
    ) -> Job:
        """A new job from an earlier one's input and options (a new seed unless one is given)."""
        request = JobRequest(user_id=user_id, channel_id=channel_id, guild_id=guild_id, source_job_id=job_id,
                             interaction_token=interaction_token, application_id=application_id,
                             interaction_created_at=interaction_created_at, status_message_id=status_message_id,
                             max_in_flight=max_in_flight, reservation=reservation)
        return await self.intake.reroll(job_id, request, overrides=overrides, new_seed=new_seed, extra=extra)

    async def extend(
        self,
        job_id: str,
        *,
        user_id: int,
        channel_id: int,
        guild_id: int | None,
        limit: int,
        overrides: Mapping[str, Any] | None = None,
        interaction_token: str | None = None,
        application_id: int | None = None,
        interaction_created_at: float | None = None,
        status_message_id: int | None = None,
        max_in_flight: Limit = DEFAULT,
        extra: Mapping[str, Any] | None = None,
        reservation: Reservation | None = None,
    ) -> Job:
        """A new job from the last frame of an earlier one's original result (a new seed), joined
        onto that result before delivery; refused past ``limit`` extensions (:mod:`bot.jobs.extend`).
        ``overrides``: options to change (an older result's options lowered to today's caps)."""
        request = JobRequest(user_id=user_id, channel_id=channel_id, guild_id=guild_id, source_job_id=job_id,
                             interaction_token=interaction_token, application_id=application_id,
                             interaction_created_at=interaction_created_at, status_message_id=status_message_id,
                             max_in_flight=max_in_flight, extra=dict(extra or {}), reservation=reservation)
        return await self.intake.extend(job_id, request, limit=limit, overrides=overrides)

    async def cancel(self, job_id: str, *, by_user: int, moderator: bool = False) -> Job:
        """Cancel a job: dropped if waiting, deleted from ComfyUI's queue, or interrupted if running."""
        return await self.intake.cancel(job_id, by_user=by_user, moderator=moderator)

    async def clear_waiting(self, guild_id: int, *, by: int) -> list[Job]:
        """Cancel every job of ``guild_id`` still waiting in the bot's line (a moderator's clear)."""
        return await self.intake.clear_waiting(guild_id, by=by)

    async def set_status_message(self, job_id: str, message_id: int) -> None:
        """Remember the status message (the deferred response) of a job."""
        await self.ctx.store.jobs.update(job_id, status_message_id=message_id)

    async def mark_deleted(self, job_id: str, *, by: int | None = None) -> Job:
        """Remember that a job's result message was deleted (it stays out of /history links)."""
        job = await self.ctx.store.jobs.update(job_id, deleted=True)
        await self.ctx.emit(job, "deleted", by)
        return job

    async def apply_retention(self) -> int:
        """Remove inputs and results older than the retention period. Returns files removed."""
        return await apply_retention(self.ctx)

    # ------------------------------------------------------------------ reading

    async def get(self, job_id: str) -> Job | None:
        return await self.ctx.store.jobs.get(job_id)

    def stream(self, job_id: str) -> ProgressStream:
        """The progress stream of a job that has not ended. A job's stream is dropped once it
        ended (after its ``finished`` update, which consumers already following it still get);
        for an ended or unknown job this is a closed stream with no update, kept nowhere."""
        return self.intake.stream(job_id)

    def latest_progress(self, job_id: str) -> ProgressUpdate | None:
        """The last progress update of a job, without creating a stream for it."""
        return self.ctx.streams.latest(job_id)

    def position(self, job_id: str) -> int | None:
        return self.ctx.queue.position(job_id)

    def wait_estimate(self, job_id: str) -> WaitEstimate | None:
        """Jobs ahead and the estimated wait of a job in the line or in a server's queue (None
        once it runs or has ended); see :mod:`bot.jobs.waits`."""
        return self.waits.estimate(job_id)

    def _job_of_prompt(self, server: str, prompt_id: str) -> Job | None:
        for attempt in self.runner.attempts.values():
            if attempt.prompt_id == prompt_id and attempt.backend.name == server:
                return attempt.job
        return None

    def in_flight(self, user_id: int) -> int:
        """The member's jobs waiting or running now, and those admitted but still being prepared."""
        return self.ctx.queue.in_flight(user_id)

    def is_dispatched(self, job_id: str) -> bool:
        """Whether a task is running the job on a server right now."""
        return self.ctx.tasks.job_running(job_id)

    def waiting_order(self) -> list[tuple[str, int]]:
        return [(entry.job_id, int(entry.member)) for entry in self.ctx.queue.order()]  # type: ignore[call-overload]

    async def running_jobs(self) -> list[Job]:
        return await self.ctx.store.jobs.in_states([JobState.SUBMITTED, JobState.RUNNING, JobState.DELIVERING])

    async def recent_jobs(self, user_id: int, guild_id: int | None, limit: int = 10) -> list[Job]:
        return await self.ctx.store.jobs.for_user(user_id, guild_id, limit)

    async def guild_active_jobs(self, guild_id: int, limit: int = 50) -> list[Job]:
        """A guild's jobs still waiting or running (what a moderator may cancel)."""
        return await self.ctx.store.jobs.for_guild(guild_id, ACTIVE_STATES, limit=limit)

    def memory_counts(self) -> dict[str, int]:
        """The size of every in-memory record kept per job (or per prompt), by a stable name.

        Each is dropped when its job ends, so with no job waiting, being prepared or running every
        count is 0 (``hub_buffered_prompts``: events of prompts nobody followed, dropped after the
        hub's ``buffer_seconds``; ``abandoned_prompts``: prompts of a server that went away, dropped
        when it is back; ``run_timelines``: prompts being timed, dropped at their end or, for a
        prompt whose end never came, by the wait refresh). The delivery's and its edit scheduler's
        records are included when the delivery reports them (``per_job_counts()``). For diagnostics
        and soak benchmarks.
        """
        ctx = self.ctx
        counts = {
            "progress_streams": len(ctx.streams),
            "queue_waiting": len(ctx.queue),
            "queue_running": ctx.queue.running_count(),
            "queue_reservations": ctx.queue.reserved_count(),
            "job_tasks": ctx.tasks.job_count(),
            "job_attempts": len(self.runner.attempts),
            "helper_tasks": ctx.tasks.helper_count(),
            "published_positions": len(self.dispatcher.published),
            "waiting_needs": len(self.dispatcher.needs),
            "abandoned_prompts": self.fleet.abandoned_count(),
            "run_timelines": len(self.run_timer),
            "hub_subscriptions": 0,
            "hub_buffered_prompts": 0,
        }
        for hub in ctx.hubs.values():
            for name, value in hub.per_prompt_counts().items():
                counts[name] += value
        per_job = getattr(ctx.delivery, "per_job_counts", None)
        if callable(per_job):
            counts.update(per_job())
        return counts


def _make_dirs(*dirs: Path) -> None:
    for path in dirs:
        path.mkdir(parents=True, exist_ok=True)
