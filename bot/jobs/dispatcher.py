"""The dispatcher: the bot's fair line of waiting jobs, which server takes the next one, places in line, and time-outs while waiting.

It owns, for each waiting job, what a server must run for it (:class:`~bot.jobs.routing.Needs`)
and the place in line last published on its progress stream. Jobs enter the line new
(:meth:`Dispatcher.queue_new`), back at its head after their server went away
(:meth:`Dispatcher.put_back`) or restored after a restart (:meth:`Dispatcher.restore`).

:meth:`Dispatcher.dispatch` hands waiting jobs to servers: members in turn
(:class:`~bot.jobs.fairqueue.FairQueue`), each job to the least-loaded healthy server with room
that can run its workflow with its options; a member whose next job no free server can run waits
without holding up the others, and a job no configured server could ever run fails with the
reason. The chosen server's slot is reserved here and the job handed to ``start`` (the runner).
:meth:`Dispatcher.time_out_waiting` ends jobs that waited past the time limit while no answering
server could run them (a long line behind busy servers is fine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.jobs.backends import Backend
from bot.jobs.context import JobContext
from bot.jobs.endings import Ending, Endings
from bot.jobs.fairqueue import Reservation
from bot.jobs.models import Job, JobState
from bot.jobs.progress import ProgressUpdate
from bot.jobs.routing import Needs

log = logging.getLogger(__name__)

__all__ = ["Dispatcher", "position_words"]


class Dispatcher:
    """See the module docstring. ``start(job_id, backend)`` runs a job on the server reserved for it."""

    def __init__(self, ctx: JobContext, endings: Endings, start: Callable[[str, Backend], None]) -> None:
        self.ctx = ctx
        self.endings = endings
        self.start = start
        self.needs: dict[str, Needs] = {}  # waiting job -> what a server must run for it
        self.published: dict[str, int] = {}  # waiting job -> the place in line it was last told
        endings.also_forget(self.forget)

    # ------------------------------------------------------------------ entering the line

    def queue_new(self, job: Job, reservation: Reservation | None = None) -> None:
        """A new job (already stored) joins the end of its member's line; limits were checked."""
        self.ctx.queue.push(job.id, job.user_id, enforce_limits=False, reservation=reservation)
        self._waits(job)
        log.info("job %s queued for user %s (workflow %s)", job.id, job.user_id, job.workflow)

    def put_back(self, job: Job) -> None:
        """A job whose server went away goes back to the very head of the line."""
        self.ctx.queue.mark_done(job.id)
        self.ctx.queue.push_front(job.id, job.user_id)
        self._waits(job)

    def restore(self, job: Job) -> None:
        """A job stored as waiting, after a restart (no limit can drop it)."""
        self.ctx.queue.push(job.id, job.user_id, enforce_limits=False)
        self.needs[job.id] = Needs.of(job, self.ctx.workflows.get(job.workflow))

    def _waits(self, job: Job) -> None:
        self.needs[job.id] = Needs.of(job, self.ctx.workflows.get(job.workflow))
        self.publish_positions()
        self.ctx.wake()

    def forget(self, job_id: str) -> None:
        """The job ended: drop what is kept for it here."""
        self.needs.pop(job_id, None)
        self.published.pop(job_id, None)

    # ------------------------------------------------------------------ handing jobs to servers

    async def run(self) -> None:
        """Dispatch whenever woken (:meth:`JobContext.wake`), until cancelled."""
        while True:
            await self.ctx.wakeup.wait()
            self.ctx.wakeup.clear()
            self.dispatch()

    def dispatch(self) -> None:
        """Hand waiting jobs to servers (see the module docstring)."""
        ctx = self.ctx
        queue, pool, router = ctx.queue, ctx.pool, ctx.router
        while len(queue) and not ctx.closing and pool.choose() is not None:
            for entry in queue.heads():
                needs = self.needs.get(entry.job_id)
                backend = pool.choose(accept=router.accepts(needs))
                if backend is not None:
                    queue.take(entry.job_id)
                    self.needs.pop(entry.job_id, None)
                    pool.reserve(backend)
                    self.start(entry.job_id, backend)
                    break
                if needs is not None and not router.runnable_anywhere(needs):
                    queue.remove(entry.job_id)
                    self.needs.pop(entry.job_id, None)
                    ending = Ending.failed(router.unrunnable_reason(needs),
                                           f"no server can run workflow {needs.workflow} with these options")
                    ctx.tasks.spawn(self.endings.finish(entry.job_id, ending))
                    break
            else:
                break  # no waiting job fits a free server
        self.publish_positions()

    def publish_positions(self) -> None:
        """Tell each waiting job whose place in line changed its new place."""
        positions = self.ctx.queue.positions()
        for job_id, position in positions.items():
            if self.published.get(job_id) != position:
                self.published[job_id] = position
                self.ctx.streams.publish(
                    ProgressUpdate(job_id=job_id, phase="waiting", position=position, message=position_words(position))
                )
        for job_id in set(self.published) - set(positions):
            del self.published[job_id]

    # ------------------------------------------------------------------ waiting too long

    async def time_out_waiting(self) -> None:
        """End the jobs that waited past the time limit while no answering server could run them."""
        ctx = self.ctx
        now = ctx.clock.now()
        for job_id in list(ctx.queue.positions()):
            if ctx.router.waiting_runnable(self.needs.get(job_id)):
                continue
            job = await ctx.store.jobs.get(job_id)
            if job is not None and job.state is JobState.WAITING and now - job.created_at > ctx.limits.job_timeout:
                ctx.queue.remove(job_id)
                await self.endings.finish(job_id, Ending.waited_too_long())


def position_words(position: int) -> str:
    return "Next in line" if position == 1 else f"Waiting: #{position} in line"
