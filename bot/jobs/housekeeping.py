"""Housekeeping: the job service's periodic sweep (waiting jobs past the time limit, then retention of old files).

Every ``sweep_interval`` seconds (on the injected clock) the dispatcher times out the jobs that
waited too long with no server able to run them; once an hour the inputs and results older
than ``RETENTION_DAYS`` are removed (:func:`apply_retention`). A failed sweep is logged and the
next one runs as usual.
"""

from __future__ import annotations

import asyncio
import logging

from bot.jobs.context import JobContext
from bot.jobs.dispatcher import Dispatcher
from bot.logs import log_failure
from bot.storage import remove_files

log = logging.getLogger(__name__)

__all__ = ["apply_retention", "sweep"]

RETENTION_EVERY = 3600.0  # seconds between two retention passes


async def sweep(ctx: JobContext, dispatcher: Dispatcher, interval: float) -> None:
    """Run the sweep every ``interval`` seconds until cancelled."""
    last_retention = float("-inf")
    while True:
        await ctx.clock.sleep(interval)
        try:
            await dispatcher.time_out_waiting()
            if ctx.clock.now() - last_retention >= RETENTION_EVERY:
                last_retention = ctx.clock.now()
                await apply_retention(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log_failure(log, logging.ERROR, "housekeeping failed")


async def apply_retention(ctx: JobContext) -> int:
    """Remove inputs and results older than the retention period. Returns files removed."""
    cutoff = ctx.clock.now() - ctx.limits.retention_days * 86400
    paths = await ctx.store.purge_older_than(cutoff)
    removed = await remove_files(paths)
    if removed:
        log.info("Retention removed %d old file(s)", removed)
    return removed
