"""The runner: one attempt at running a job on one server, from the upload to the delivery, and how that attempt ends.

An :class:`Attempt` is made each time a job is given a server (by the dispatcher, or by recovery
after a restart) and lives until that attempt is over. For it the runner:

1. uploads the prepared image (named from its bytes), builds the graph, stores the bot-chosen
   prompt_id, subscribes on the server's hub, then ``POST /prompt`` once (after a failed POST
   it asks the server whether the prompt got there before anything else);
2. follows the prompt to its end (progress from :func:`~bot.jobs.progress.progress_from_event`),
   with a watchdog for ``JOB_TIMEOUT``; a prompt the server lost (it restarted) is posted again,
   once. The output node's ``executed`` starts the result's download (:mod:`bot.jobs.collect`);
   the prompt's first terminal event gives the server slot back, so the next job is sent while
   this one's result is collected and delivered;
3. decides why the attempt ends: one :class:`~bot.jobs.endings.Ending` per attempt, the first
   decided wins (:meth:`Attempt.decide`): the prompt's outcome (success, an error inside ComfyUI,
   stopped by an operator), a cancel by the member or a moderator (:mod:`bot.jobs.intake`), the
   time limit (the watchdog), or the server going away (:mod:`bot.jobs.fleet`, or a failed
   upload or POST): moved to the head of the line once, else failed. After a cancel or the time
   limit the prompt is stopped on its server (dropped from the queue, interrupted if it runs)
   and the server is given a moment to confirm;
4. ends it in one place, :meth:`Runner._end`: a success is collected and delivered through the
   :class:`~bot.jobs.context.Delivery` (:mod:`bot.jobs.collect`: retried with backoff, the tries
   counted across restarts; a result is never made twice), a move puts the job back in line
   (:meth:`Runner.requeue`), anything else is written by :meth:`~bot.jobs.endings.Endings.finish`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.comfy.errors import ComfyError
from bot.comfy.events import (
    Event,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
)
from bot.comfy.follow import Outcome, follow_prompt, reconcile
from bot.comfy.hub import ComfyHub, Subscription
from bot.errors import JobFailed, UserFacingError
from bot.jobs.attempt import MAX_SUBMISSIONS, Attempt, outcome_ending
from bot.jobs.backends import Backend
from bot.jobs.collect import Collector
from bot.jobs.context import JobContext, comfy
from bot.jobs.dispatcher import Dispatcher
from bot.jobs.endings import GENERIC_FAILURE, RESULT_LOST, EndReason, Ending, Endings, failure_ending
from bot.jobs.meta import moved_fields
from bot.jobs.models import InvalidTransition, Job, JobState, new_prompt_id
from bot.jobs.pipeline import build_graph, post_prompt, read_prepared_input, upload_input
from bot.jobs.progress import EtaEstimator, ProgressUpdate, progress_from_event
from bot.safety.ahead import ResultCheckAhead
from bot.workflows import Workflow

log = logging.getLogger(__name__)

__all__ = ["Runner", "server_knows", "stop_on_server"]

STOP_GRACE = 30.0  # seconds a server is given to confirm a stopped prompt
_LEFT_THEIR_SERVER = (EndReason.MOVED, EndReason.SERVER_LOST)
_PROMPT_ENDS = (ExecutionSuccess, ExecutionError, ExecutionInterrupted)


class Runner:
    """Runs attempts (see the module docstring). ``abandon(server, prompt_id)`` hands a prompt
    left on a server that went away to the fleet, which removes it when the server is back;
    ``result_check``: the result check to start on a downloaded result (content safety)."""

    def __init__(self, ctx: JobContext, endings: Endings, dispatcher: Dispatcher,
                 abandon: Callable[[str, str], None], result_check: ResultCheckAhead | None = None) -> None:
        self.ctx = ctx
        self.collector = Collector(ctx, result_check)
        self.endings = endings
        self.dispatcher = dispatcher
        self.abandon = abandon
        self.attempts: dict[str, Attempt] = {}  # job id -> its attempt running now

    # ------------------------------------------------------------------ starting

    def start_new(self, job_id: str, backend: Backend) -> None:
        """Run a job taken from the line on ``backend`` (its slot already reserved)."""
        self._begin(Attempt(job_id, backend), resume=False)

    def resume(self, job: Job, backend: Backend) -> None:
        """Run a stored job again from where it was on ``backend`` (recovery)."""
        self.ctx.pool.reserve(backend)
        self._begin(Attempt(job.id, backend, job=job), resume=True)

    def redeliver(self, job: Job) -> None:
        """Deliver a job stopped while delivering from its stored result (recovery); never run again."""
        self.ctx.tasks.run_job(job.id, self._redeliver(job))

    def attempt_of(self, job_id: str) -> Attempt | None:
        return self.attempts.get(job_id)

    def server_lost(self, backend: Backend) -> None:
        """``backend`` went away (websocket down too): every attempt on it ends that way."""
        for attempt in list(self.attempts.values()):
            if attempt.backend is backend:
                attempt.lose_server("the server went down")

    def _begin(self, attempt: Attempt, *, resume: bool) -> None:
        self.attempts[attempt.job_id] = attempt
        self.ctx.tasks.run_job(attempt.job_id, self._run(attempt, resume=resume))

    async def _run(self, attempt: Attempt, *, resume: bool) -> None:
        try:
            if attempt.job is None:
                job = await self.ctx.store.jobs.get(attempt.job_id)
                if job is None or job.is_terminal:
                    return
                attempt.attach(job)
            try:
                outcome = await (self._resume_work(attempt) if resume else self._submit_and_follow(attempt))
                if outcome is not None:
                    attempt.outcome = outcome
                    attempt.decide(outcome_ending(outcome))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt.decide(failure_ending(attempt.job_id, exc))
            await self._end(attempt)
        finally:
            self.collector.drop(attempt)
            self._release(attempt)
            if self.attempts.get(attempt.job_id) is attempt:
                del self.attempts[attempt.job_id]
            attempt.close()

    # ------------------------------------------------------------------ the one ending

    async def _end(self, attempt: Attempt) -> None:
        """End the attempt as decided (see the module docstring): the one place a dispatched job ends."""
        if attempt.ending is None:  # every path decides first; never leave a job without an end
            attempt.decide(Ending.failed(GENERIC_FAILURE, "the attempt ended without a reason"))
        ending = attempt.ending
        assert ending is not None
        self._release(attempt)
        if ending.reason in _LEFT_THEIR_SERVER and attempt.prompt_id:
            self.abandon(attempt.backend.name, attempt.prompt_id)
        if ending.reason is EndReason.MOVED:
            job = await self.ctx.store.jobs.get(attempt.job_id)
            if job is not None and not job.is_terminal:
                await self.requeue(job, ending.detail or "its server went away")
            return
        if ending.reason is EndReason.DELIVERED:
            await self._end_delivering(attempt.job_id, await self.collector.collect(attempt), counted=True)
            return
        await self.endings.finish(attempt.job_id, ending)

    async def requeue(self, job: Job, reason: str, *, count_move: bool = True) -> None:
        """Back to the head of the line for another server; ``count_move`` records the move
        (a job is moved once: the next loss fails it)."""
        try:
            job = await self.ctx.store.jobs.update(job.id, state=JobState.WAITING, server=None, prompt_id=None,
                                                  **(moved_fields(job) if count_move else {}))
        except InvalidTransition:
            return  # it ended meanwhile
        log.warning("job %s goes back to the queue: %s", job.id, reason)
        self.dispatcher.put_back(job)

    def _release(self, attempt: Attempt) -> None:
        if not attempt.released:
            attempt.released = True
            self.ctx.pool.release(attempt.backend)
            self.ctx.wake()

    # ------------------------------------------------------------------ posting and following

    async def _submit_and_follow(self, attempt: Attempt) -> Outcome | None:
        job = _job(attempt)
        workflow = self.ctx.workflows.get(job.workflow)
        if workflow is None:
            raise JobFailed("This job's workflow was removed by an admin.", detail=f"workflow {job.workflow} gone")
        hub = self.ctx.hubs[attempt.backend.name]
        while not attempt.decided:
            if _job(attempt).submit_attempts >= MAX_SUBMISSIONS:
                raise JobFailed("The image server restarted and lost this job twice. Please try again.",
                                detail=f"lost {_job(attempt).submit_attempts} times on {attempt.backend.name}")
            sub = await self._post(attempt, hub, workflow)
            if sub is None:
                return None
            outcome = await self._follow(attempt, hub, workflow, sub=sub)
            if outcome is None or outcome.status != "lost":
                return outcome
            log.warning("job %s: prompt %s lost by server %s; submitting again", attempt.job_id, attempt.prompt_id,
                        attempt.backend.name)
        return None

    async def _resume_work(self, attempt: Attempt) -> Outcome | None:
        job = _job(attempt)
        workflow = self.ctx.workflows.get(job.workflow)
        if workflow is None:
            raise JobFailed("This job's workflow was removed by an admin.")
        if job.prompt_id is None:
            return await self._submit_and_follow(attempt)
        outcome = await self._follow(attempt, self.ctx.hubs[attempt.backend.name], workflow, reconcile_first=True)
        if outcome is not None and outcome.status == "lost":
            log.warning("job %s: server %s no longer knows prompt %s", job.id, attempt.backend.name, job.prompt_id)
            return await self._submit_and_follow(attempt)
        return outcome

    async def _post(self, attempt: Attempt, hub: ComfyHub, workflow: Workflow) -> Subscription | None:
        """Upload, inject and post once; returns the subscription opened before the POST (so an
        event that comes before the POST's answer is kept), or None when the attempt was decided
        meanwhile (nothing is posted then) or the server failed."""
        ctx, backend, job = self.ctx, attempt.backend, _job(attempt)
        if attempt.released:  # posted again after its first prompt ended (lost): it counts again
            ctx.pool.reserve(backend)
            attempt.released = False
        png, upload_name, (width, height) = await read_prepared_input(Path(job.input_path or ""))
        try:
            image_name = await upload_input(hub.client, png, upload_name)
        except ComfyError as exc:
            ctx.pool.mark_down(backend, f"upload failed: {type(exc).__name__}")
            attempt.lose_server(f"upload failed: {exc}")
            return None
        if attempt.decided:
            return None  # cancelled (or its server lost) while uploading
        graph = build_graph(workflow, job.options, image_name=image_name, width=width, height=height, job_id=job.id)
        prompt_id = new_prompt_id()
        attempt.job = job = await ctx.store.jobs.update(
            job.id, state=JobState.SUBMITTED, server=backend.name, prompt_id=prompt_id, client_id=hub.client_id,
            uploaded_name=image_name, submit_attempts=job.submit_attempts + 1, submitted_at=ctx.clock.now(),
        )
        attempt.prompt_id = prompt_id
        attempt.started = False
        if attempt.decided:
            return None
        sub = hub.subscribe(prompt_id)  # before posting, so no event is missed
        try:
            await post_prompt(hub, graph, prompt_id=prompt_id, extra_data={"animate_job": job.id})
        except UserFacingError:
            sub.close()
            raise
        except ComfyError as exc:
            # The POST may or may not have reached the queue: ask before doing anything else.
            if await server_knows(backend, prompt_id, running_only=False):
                log.info("job %s: POST /prompt failed (%s) but the server has it", job.id, type(exc).__name__)
            else:
                sub.close()
                ctx.pool.mark_down(backend, f"POST /prompt failed: {type(exc).__name__}")
                attempt.lose_server(f"POST /prompt failed: {exc}")
                return None
        log.info("job %s posted to %s as prompt %s", job.id, backend.name, prompt_id)
        # in the server's queue until its first execution event, which the follower reads next
        ctx.streams.publish(ProgressUpdate(job_id=job.id, phase="queued", message="In the image server's queue"))
        return sub

    async def _follow(self, attempt: Attempt, hub: ComfyHub, workflow: Workflow, *, sub: Subscription | None = None,
                      reconcile_first: bool = False) -> Outcome | None:
        """Follow the attempt's prompt to its end; None when the attempt was decided first (a
        cancel, the time limit, its server lost). ``reconcile_first``: ask the server before
        waiting for events (after a restart the prompt may have ended while nobody listened)."""
        ctx, job, prompt_id = self.ctx, _job(attempt), attempt.prompt_id
        assert prompt_id is not None
        eta = EtaEstimator()
        started_at = job.started_at

        async def on_event(event: Event) -> None:
            nonlocal started_at
            if isinstance(event, _PROMPT_ENDS):
                self._release(attempt)  # ComfyUI is done with it: the next job may go there now
            self.collector.on_event(attempt, event, workflow)
            if not attempt.started and isinstance(event, (ExecutionStart, ExecutionCached, Executing)):
                attempt.started = True
                started_at = started_at or ctx.clock.now()
                attempt.job = await ctx.store.jobs.update(job.id, state=JobState.RUNNING, started_at=started_at)
            elapsed = None if started_at is None else max(0.0, ctx.clock.now() - started_at)
            update = progress_from_event(event, workflow, job_id=job.id, latest=ctx.streams.latest(job.id), elapsed=elapsed)
            if update is None:
                return
            if update.phase == "running" and update.step is not None and update.steps is not None:
                eta.observe(update.step, update.steps, ctx.clock.monotonic())
                update = replace(update, eta=eta.eta(ctx.clock.monotonic()))
            ctx.streams.publish(update)

        sub = sub or hub.subscribe(prompt_id)
        if reconcile_first:
            try:
                known = await reconcile(hub.client, prompt_id)
            except ComfyError as exc:
                known = None  # the server is away: its websocket's reconnect will reconcile
                log.info("job %s: server %s not reachable on recovery (%s)", job.id, attempt.backend.name,
                         type(exc).__name__)
            if known is not None:
                sub.close()
                return known
        follower = asyncio.ensure_future(follow_prompt(hub.client, sub, on_event=on_event))
        watchdog = asyncio.ensure_future(self._watchdog(attempt, (job.submitted_at or ctx.clock.now()) + ctx.limits.job_timeout))
        decided = asyncio.ensure_future(attempt.wait_decided())
        try:
            await asyncio.wait({follower, watchdog, decided}, return_when=asyncio.FIRST_COMPLETED)
            if follower.done():
                return follower.result()
            if attempt.ending is not None and attempt.ending.reason not in _LEFT_THEIR_SERVER:
                await self._stop(attempt, follower)
            return None
        finally:
            for task in (follower, watchdog, decided):
                task.cancel()
            await asyncio.gather(follower, watchdog, decided, return_exceptions=True)
            sub.close()

    async def _watchdog(self, attempt: Attempt, deadline: float) -> None:
        """Past the time limit, the attempt ends timed out (unless something else was decided)."""
        remaining = deadline - self.ctx.clock.now()
        if remaining > 0:
            await self.ctx.clock.sleep(remaining)
        if attempt.decide(Ending.timed_out(self.ctx.limits.job_timeout)):
            log.warning("job %s reached its time limit; stopping prompt %s", attempt.job_id, attempt.prompt_id)

    async def _stop(self, attempt: Attempt, follower: asyncio.Future[Any]) -> None:
        """Stop the prompt on its server; if the server still has it, give it a moment to confirm."""
        assert attempt.prompt_id is not None
        await stop_on_server(attempt.backend, attempt.prompt_id)
        if not await server_knows(attempt.backend, attempt.prompt_id, running_only=False):
            return  # deleted while pending (or never got there): no event will come
        grace: asyncio.Future[Any] = asyncio.ensure_future(self.ctx.clock.sleep(STOP_GRACE))
        try:
            await asyncio.wait({follower, grace}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            grace.cancel()

    # ------------------------------------------------------------------ the result

    async def _redeliver(self, job: Job) -> None:
        stored = Path(job.result_path) if job.result_path else None
        found = stored is not None and await asyncio.to_thread(stored.exists)
        await self._end_delivering(job.id, job if found else Ending.failed(RESULT_LOST))

    async def _end_delivering(self, job_id: str, result: Job | Ending, *, counted: bool = False) -> None:
        """Deliver a delivering job (or end it as its result could not be had) and write how it ended;
        ``counted``: its first delivery try was counted when it was handed over."""
        fields: dict[str, Any] = {}
        if isinstance(result, Ending):
            ending = result
        else:
            delivered = await self.collector.deliver(result, counted=counted)
            self.collector.checked(result)
            if delivered is None:
                return  # no delivery connected: delivered on the next start
            ending, fields = delivered
        ended = await self.endings.finish(job_id, ending, **fields)
        if ended is not None and ending.reason is EndReason.DELIVERED:
            await self.collector.forget_on_server(ended)


async def stop_on_server(backend: Backend, prompt_id: str) -> None:
    """Delete a prompt from the server's queue and interrupt it if it runs (best effort)."""
    try:
        await comfy(backend).stop_prompt(prompt_id)
    except ComfyError as exc:
        log.debug("stopping prompt %s on %s: %s", prompt_id, backend.name, exc)


async def server_knows(backend: Backend, prompt_id: str, *, running_only: bool) -> bool:
    """Whether the server has the prompt in its queue or history (False if it cannot be asked)."""
    client = comfy(backend)
    try:
        if (await client.get_queue()).contains(prompt_id):
            return True
        if running_only:
            return False
        return await client.get_history_entry(prompt_id) is not None
    except ComfyError:
        return False


def _job(attempt: Attempt) -> Job:
    assert attempt.job is not None, "the attempt's job is loaded first"
    return attempt.job
