"""The one injectable clock: wall time, monotonic time and sleeping.

Everything that measures time (cooldowns, quotas, job time limits, retention, health
checks) reads it from a :class:`Clock`. Production code uses :class:`SystemClock`; tests use
``standins.fake_clock.FakeClock`` and move time forward without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the bot needs to know about time."""

    def now(self) -> float:
        """Wall-clock time in epoch seconds (UTC), for anything stored or shown."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes backwards, for measuring durations and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` on this clock."""
        ...


class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
