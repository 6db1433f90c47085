"""The job service: a fair queue over several ComfyUI servers that never loses a job.

A job is stored (SQLite) before anything is sent anywhere, then waits in the bot's own
round-robin queue (:class:`~bot.jobs.fairqueue.FairQueue`); the dispatcher hands it to the
least-loaded healthy server with room (:class:`~bot.jobs.backends.BackendPool`). Running it:
upload the prepared image, inject the workflow, store the bot-chosen prompt_id, subscribe on
that server's single websocket hub, ``POST /prompt`` once, follow it to its end (time limit
on an injectable clock), download the result and hand it to the :class:`Delivery` (the
Discord layer). Every job ends delivered, failed (with a reason members understand),
cancelled or timed out.

Recovery: on start every job not in a terminal state is reconciled with its server
(finished -> delivered from ``/history``; queued or running -> followed again; unknown ->
submitted again once, then failed); a job stopped while delivering is delivered again from
its stored result, never run again. A server that dies takes its jobs' prompts with it: they
go back to the head of the line for another server, once.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, cast

from bot.clock import Clock, SystemClock
from bot.comfy.client import ComfyClient
from bot.comfy.errors import ComfyError
from bot.comfy.events import (
    Event,
    Executing,
    ExecutionCached,
    ExecutionStart,
    PreviewImage,
    Progress,
    StatusEvent,
)
from bot.comfy.follow import Outcome, follow_prompt, reconcile
from bot.comfy.hub import ComfyHub, Subscription
from bot.errors import BackendUnavailable, InvalidInput, JobFailed, NotAllowed, UserFacingError
from bot.jobs.backends import Backend, BackendPool, ServerView, WorkflowProblems
from bot.jobs.fairqueue import FairQueue, QueueWording
from bot.jobs.models import ACTIVE_STATES, InvalidTransition, Job, JobState, new_prompt_id
from bot.jobs.pipeline import (
    build_graph,
    download_result,
    failure_message,
    post_prompt,
    result_file,
    upload_input,
)
from bot.jobs.progress import EtaEstimator, ProgressStream, ProgressStreams, ProgressUpdate
from bot.jobs.routing import Needs, WorkflowRouter
from bot.logs import log_failure
from bot.media.images import content_upload_name, prepare_image_async
from bot.moderation import messages
from bot.safety.gate import SAFETY_KEY, InputCheck, InputSubject  # safety hook (issue 16)
from bot.storage import Storage, remove_files
from bot.workflows import Workflow, WorkflowRegistry, resolve_options
from bot.workflows.support import WorkflowSupport

log = logging.getLogger(__name__)

DEFAULT_LIMIT = -1  # JobRequest.max_in_flight: use the service's default
MAX_SUBMISSIONS = 2  # a job is posted at most twice (once more after its server lost it)
DELIVERY_ATTEMPTS_KEY = "delivery_attempts"  # in Job.result_meta
GENERIC_FAILURE = "Something went wrong on our side. The job was stopped; please try again."
#: The bot's own words for the line's refusals (every limit message is in bot.moderation.messages).
QUEUE_WORDING = QueueWording(queue_full=messages.queue_full(), in_flight=messages.jobs_in_flight)


@dataclass(frozen=True)
class JobRequest:
    """What a member asked for. ``image`` is raw bytes; the service prepares it in a thread."""

    user_id: int
    channel_id: int
    guild_id: int | None
    image: bytes | None = field(default=None, repr=False)
    source_job_id: str | None = None
    workflow: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    interaction_token: str | None = field(default=None, repr=False)
    application_id: int | None = None
    interaction_created_at: float | None = None
    status_message_id: int | None = None
    max_in_flight: int | None = DEFAULT_LIMIT
    extra: Mapping[str, Any] = field(default_factory=dict)  # kept with the job (e.g. the upload limit)


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


@dataclass
class _Control:
    """A job being run on a server: what can stop its follower early."""

    backend: Backend
    abort: asyncio.Future[str]
    prompt_id: str | None = None
    released: bool = False
    started: bool = False


class _Requeue(Exception):
    """The job's server went away before the job ended: put it back in line."""


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
    ) -> None:
        self.store = store
        self.pool = pool
        self.hubs = dict(hubs)
        self.workflows = workflows
        self.support = WorkflowSupport()
        self.router = WorkflowRouter(pool, self.support, lambda: self.workflows)
        self.limits = limits or ServiceLimits()
        self.clock: Clock = clock or SystemClock()
        self.delivery: Delivery | None = None  # see connect()
        self.inputs_dir = data_dir / "inputs"
        self.results_dir = data_dir / "results"
        self.queue = FairQueue(wording=QUEUE_WORDING, max_waiting=self.limits.max_waiting,
                               max_in_flight=self.limits.max_in_flight)
        self.streams = ProgressStreams()
        self._rng = rng
        self._health_interval = health_interval
        self._sweep_interval = sweep_interval
        self._owns_hubs = owns_hubs
        self.input_check = input_check  # safety hook (issue 16): judges every input before it is stored or sent
        self._controls: dict[str, _Control] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: list[asyncio.Task[None]] = []
        self._helpers: set[asyncio.Future[None]] = set()
        self._cancel_requested: dict[str, int] = {}  # job id -> who asked
        self._timed_out: set[str] = set()
        self._published_positions: dict[str, int] = {}
        self._needs: dict[str, Needs] = {}  # waiting job -> what a server must run for it
        self._abandoned: dict[str, set[str]] = {}  # server -> prompt ids to remove when it is back
        self._listeners: list[JobListener] = []
        self._wake = asyncio.Event()
        self._started = False
        self._closing = False

    # ------------------------------------------------------------------ life cycle

    def connect(self, delivery: Delivery) -> None:
        """Hand results and endings to ``delivery`` (the Discord layer, built after the service
        because it needs the Discord client). Before :meth:`start`: recovery may deliver."""
        if self._started:
            raise RuntimeError("connect the delivery before starting the job service")
        self.delivery = delivery

    async def start(self) -> None:
        """Check the servers, connect the hubs, recover stored jobs, start dispatching."""
        await asyncio.to_thread(self._make_dirs)
        for name, hub in self.hubs.items():
            hub.on_status(self._status_listener(name))
            hub.on_reconnect(self._reconnect_listener(name))
            if self._owns_hubs:
                await hub.start()
        self.pool.add_listener(self._on_health)
        await self.pool.check_all()
        await self.check_workflow_support()
        await self._recover()
        self._background = [
            asyncio.create_task(self._dispatch_loop(), name="jobs-dispatch"),
            asyncio.create_task(self.pool.run_health_checks(self._health_interval, self.clock), name="jobs-health"),
            asyncio.create_task(self._sweep_loop(), name="jobs-sweep"),
        ]
        self._started = True
        self._wake.set()
        log.info("Job service started with %d server(s) and %d workflow(s)", len(self.pool), len(self.workflows))

    async def close(self) -> None:
        """Stop following and dispatching; unfinished jobs stay stored and are recovered on the next start."""
        self._closing = True
        tasks = [*self._background, *self._tasks.values(), *self._helpers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._background.clear()
        self._tasks.clear()
        if self._owns_hubs:
            await asyncio.gather(*(hub.close() for hub in self.hubs.values()), return_exceptions=True)
        await self.store.close()

    def _make_dirs(self) -> None:
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        self.results_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ workflows

    def workflow_for(self, name: str | None, options: Mapping[str, Any] | None = None) -> Workflow:
        """The workflow a new job runs; see :meth:`bot.jobs.routing.WorkflowRouter.workflow_for`."""
        return self.router.workflow_for(name, options)

    def replace_workflows(self, registry: WorkflowRegistry) -> None:
        """Use newly loaded workflows and learn again which server can run which."""
        self.workflows = registry
        self._spawn(self.check_workflow_support())

    async def check_workflow_support(self, names: list[str] | None = None) -> None:
        """Ask the servers (all, or those named) which workflows they can run; see
        :mod:`bot.workflows.support`. A server that does not answer stays as it was."""
        workflows = list(self.workflows)
        if not workflows:
            return
        backends = [b for b in self.pool if names is None or b.name in names]
        await asyncio.gather(*(self.support.check(b.name, _comfy(b), workflows) for b in backends if b.healthy))
        checked = [b.name for b in self.pool if self.support.known(b.name)]
        if checked and not any(self.support.can_run(s, w.name) for s in checked for w in workflows):
            log.error("No checked server can run any workflow (%s): /animate refuses every job until one can; "
                      "see the warnings above or run python -m bot doctor", ", ".join(checked))
        self._wake.set()

    def require_runnable(self, workflow: Workflow, options: Mapping[str, Any] | None = None) -> None:
        """Refuse (:class:`BackendUnavailable`) when no server answers, or a workflow, or a
        choice of its options, that no answering server can run."""
        self._require_a_server()
        self.router.require_runnable(workflow, options)

    # ------------------------------------------------------------------ public API

    async def submit(self, request: JobRequest) -> Job:
        """Check, prepare and queue a new job. Raises :class:`UserFacingError` subclasses."""
        workflow = self.workflow_for(request.workflow, request.options)
        self.require_runnable(workflow, request.options)
        limit = self.limits.max_in_flight if request.max_in_flight == DEFAULT_LIMIT else request.max_in_flight
        self._check_limits(request.user_id, limit)
        resolved = resolve_options(workflow, request.options, self._rng)
        if request.image is not None:
            prepared = await prepare_image_async(
                request.image, fit=str(resolved.get("fit", "crop")), max_pixels=self.limits.max_input_pixels
            )
            png = prepared.png
        else:
            raise InvalidInput("Attach an image to animate.")
        # --- safety hook (issue 16): the prepared input is judged before the job is stored or uploaded
        safety = None if self.input_check is None else await self.input_check.check_input(InputSubject(
            request.user_id, request.guild_id, request.channel_id, png, request.extra))
        job = Job.new(
            user_id=request.user_id,
            channel_id=request.channel_id,
            guild_id=request.guild_id,
            workflow=workflow.name,
            created_at=self.clock.now(),
            options=resolved.as_dict(),
            interaction_token=request.interaction_token,
            application_id=request.application_id,
            interaction_created_at=request.interaction_created_at,
            status_message_id=request.status_message_id,
            result_meta={"request": dict(request.extra)} if request.extra else {},
        )
        if safety is not None:  # safety hook (issue 16): kept for re-rolls and the result check
            job.result_meta[SAFETY_KEY] = safety
        path = self.inputs_dir / f"{job.id}.png"
        await asyncio.to_thread(_write_bytes, path, png)
        job.input_path = str(path)
        return await self._enqueue(job, limit)

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
        max_in_flight: int | None = DEFAULT_LIMIT,
        extra: Mapping[str, Any] | None = None,
    ) -> Job:
        """A new job from an earlier one's input and options (a new seed unless one is given)."""
        parent = await self.store.jobs.get(job_id)
        if parent is None:
            raise InvalidInput("That job is no longer known.")
        if not parent.input_path or not await asyncio.to_thread(Path(parent.input_path).exists):
            raise InvalidInput("The original image of that job is no longer kept; start a new /animate.")
        workflow = self.workflows.get(parent.workflow)
        if workflow is None:
            raise InvalidInput("The workflow of that job is no longer available; start a new /animate.")
        member_names = {o.name for o in workflow.member_options}
        options = {k: v for k, v in parent.options.items() if k in member_names}
        if new_seed:
            options.pop("seed", None)
        options.update({k: v for k, v in (overrides or {}).items() if v is not None})
        resolved = resolve_options(workflow, options, self._rng)
        self.require_runnable(workflow, resolved.as_dict())
        limit = self.limits.max_in_flight if max_in_flight == DEFAULT_LIMIT else max_in_flight
        self._check_limits(user_id, limit)
        meta = dict(extra) if extra is not None else dict(parent.result_meta.get("request", {}))
        # --- safety hook (issue 16): the stored input scores are judged again (mode and channel of now)
        safety = None if self.input_check is None else await self.input_check.check_input(InputSubject(
            user_id, guild_id, channel_id, Path(parent.input_path), meta, parent.result_meta.get(SAFETY_KEY)))
        job = Job.new(
            user_id=user_id,
            channel_id=channel_id,
            guild_id=guild_id,
            workflow=workflow.name,
            created_at=self.clock.now(),
            options=resolved.as_dict(),
            input_path=parent.input_path,
            parent_job_id=parent.id,
            interaction_token=interaction_token,
            application_id=application_id,
            interaction_created_at=interaction_created_at,
            status_message_id=status_message_id,
            result_meta={"request": meta} if meta else {},
        )
        if safety is not None:  # safety hook (issue 16)
            job.result_meta[SAFETY_KEY] = safety
        return await self._enqueue(job, limit)

    async def set_status_message(self, job_id: str, message_id: int) -> None:
        """Remember the status message (the deferred response) of a job."""
        await self.store.jobs.update(job_id, status_message_id=message_id)

    async def cancel(self, job_id: str, *, by_user: int, moderator: bool = False) -> Job:
        """Cancel a job: dropped if waiting, deleted from ComfyUI's queue, or interrupted if running."""
        job = await self.store.jobs.get(job_id)
        if job is None:
            raise InvalidInput("That job is no longer known.")
        if job.user_id != by_user and not moderator:
            raise NotAllowed("Only the member who started this job, or a moderator, can cancel it.")
        if job.is_terminal:
            raise InvalidInput(f"That job has already ended ({_state_words(job.state)}).")
        if job.state is JobState.DELIVERING:
            raise InvalidInput("That job is already done; its video is being posted.")
        self._cancel_requested[job_id] = by_user
        stream = self.stream(job_id)
        if self.queue.remove(job_id):
            await self._finish(job_id, JobState.CANCELLED, _cancel_reason(job.user_id, by_user))
            self._wake.set()
            return await self._reload(job_id)
        control = self._controls.get(job_id)
        if control is not None and control.prompt_id:
            await self._stop_on_server(control.backend, control.prompt_id)
            if not await self._server_knows(control.backend, control.prompt_id, running_only=False):
                _resolve(control.abort, "cancelled")  # deleted while pending: no event will come
        elif control is not None:
            _resolve(control.abort, "cancelled")  # not posted yet
        await self._wait_terminal(stream, timeout=15.0)
        job = await self._reload(job_id)
        if job.is_terminal:  # it may have ended another way just before the request was noted
            self._cancel_requested.pop(job_id, None)
        return job

    async def get(self, job_id: str) -> Job | None:
        return await self.store.jobs.get(job_id)

    def stream(self, job_id: str) -> ProgressStream:
        """The progress stream of a job that has not ended. A job's stream is dropped once it
        ended (after its ``finished`` update, which consumers already following it still get);
        for an ended or unknown job this is a closed stream with no update, kept nowhere."""
        if job_id in self.streams or self.queue.member_of(job_id) is not None:
            return self.streams.get(job_id)
        ended = ProgressStream(job_id)
        ended.close()
        return ended

    def latest_progress(self, job_id: str) -> ProgressUpdate | None:
        """The last progress update of a job, without creating a stream for it."""
        return self.streams.latest(job_id)

    def memory_counts(self) -> dict[str, int]:
        """The size of every in-memory record kept per job (or per prompt), by a stable name.

        Each is dropped when its job ends, so with no job waiting or running every count is 0
        (``hub_buffered_prompts``: events of prompts nobody followed, dropped after the hub's
        ``buffer_seconds``; ``abandoned_prompts``: prompts of a server that went away, dropped
        when it is back). The delivery's and its edit scheduler's records are included when the
        delivery reports them (``per_job_counts()``). For diagnostics and soak benchmarks.
        """
        counts = {
            "progress_streams": len(self.streams),
            "queue_waiting": len(self.queue),
            "queue_running": self.queue.running_count(),
            "job_tasks": len(self._tasks),
            "job_controls": len(self._controls),
            "helper_tasks": len(self._helpers),
            "cancel_requests": len(self._cancel_requested),
            "timed_out_flags": len(self._timed_out),
            "published_positions": len(self._published_positions),
            "waiting_needs": len(self._needs),
            "abandoned_prompts": sum(len(ids) for ids in self._abandoned.values()),
            "hub_subscriptions": 0,
            "hub_buffered_prompts": 0,
        }
        for hub in self.hubs.values():
            for name, value in hub.per_prompt_counts().items():
                counts[name] += value
        per_job = getattr(self.delivery, "per_job_counts", None)
        if callable(per_job):
            counts.update(per_job())
        return counts

    def check_can_accept(self, user_id: int, max_in_flight: int | None = DEFAULT_LIMIT) -> None:
        """Refuse now (before any work) when no server answers or a queue limit is reached."""
        self._require_a_server()
        self._check_limits(user_id, self.limits.max_in_flight if max_in_flight == DEFAULT_LIMIT else max_in_flight)

    async def mark_deleted(self, job_id: str, *, by: int | None = None) -> Job:
        """Remember that a job's result message was deleted (it stays out of /history links)."""
        job = await self.store.jobs.update(job_id, deleted=True)
        await self._emit(job, "deleted", by)
        return job

    async def clear_waiting(self, guild_id: int, *, by: int) -> list[Job]:
        """Cancel every job of ``guild_id`` still waiting in the bot's line (a moderator's clear)."""
        cleared: list[Job] = []
        for job_id, _member in self.waiting_order():
            job = await self.store.jobs.get(job_id)
            if job is None or job.guild_id != guild_id or job.state is not JobState.WAITING:
                continue
            if not self.queue.remove(job_id):
                continue
            self._cancel_requested[job_id] = by
            await self._finish(job_id, JobState.CANCELLED, _cancel_reason(job.user_id, by))
            cleared.append(await self._reload(job_id))
        if cleared:
            self._publish_positions()
            self._wake.set()
        return cleared

    def add_listener(self, listener: JobListener) -> None:
        """Be told about job events (see :data:`JobListener`), e.g. for the audit log."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    async def _emit(self, job: Job, event: str, actor: int | None = None) -> None:
        if self._closing:
            return  # shutting down: the store may be closed; recovery reports what happens next
        for listener in list(self._listeners):
            try:
                await listener(job, event, actor)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log_failure(logging.WARNING, "job %s: a %s listener failed", job.id, event)

    def position(self, job_id: str) -> int | None:
        return self.queue.position(job_id)

    def in_flight(self, user_id: int) -> int:
        """The member's jobs waiting or running now."""
        return self.queue.in_flight(user_id)

    def member_option_names(self, workflow: str) -> list[str] | None:
        """The options a member may set for ``workflow`` (None: no such workflow)."""
        found = self.workflows.get(workflow)
        return [o.name for o in found.member_options] if found is not None else None

    def server_views(self) -> list[ServerView]:
        """Each server as ``/queue`` and ``/owner servers`` show it (by name, never a URL)."""
        now = self.clock.now()
        views = []
        for backend in self.pool:
            status = backend.status()
            hub = self.hubs.get(status.name)
            problems = tuple(
                WorkflowProblems(w.name, self.support.problems(status.name, w.name),
                                 self.support.partial_problems(status.name, w.name))
                for w in self.workflows
            )
            views.append(ServerView(
                status=status,
                seen_ago=None if status.last_seen is None else now - status.last_seen,
                websocket_connected=hub is not None and hub.connected,
                last_error=backend.last_error,
                workflow_problems=tuple(p for p in problems if p.blocking or p.partial),
            ))
        return views

    def is_dispatched(self, job_id: str) -> bool:
        """Whether a task is running the job on a server right now."""
        return job_id in self._tasks

    def waiting_order(self) -> list[tuple[str, int]]:
        return [(entry.job_id, int(entry.member)) for entry in self.queue.order()]  # type: ignore[call-overload]

    async def running_jobs(self) -> list[Job]:
        return await self.store.jobs.in_states([JobState.SUBMITTED, JobState.RUNNING, JobState.DELIVERING])

    async def recent_jobs(self, user_id: int, guild_id: int | None, limit: int = 10) -> list[Job]:
        return await self.store.jobs.for_user(user_id, guild_id, limit)

    async def guild_active_jobs(self, guild_id: int, limit: int = 50) -> list[Job]:
        """A guild's jobs still waiting or running (what a moderator may cancel)."""
        return await self.store.jobs.for_guild(guild_id, ACTIVE_STATES, limit=limit)

    # ------------------------------------------------------------------ queueing and dispatch

    def _require_a_server(self) -> None:
        """Refuse at once when no server answers (rather than letting the job wait for nothing)."""
        for backend in self.pool:
            hub = self.hubs.get(backend.name)
            if backend.healthy and (backend.consecutive_failures == 0 or (hub is not None and hub.connected)):
                return
        raise BackendUnavailable("The image servers are offline right now. Please try again in a few minutes.")

    def _check_limits(self, user_id: int, limit: int | None) -> None:
        self.queue.check_room(user_id, max_in_flight=limit)

    async def _enqueue(self, job: Job, limit: int | None) -> Job:
        if self._closing:
            raise BackendUnavailable("The bot is restarting. Please try again in a minute.")
        self._check_limits(job.user_id, limit)
        await self.store.jobs.add(job)
        self.queue.push(job.id, job.user_id, max_in_flight=limit, enforce_limits=False)
        self._needs[job.id] = Needs(job.workflow, job.options)
        log.info("job %s queued for user %s (workflow %s)", job.id, job.user_id, job.workflow)
        self._publish_positions()
        self._wake.set()
        await self._emit(job, "queued", job.user_id)
        return job

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand waiting jobs to servers: members in turn, each job to a server that can run its
        workflow. A member whose next job no free server can run waits without holding up others."""
        while len(self.queue) and not self._closing and self.pool.choose() is not None:
            for entry in self.queue.heads():
                needs = self._needs.get(entry.job_id)
                backend = self.pool.choose(accept=self.router.accepts(needs))
                if backend is not None:
                    self.queue.take(entry.job_id)
                    self._needs.pop(entry.job_id, None)
                    self.pool.reserve(backend)
                    self._start_task(entry.job_id, self._run_new(entry.job_id, backend))
                    break
                if needs is not None and not self.router.runnable_anywhere(needs):
                    self.queue.remove(entry.job_id)
                    self._needs.pop(entry.job_id, None)
                    self._spawn(self._finish(entry.job_id, JobState.FAILED, self.router.unrunnable_reason(needs),
                                             f"no server can run workflow {needs.workflow} with these options"))
                    break
            else:
                break  # no waiting job fits a free server
        self._publish_positions()

    def _start_task(self, job_id: str, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks[job_id] = task

        def done(t: asyncio.Task[None], job_id: str = job_id) -> None:
            if self._tasks.get(job_id) is t:
                del self._tasks[job_id]
            self._wake.set()

        task.add_done_callback(done)

    def _publish_positions(self) -> None:
        positions = self.queue.positions()
        for job_id, position in positions.items():
            if self._published_positions.get(job_id) != position:
                self._published_positions[job_id] = position
                self.streams.publish(
                    ProgressUpdate(job_id=job_id, phase="waiting", position=position, message=_position_words(position))
                )
        for job_id in set(self._published_positions) - set(positions):
            del self._published_positions[job_id]

    def _status_listener(self, name: str) -> Callable[[StatusEvent], Awaitable[None]]:
        async def on_status(event: StatusEvent) -> None:
            if event.queue_remaining is not None:
                self.pool.update_queue_remaining(name, event.queue_remaining)

        return on_status

    def _reconnect_listener(self, name: str) -> Callable[[], Awaitable[None]]:
        async def on_reconnect() -> None:
            # the server may have restarted with other node packs or models
            if self._started and not self._closing:
                self._spawn(self.check_workflow_support([name]))

        return on_reconnect

    def _on_health(self, backend: Backend, healthy: bool) -> None:
        if healthy:
            abandoned = self._abandoned.pop(backend.name, set())
            if abandoned:
                self._spawn(self._remove_abandoned(backend, abandoned))
            if self._started and not self._closing:
                self._spawn(self.check_workflow_support([backend.name]))
            self._wake.set()
            return
        self._spawn(self._evacuate(backend))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    async def _evacuate(self, backend: Backend, *, grace: float = 20.0) -> None:
        """A server stopped answering: once its websocket is down too, its jobs go elsewhere.

        While the websocket stays up the server is alive (only slow to answer HTTP), so its
        jobs keep being followed: moving them would run them twice.
        """
        hub = self.hubs.get(backend.name)
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while hub is not None and hub.connected:
            if backend.healthy or loop.time() > end:
                return
            await asyncio.sleep(0.25)
        if backend.healthy:
            return
        for control in list(self._controls.values()):
            if control.backend is backend:
                _resolve(control.abort, "server_down")

    async def _remove_abandoned(self, backend: Backend, prompt_ids: set[str]) -> None:
        """A server that was given up on is back: make sure it does not run those prompts too."""
        for prompt_id in prompt_ids:
            await self._stop_on_server(backend, prompt_id)

    # ------------------------------------------------------------------ running one job

    async def _run_new(self, job_id: str, backend: Backend) -> None:
        control = _Control(backend=backend, abort=asyncio.get_running_loop().create_future())
        self._controls[job_id] = control
        try:
            job = await self.store.jobs.get(job_id)
            if job is None or job.is_terminal:
                return
            await self._guarded(job, control, self._submit_and_follow(job, control))
        finally:
            self._release(control)
            self._controls.pop(job_id, None)

    async def _guarded(self, job: Job, control: _Control, work: Awaitable[None]) -> None:
        """Run ``work`` and turn whatever it raises into a visible ending for the job."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except _Requeue as exc:
            await self._requeue(job.id, control, str(exc))
        except UserFacingError as exc:
            log.info("job %s failed: %s (%s)", job.id, exc.user_message, exc.detail)
            await self._finish(job.id, JobState.FAILED, exc.user_message, exc.detail)
        except ComfyError as exc:
            log.warning("job %s: server %s failed: %s", job.id, exc.server, exc)
            await self._finish(
                job.id, JobState.FAILED, "The image server stopped answering while running your job.", str(exc)
            )
        except Exception as exc:
            _log_failure(logging.ERROR, "job %s failed unexpectedly", job.id)
            await self._finish(job.id, JobState.FAILED, GENERIC_FAILURE, f"{type(exc).__name__}: {exc}")

    async def _submit_and_follow(self, job: Job, control: _Control) -> None:
        workflow = self.workflows.get(job.workflow)
        if workflow is None:
            raise JobFailed("This job's workflow was removed by an admin.", detail=f"workflow {job.workflow} gone")
        backend = control.backend
        hub = self.hubs[backend.name]
        while True:
            if job.id in self._cancel_requested:
                await self._finish(job.id, JobState.CANCELLED, _cancel_reason(job.user_id, self._cancel_requested[job.id]))
                return
            if job.submit_attempts >= MAX_SUBMISSIONS:
                raise JobFailed(
                    "The image server restarted and lost this job twice. Please try again.",
                    detail=f"lost {job.submit_attempts} times on {backend.name}",
                )
            job, sub = await self._post(job, control, hub, workflow)
            outcome = await self._follow(job, control, hub, workflow, sub=sub)
            if outcome.status != "lost":
                break
            log.warning("job %s: prompt %s lost by server %s; submitting again", job.id, job.prompt_id, backend.name)
        await self._conclude(job, control, outcome)

    async def _post(self, job: Job, control: _Control, hub: ComfyHub, workflow: Any) -> tuple[Job, Subscription]:
        """Upload, inject and post once; returns the job and the subscription opened before the POST
        (handed to the follower, so an event that comes before the POST's answer is kept)."""
        client = hub.client
        try:
            png, upload_name = await asyncio.to_thread(_read_input, Path(job.input_path or ""))
        except OSError as exc:
            raise JobFailed("This job's image is no longer kept.", detail=str(exc)) from exc
        width, height = _png_size(png)
        try:
            image_name = await upload_input(client, png, upload_name)
        except ComfyError as exc:
            self.pool.mark_down(control.backend, f"upload failed: {type(exc).__name__}")
            raise _Requeue(f"upload failed: {exc}") from exc
        graph = build_graph(workflow, job.options, image_name=image_name, width=width, height=height, job_id=job.id)
        prompt_id = new_prompt_id()
        job = await self.store.jobs.update(
            job.id,
            state=JobState.SUBMITTED,
            server=control.backend.name,
            prompt_id=prompt_id,
            client_id=hub.client_id,
            uploaded_name=image_name,
            submit_attempts=job.submit_attempts + 1,
            submitted_at=self.clock.now(),
        )
        control.prompt_id = prompt_id
        sub = hub.subscribe(prompt_id)  # before posting, so no event is missed
        try:
            await post_prompt(hub, graph, prompt_id=prompt_id, extra_data={"animate_job": job.id})
        except UserFacingError:
            sub.close()
            raise
        except ComfyError as exc:
            # The POST may or may not have reached the queue: ask before doing anything else.
            if await self._server_knows(control.backend, prompt_id, running_only=False):
                log.info("job %s: POST /prompt failed (%s) but the server has it", job.id, type(exc).__name__)
            else:
                sub.close()
                self.pool.mark_down(control.backend, f"POST /prompt failed: {type(exc).__name__}")
                raise _Requeue(f"POST /prompt failed: {exc}") from exc
        log.info("job %s posted to %s as prompt %s", job.id, control.backend.name, prompt_id)
        # in the server's queue until its first execution event, which the follower reads next
        self.streams.publish(ProgressUpdate(job_id=job.id, phase="queued", message="In the image server's queue"))
        return job, sub

    async def _follow(
        self,
        job: Job,
        control: _Control,
        hub: ComfyHub,
        workflow: Any,
        *,
        sub: Subscription | None = None,
        reconcile_first: bool = False,
    ) -> Outcome:
        """Follow the job's prompt to its end. ``reconcile_first``: ask the server before waiting
        for events (after a restart the prompt may have ended while nobody listened)."""
        assert job.prompt_id is not None
        prompt_id = job.prompt_id
        eta = EtaEstimator()
        started_at = job.started_at

        async def on_event(event: Event) -> None:
            nonlocal started_at
            if isinstance(event, (ExecutionStart, ExecutionCached, Executing)) and not control.started:
                control.started = True
                started_at = started_at or self.clock.now()
                await self._set_state(job.id, JobState.RUNNING, started_at=started_at)
                self.streams.publish(ProgressUpdate(job_id=job.id, phase="starting", elapsed=0.0, message="Starting"))
            elapsed = None if started_at is None else max(0.0, self.clock.now() - started_at)
            if isinstance(event, Progress):
                if event.node == workflow.progress_node_id:
                    eta.observe(event.value, event.max, self.clock.monotonic())
                    self.streams.publish(
                        ProgressUpdate(
                            job_id=job.id,
                            phase="running",
                            step=event.value,
                            steps=event.max,
                            node=event.node,
                            percent=100.0 * event.value / event.max if event.max else None,
                            elapsed=elapsed,
                            eta=eta.eta(self.clock.monotonic()),
                            message=workflow.describe_progress(event.node, event.value, event.max),
                        )
                    )
                else:
                    self.streams.publish(
                        ProgressUpdate(
                            job_id=job.id,
                            phase="encoding",
                            node=event.node,
                            percent=100.0 * event.value / event.max if event.max else None,
                            elapsed=elapsed,
                            message="encoding",
                        )
                    )
            elif isinstance(event, PreviewImage):
                latest = self.streams.latest(job.id)
                if latest is not None and latest.phase == "running":
                    self.streams.publish(_with_preview(latest, event.image))
            elif isinstance(event, Executing) and event.node is not None and (
                event.node == workflow.output_node_id or _past_sampling(self.streams.latest(job.id), event.node)
            ):  # the video node, or any node after the last sampling step (decoding frames counts too)
                self.streams.publish(
                    ProgressUpdate(job_id=job.id, phase="encoding", node=event.node, elapsed=elapsed, message="encoding")
                )

        sub = sub or hub.subscribe(prompt_id)
        if reconcile_first:
            try:
                known = await reconcile(hub.client, prompt_id)
            except ComfyError as exc:
                known = None  # the server is away: its websocket's reconnect will reconcile
                log.info("job %s: server %s not reachable on recovery (%s)", job.id, control.backend.name, type(exc).__name__)
            if known is not None:
                sub.close()
                return known
        follower = asyncio.ensure_future(follow_prompt(hub.client, sub, on_event=on_event))
        deadline = (job.submitted_at or self.clock.now()) + self.limits.job_timeout
        watchdog = asyncio.ensure_future(self._watchdog(job.id, control, prompt_id, deadline))
        try:
            waiting: set[asyncio.Future[Any]] = {follower, watchdog, control.abort}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if follower in done:
                return follower.result()
            reason = control.abort.result() if control.abort.done() else "timeout"
            if reason == "server_down":
                raise _Requeue("the server went down")
            if reason == "cancelled":  # cancelled while posting: make sure the prompt does not run
                await self._stop_on_server(control.backend, prompt_id)
            return Outcome(prompt_id, "interrupted", None)  # cancelled, or timed out unconfirmed
        finally:
            for task in (follower, watchdog):
                task.cancel()
            await asyncio.gather(follower, watchdog, return_exceptions=True)
            sub.close()

    async def _watchdog(self, job_id: str, control: _Control, prompt_id: str, deadline: float) -> None:
        """Past the time limit: stop the prompt on the server, then give it a moment to confirm."""
        remaining = deadline - self.clock.now()
        if remaining > 0:
            await self.clock.sleep(remaining)
        log.warning("job %s reached its time limit; stopping prompt %s", job_id, prompt_id)
        self._timed_out.add(job_id)
        await self._stop_on_server(control.backend, prompt_id)
        await self.clock.sleep(30.0)

    async def _conclude(self, job: Job, control: _Control, outcome: Outcome) -> None:
        self._release(control)
        if outcome.status == "success":
            workflow = self.workflows.get(job.workflow)
            assert workflow is not None
            found = result_file(outcome, workflow)
            path = await download_result(_comfy(control.backend), found, self.results_dir, job.id)
            size = await asyncio.to_thread(lambda: path.stat().st_size)
            meta = dict(job.result_meta)
            meta.update({"format": found.format, "size": size, "filename": found.filename})
            job = await self._set_state(job.id, JobState.DELIVERING, result_path=str(path), result_meta=meta)
            await self._deliver(job)
            return
        if outcome.status == "error":
            await self._finish(job.id, JobState.FAILED, failure_message(outcome), outcome.message)
            return
        # interrupted
        if job.id in self._cancel_requested:
            await self._finish(job.id, JobState.CANCELLED, _cancel_reason(job.user_id, self._cancel_requested[job.id]))
        elif job.id in self._timed_out:
            minutes = max(1, round(self.limits.job_timeout / 60))
            await self._finish(
                job.id,
                JobState.TIMED_OUT,
                f"The job took longer than the {minutes}-minute limit and was stopped.",
                outcome.message,
            )
        else:
            await self._finish(
                job.id, JobState.FAILED, "The job was stopped on the image server by an operator.", outcome.message
            )

    async def _deliver(self, job: Job) -> None:
        """Hand the stored result to the delivery; retried with backoff. Never runs the job again."""
        self.streams.publish(ProgressUpdate(job_id=job.id, phase="delivering", message="Posting the video"))
        if self.delivery is None:
            log.warning("job %s is ready but no delivery is set; it will be delivered on the next start", job.id)
            return
        delay = 1.0
        for attempt in range(1, self.limits.delivery_attempts + 1):
            # Counted before each try and kept across restarts: a delivery that is not the first
            # must look for a result it may already have posted before posting again.
            meta = dict(job.result_meta)
            tries = meta[DELIVERY_ATTEMPTS_KEY] = int(meta.get(DELIVERY_ATTEMPTS_KEY, 0)) + 1
            job = await self.store.jobs.update(job.id, result_meta=meta)
            try:
                message_id = await self.delivery.deliver(job, Path(job.result_path or ""), attempt=tries)
            except asyncio.CancelledError:
                raise
            except UserFacingError as exc:
                await self._finish(job.id, JobState.FAILED, exc.user_message, exc.detail)
                return
            except Exception:
                _log_failure(logging.WARNING, "job %s: delivery attempt %d failed", job.id, attempt)
                await self.clock.sleep(delay)
                delay = min(delay * 4, 120.0)
                continue
            await self._finish(job.id, JobState.DELIVERED, None, None, delivered_message_id=message_id)
            await self._forget_on_server(job)
            return
        await self._finish(
            job.id, JobState.FAILED, "The video was made but could not be posted here. Please try again.", "delivery failed"
        )

    async def _forget_on_server(self, job: Job) -> None:
        """Delete a delivered job's history entry on ComfyUI (best effort)."""
        if not job.server or not job.prompt_id:
            return
        try:
            backend = self.pool.get(job.server)
            await _comfy(backend).delete_history([job.prompt_id])
        except (KeyError, ComfyError) as exc:
            log.debug("job %s: could not delete its history entry: %s", job.id, exc)

    async def _requeue(self, job_id: str, control: _Control, reason: str) -> None:
        """The server went away: back to the head of the line once; a second time it fails."""
        job = await self.store.jobs.get(job_id)
        if job is None or job.is_terminal:
            return
        if control.prompt_id:
            self._abandoned.setdefault(control.backend.name, set()).add(control.prompt_id)
        if job.id in self._cancel_requested:
            await self._finish(job.id, JobState.CANCELLED, _cancel_reason(job.user_id, self._cancel_requested[job.id]))
            return
        if job.submit_attempts >= MAX_SUBMISSIONS or job.result_meta.get("moved"):
            await self._finish(
                job.id,
                JobState.FAILED,
                "The image servers kept going away while running this job. Please try again later.",
                reason,
            )
            return
        meta = dict(job.result_meta)
        meta["moved"] = True
        await self._set_state(job.id, JobState.WAITING, server=None, prompt_id=None, result_meta=meta)
        log.warning("job %s goes back to the queue: %s", job.id, reason)
        self.queue.mark_done(job.id)
        self.queue.push_front(job.id, job.user_id)
        self._needs[job.id] = Needs(job.workflow, job.options)
        self._publish_positions()
        self._wake.set()

    def _release(self, control: _Control) -> None:
        if not control.released:
            control.released = True
            self.pool.release(control.backend)
            self._wake.set()

    async def _stop_on_server(self, backend: Backend, prompt_id: str) -> None:
        """Delete a prompt from the server's queue and interrupt it if it runs (best effort)."""
        try:
            await _comfy(backend).stop_prompt(prompt_id)
        except ComfyError as exc:
            log.debug("stopping prompt %s on %s: %s", prompt_id, backend.name, exc)

    async def _server_knows(self, backend: Backend, prompt_id: str, *, running_only: bool) -> bool:
        """Whether the server has the prompt in its queue or history (False if it cannot be asked)."""
        client = _comfy(backend)
        try:
            queue = await client.get_queue()
            if queue.contains(prompt_id):
                return True
            if running_only:
                return False
            return await client.get_history_entry(prompt_id) is not None
        except ComfyError:
            return False

    # ------------------------------------------------------------------ endings

    async def _set_state(self, job_id: str, state: JobState, **fields: Any) -> Job:
        return await self.store.jobs.update(job_id, state=state, **fields)

    async def _finish(
        self, job_id: str, state: JobState, error: str | None, detail: str | None = None, **fields: Any
    ) -> None:
        """Put a job in a terminal state (once), tell its stream and the delivery."""
        try:
            job = await self.store.jobs.update(
                job_id, state=state, error=error, error_detail=detail, finished_at=self.clock.now(), **fields
            )
        except InvalidTransition as exc:
            log.debug("job %s is %s; not moving it to %s", job_id, exc.old.value, state.value)
            if exc.old.is_terminal:
                self._forget(job_id)  # e.g. a cancel asked just as it ended
            return
        actor = self._cancel_requested.get(job_id)
        log.info("job %s %s%s", job_id, state.value, f": {error}" if error else "")
        if detail:
            log.debug("job %s detail: %s", job_id, detail)
        self.streams.publish(ProgressUpdate(job_id=job_id, phase="finished", message=error or _state_words(state)))
        self._forget(job_id)
        self._wake.set()
        if state is not JobState.DELIVERED and self.delivery is not None:
            try:
                await self.delivery.job_ended(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log_failure(logging.WARNING, "job %s: telling the member it ended failed", job_id)
        await self._emit(job, state.value, actor if state is JobState.CANCELLED else None)

    def _forget(self, job_id: str) -> None:
        """Drop everything kept in memory for a job that has ended. Its stream goes too: whoever
        follows it already holds it and still gets the ``finished`` update published before."""
        self.queue.mark_done(job_id)
        self._needs.pop(job_id, None)
        self._cancel_requested.pop(job_id, None)
        self._timed_out.discard(job_id)
        self._published_positions.pop(job_id, None)
        self.streams.discard(job_id)

    async def _wait_terminal(self, stream: ProgressStream, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                async for update in stream:
                    if update.is_terminal:
                        return
        except TimeoutError:
            pass

    async def _reload(self, job_id: str) -> Job:
        job = await self.store.jobs.get(job_id)
        assert job is not None
        return job

    # ------------------------------------------------------------------ recovery and housekeeping

    async def _recover(self) -> None:
        """Reconcile every stored job that had not ended (see the module docstring)."""
        jobs = await self.store.jobs.active()
        for job in jobs:
            if job.state is JobState.WAITING:
                self.queue.push(job.id, job.user_id, enforce_limits=False)
                self._needs[job.id] = Needs(job.workflow, job.options)
            else:
                self.queue.mark_running(job.id, job.user_id)
                self._start_task(job.id, self._resume(job))
        if jobs:
            log.info("Recovered %d unfinished job(s) from the store", len(jobs))
        if self.delivery is not None:
            for job in jobs:
                self.delivery.follow(job)

    async def _resume(self, job: Job) -> None:
        if job.state is JobState.DELIVERING:
            stored = Path(job.result_path) if job.result_path else None
            if stored is not None and await asyncio.to_thread(_exists, stored):
                await self._deliver(job)
            else:
                await self._finish(job.id, JobState.FAILED, "The finished video was lost before it could be posted.")
            return
        try:
            backend = self.pool.get(job.server or "")
        except KeyError:
            # its server is no longer configured: run it elsewhere
            await self._set_state(job.id, JobState.WAITING, server=None, prompt_id=None)
            self.queue.mark_done(job.id)
            self.queue.push_front(job.id, job.user_id)
            self._needs[job.id] = Needs(job.workflow, job.options)
            self._wake.set()
            return
        self.pool.reserve(backend)
        control = _Control(backend=backend, abort=asyncio.get_running_loop().create_future(), prompt_id=job.prompt_id)
        control.started = job.state is JobState.RUNNING
        self._controls[job.id] = control
        try:
            await self._guarded(job, control, self._resume_follow(job, control))
        finally:
            self._release(control)
            self._controls.pop(job.id, None)

    async def _resume_follow(self, job: Job, control: _Control) -> None:
        workflow = self.workflows.get(job.workflow)
        if workflow is None:
            raise JobFailed("This job's workflow was removed by an admin.")
        hub = self.hubs[control.backend.name]
        if job.prompt_id is None:
            await self._submit_and_follow(job, control)
            return
        outcome = await self._follow(job, control, hub, workflow, reconcile_first=True)
        if outcome.status == "lost":
            log.warning("job %s: server %s no longer knows prompt %s", job.id, control.backend.name, job.prompt_id)
            await self._submit_and_follow(job, control)
            return
        await self._conclude(job, control, outcome)

    async def _sweep_loop(self) -> None:
        """Time out jobs that waited too long for a server; apply retention once an hour."""
        last_retention = float("-inf")
        while True:
            await self.clock.sleep(self._sweep_interval)
            try:
                await self._time_out_waiting()
                if self.clock.now() - last_retention >= 3600:
                    last_retention = self.clock.now()
                    await self.apply_retention()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log_failure(logging.ERROR, "housekeeping failed")

    async def _time_out_waiting(self) -> None:
        """Waiting jobs time out only while no answering server can run them: a long line behind
        busy servers is fine."""
        now = self.clock.now()
        for job_id in list(self.queue.positions()):
            if self.router.waiting_runnable(self._needs.get(job_id)):
                continue
            job = await self.store.jobs.get(job_id)
            if job is not None and job.state is JobState.WAITING and now - job.created_at > self.limits.job_timeout:
                self.queue.remove(job_id)
                await self._finish(job_id, JobState.TIMED_OUT, "No image server was free in time. Please try again later.")

    async def apply_retention(self) -> int:
        """Remove inputs and results older than the retention period. Returns files removed."""
        cutoff = self.clock.now() - self.limits.retention_days * 86400
        paths = await self.store.purge_older_than(cutoff)
        removed = await remove_files(paths)
        if removed:
            log.info("Retention removed %d old file(s)", removed)
        return removed


def _past_sampling(latest: ProgressUpdate | None, node: str) -> bool:
    """Whether the job's last update was the final sampling step and ``node`` is another node."""
    return (latest is not None and latest.phase == "running" and latest.step is not None
            and latest.steps is not None and latest.step >= latest.steps and node != latest.node)


def _comfy(backend: Backend) -> ComfyClient:
    """The ComfyUI client of a backend (the pool only needs a narrow protocol of it)."""
    return cast(ComfyClient, backend.client)


def _read_input(path: Path) -> tuple[bytes, str]:
    """A job's prepared PNG and the name to upload it under (from its content, see
    :func:`bot.media.images.content_upload_name`)."""
    png = path.read_bytes()
    return png, content_upload_name(png)


def _exists(path: Path) -> bool:
    return path.exists()


def _log_failure(level: int, message: str, *args: Any) -> None:
    log_failure(log, level, message, *args)


def _resolve(future: asyncio.Future[str], reason: str) -> None:
    if not future.done():
        future.set_result(reason)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _png_size(png: bytes) -> tuple[int, int]:
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise JobFailed("This job's prepared image is damaged.", detail="not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def _with_preview(update: ProgressUpdate, image: bytes) -> ProgressUpdate:
    return replace(update, preview=image)


def _position_words(position: int) -> str:
    return "Next in line" if position == 1 else f"Waiting: #{position} in line"


def _cancel_reason(owner: int, by: int) -> str:
    return "Cancelled." if owner == by else "Cancelled by a moderator."


def _state_words(state: JobState) -> str:
    return {
        JobState.DELIVERED: "delivered",
        JobState.FAILED: "failed",
        JobState.CANCELLED: "cancelled",
        JobState.TIMED_OUT: "timed out",
    }.get(state, state.value)


__all__ = ["ACTIVE_STATES", "QUEUE_WORDING", "Delivery", "JobListener", "JobRequest", "JobService", "ServerView", "ServiceLimits",
           "WorkflowProblems"]
