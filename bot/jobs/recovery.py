"""Recovery: what happens on start to every stored job that had not ended, through the runner.

On start (before dispatching) every job not in a terminal state is reconciled with its server:

- waiting -> back in the bot's line, in creation order, whatever the limits;
- delivering -> delivered again from its stored result (never run again), or failed if the
  result is gone (:meth:`~bot.jobs.runner.Runner.redeliver`);
- submitted or running on a configured server -> an attempt resumed on it
  (:meth:`~bot.jobs.runner.Runner.resume`): the server is asked first (finished -> delivered from
  ``/history``; queued or running -> followed again; unknown, e.g. ComfyUI restarted ->
  submitted again once, then failed). The same reconciliation happens for a running attempt when
  its server's websocket reconnects, or stays silent (the follower, :mod:`bot.comfy.follow`);
- submitted or running on a server no longer configured -> back to the head of the line
  (:meth:`~bot.jobs.runner.Runner.requeue`, not counted as a move).

Each recovered job's progress is shown again through the delivery (``follow``).
"""

from __future__ import annotations

import logging

from bot.jobs.context import JobContext
from bot.jobs.dispatcher import Dispatcher
from bot.jobs.models import JobState
from bot.jobs.runner import Runner

log = logging.getLogger(__name__)

__all__ = ["recover"]


async def recover(ctx: JobContext, dispatcher: Dispatcher, runner: Runner) -> None:
    """Reconcile every stored job that had not ended (see the module docstring)."""
    jobs = await ctx.store.jobs.active()
    for job in jobs:
        if job.state is JobState.WAITING:
            dispatcher.restore(job)
            continue
        ctx.queue.mark_running(job.id, job.user_id)
        if job.state is JobState.DELIVERING:
            runner.redeliver(job)
            continue
        try:
            backend = ctx.pool.get(job.server or "")
        except KeyError:
            ctx.tasks.run_job(job.id, runner.requeue(job, "its server is no longer configured", count_move=False))
            continue
        runner.resume(job, backend)
    if jobs:
        log.info("Recovered %d unfinished job(s) from the store", len(jobs))
    if ctx.delivery is not None:
        for job in jobs:
            ctx.delivery.follow(job)
