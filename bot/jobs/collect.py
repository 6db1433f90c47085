"""A successful attempt's result: downloaded early, handed over once, delivered.

- **Early download**: the output node's ``executed`` event names the result file before the
  prompt's end (``execution_success`` and the history entry come after it; with
  ``--disable-smart-memory`` the entry can come seconds later). :meth:`Collector.on_event` starts
  downloading that file then, and once it is on disk has the result check start on it
  (:class:`~bot.safety.ahead.ResultCheckAhead`). Nothing is concluded from it: the job succeeds
  only on the prompt's end with its history entry (:mod:`bot.comfy.follow`), and the file used is
  the early one only when the history entry names the same file; otherwise (a cached prompt whose
  node sent no ``executed``, another output chosen) the result is downloaded then, as without it.
  An attempt that ends otherwise (an error after ``executed``, a cancel, the time limit) drops
  the early download (:meth:`Collector.drop`).
- **Hand-over** (:meth:`Collector.collect`): the file, post-processed (:func:`post_process`), is
  stored with the job in one write: state ``delivering``, where the result is, and the first
  delivery try counted (:mod:`bot.jobs.meta`).
- **Delivery** (:meth:`Collector.deliver`): the :class:`~bot.jobs.context.Delivery`, retried with
  backoff, the tries counted across restarts (a result is never made twice); then the history
  entry is deleted on ComfyUI.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.comfy.errors import ComfyError
from bot.comfy.events import Event, Executed
from bot.errors import JobFailed, UserFacingError
from bot.jobs.attempt import Attempt
from bot.jobs.context import JobContext, comfy
from bot.jobs.endings import NOT_POSTED, Ending, failure_ending
from bot.jobs.extend import EXTEND_KEY
from bot.jobs.meta import delivery_attempt_fields
from bot.jobs.models import Job, JobState
from bot.jobs.pipeline import download_result, result_file
from bot.jobs.postprocess import bot_makes_boomerang, post_process
from bot.jobs.progress import ProgressUpdate
from bot.logs import log_failure
from bot.media.outputs import ResultFile, pick_result
from bot.safety.ahead import ResultCheckAhead
from bot.workflows import Workflow

log = logging.getLogger(__name__)

__all__ = ["Collector", "EarlyResult"]


@dataclass
class EarlyResult:
    """The result file named by the output node's ``executed`` event, downloading (or downloaded)."""

    found: ResultFile
    task: asyncio.Task[Path]


def _same_file(a: ResultFile, b: ResultFile) -> bool:
    return (a.filename, a.subfolder, a.type) == (b.filename, b.subfolder, b.type)


def _delivered_as_downloaded(workflow: Workflow, job: Job) -> bool:
    """Whether the delivery gets the downloaded file itself (not a boomerang the bot makes of it, nor
    an extension's clip joined onto the result it extends): only then is its check started ahead."""
    return not bot_makes_boomerang(workflow, job.options) and not isinstance(job.result_meta.get(EXTEND_KEY), dict)


