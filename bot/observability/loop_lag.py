"""The event-loop lag monitor: a task that sleeps a fixed interval and records how late it woke.

A coroutine that blocks the loop (CPU work or a blocking call in the wrong place) delays every
other task; this probe sees the delay as a late wake-up. The clock is injectable (any object with
``monotonic()`` and ``async sleep()``, such as :class:`bot.clock.SystemClock` or the tests' fake
clock), and so is what the measurement feeds (``BotMetrics.loop_lag_observed`` in the bot).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.clock import SystemClock
from bot.logs import log_failure

__all__ = ["LoopLagMonitor", "MonotonicSleeper"]

log = logging.getLogger(__name__)


class MonotonicSleeper(Protocol):
    """What the monitor needs of a clock (``bot.clock.Clock`` has both)."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@dataclass
class LoopLagMonitor:
    """Sleeps ``interval`` seconds again and again; each time it wakes it passes
    ``max(0, woke - went_to_sleep - interval)`` to ``record``.

    :meth:`start` runs it as a task of the running loop; :meth:`stop` cancels that task and waits
    for it, swallowing only the task's own cancellation (the caller's propagates).
    """

    record: Callable[[float], None]
    interval: float = 1.0
    clock: MonotonicSleeper = field(default_factory=SystemClock)
    last_lag: float | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"the lag probe interval must be positive, got {self.interval!r}")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start probing on the running event loop (a second start while running is refused)."""
        if self.running:
            raise RuntimeError("the event-loop lag monitor is already running")
        self._task = asyncio.get_running_loop().create_task(self.run(), name="event-loop-lag-monitor")

    async def stop(self) -> None:
        """Stop probing and wait until the task has ended."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller itself is being cancelled

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            went_to_sleep = self.clock.monotonic()
            await self.clock.sleep(self.interval)
            lag = max(0.0, self.clock.monotonic() - went_to_sleep - self.interval)
            self.last_lag = lag
            try:
                self.record(lag)
            except Exception:
                log_failure(log, logging.WARNING, "recording the event-loop lag failed")