class Collector:
    """See the module docstring. ``ahead``: the result check to start on a downloaded file."""

    def __init__(self, ctx: JobContext, ahead: ResultCheckAhead | None = None) -> None:
        self.ctx = ctx
        self.ahead = ahead

    # ------------------------------------------------------------------ early download

    def on_event(self, attempt: Attempt, event: Event, workflow: Workflow) -> None:
        """Start the early download when ``event`` is the output node's ``executed`` naming a file."""
        if (not isinstance(event, Executed) or event.node != workflow.output_node_id
                or event.prompt_id != attempt.prompt_id or attempt.job is None):
            return
        found = pick_result({event.node: event.output}, prefer_node=workflow.output_node_id)
        if found is None or (attempt.early is not None and _same_file(attempt.early.found, found)):
            return
        self.drop(attempt)  # an earlier prompt's file (posted again): not this one
        job = attempt.job
        task = asyncio.ensure_future(self._fetch(attempt, found, job, check=_delivered_as_downloaded(workflow, job)))
        attempt.early = EarlyResult(found, task)

    async def _fetch(self, attempt: Attempt, found: ResultFile, job: Job, *, check: bool) -> Path:
        path = await download_result(comfy(attempt.backend), found, self.ctx.results_dir, job.id)
        if check and self.ahead is not None:
            self.ahead.start_result_check(job, path)
        return path

    async def _early_path(self, attempt: Attempt, found: ResultFile) -> Path | None:
        """The early download's file when it is ``found`` and it worked, else None (nothing left running)."""
        early, attempt.early = attempt.early, None
        if early is None:
            return None
        if not _same_file(early.found, found):
            early.task.cancel()
        try:
            path = await asyncio.shield(early.task)
        except asyncio.CancelledError:
            if not early.task.cancelled():
                raise
            return None
        except Exception as exc:  # downloaded again below, and its failure handled there
            log.info("job %s: the early download failed (%s); downloading again", attempt.job_id, exc)
            return None
        if not _same_file(early.found, found) and self.ahead is not None:
            self.ahead.drop_result_check(path)
        return path

    def drop(self, attempt: Attempt) -> None:
        """The attempt no longer needs its early download (it ended, or it is another prompt's)."""
        early, attempt.early = attempt.early, None
        if early is None:
            return
        early.task.cancel()
        early.task.add_done_callback(self._forget_check)

    def _forget_check(self, task: asyncio.Task[Path]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        if self.ahead is not None:
            self.ahead.drop_result_check(task.result())

    # ------------------------------------------------------------------ hand-over

    async def collect(self, attempt: Attempt) -> Job | Ending:
        """A successful prompt's result, stored with the job: the job, now delivering, or how it failed."""
        assert attempt.job is not None
        job, outcome = attempt.job, attempt.outcome
        path: Path | None = None
        try:
            workflow = self.ctx.workflows.get(job.workflow)
            if workflow is None or outcome is None:
                raise JobFailed("This job's workflow was removed by an admin.", detail=f"workflow {job.workflow} gone")
            found = result_file(outcome, workflow)
            path = await self._early_path(attempt, found)
            if path is None:
                path = await download_result(comfy(attempt.backend), found, self.ctx.results_dir, job.id)
                if self.ahead is not None and _delivered_as_downloaded(workflow, job):
                    self.ahead.start_result_check(job, path)
            size = await asyncio.to_thread(lambda: path.stat().st_size)
            meta = {**job.result_meta, "format": found.format, "size": size, "filename": found.filename}
            delivered, extra = await post_process(workflow, job.options, path, found.format)
            if delivered != path and self.ahead is not None:
                self.ahead.drop_result_check(path)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if path is not None and self.ahead is not None:
                self.ahead.drop_result_check(path)
            return failure_ending(job.id, exc)
        meta.update(extra)
        _tries, counted = delivery_attempt_fields(job)
        return await self.ctx.store.jobs.update(job.id, state=JobState.DELIVERING, result_path=str(delivered),
                                                result_meta=meta, **counted)

    # ------------------------------------------------------------------ delivery

    async def deliver(self, job: Job, *, counted: bool = False) -> tuple[Ending, dict[str, Any]] | None:
        """Hand the stored result to the delivery, retried with backoff, and say how that ended
        (with the fields to store); None when no delivery is connected. Never runs the job again.
        ``counted``: the first try was counted with the hand-over."""
        ctx = self.ctx
        ctx.streams.publish(ProgressUpdate(job_id=job.id, phase="delivering", message="Posting the video"))
        if ctx.delivery is None:
            log.warning("job %s is ready but no delivery is set; it will be delivered on the next start", job.id)
            return None
        delay = 1.0
        for attempt in range(1, ctx.limits.delivery_attempts + 1):
            # Counted before each try and kept across restarts: a delivery that is not the first
            # must look for a result it may already have posted before posting again.
            if counted and attempt == 1:
                tries = job.delivery_attempts
            else:
                tries, fields = delivery_attempt_fields(job)
                job = await ctx.store.jobs.update(job.id, **fields)
            try:
                message_id = await ctx.delivery.deliver(job, Path(job.result_path or ""), attempt=tries)
            except asyncio.CancelledError:
                raise
            except UserFacingError as exc:
                return Ending.failed(exc.user_message, exc.detail), {}
            except Exception:
                log_failure(log, logging.WARNING, "job %s: delivery attempt %d failed", job.id, attempt)
                await ctx.clock.sleep(delay)
                delay = min(delay * 4, 120.0)
                continue
            return Ending.delivered(), {"delivered_message_id": message_id}
        return Ending.failed(NOT_POSTED, "delivery failed"), {}

    def checked(self, job: Job) -> None:
        """The job's delivery is over (or put off): forget a result check started ahead and not taken."""
        if job.result_path and self.ahead is not None:
            self.ahead.drop_result_check(Path(job.result_path))

    async def forget_on_server(self, job: Job) -> None:
        """Delete a delivered job's history entry on ComfyUI (best effort)."""
        if not job.server or not job.prompt_id:
            return
        try:
            await comfy(self.ctx.pool.get(job.server)).delete_history([job.prompt_id])
        except (KeyError, ComfyError) as exc:
            log.debug("job %s: could not delete its history entry: %s", job.id, exc)
