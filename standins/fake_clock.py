"""A fake :class:`bot.clock.Clock` for tests: time moves only when the test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["FakeClock", "settle_loop"]


class FakeClock:
    """A clock for tests. Time only moves when the test calls :meth:`advance` or :meth:`tick`.

    ``sleep`` suspends the caller until the clock is advanced past its deadline; sleepers
    are woken in deadline order (then in the order they went to sleep), so runs are
    deterministic. ``sleep(0)`` (or a negative value) just yields to the event loop once.
    """

    def __init__(self, start: float = 1_700_000_000.0, *, monotonic_start: float = 1000.0) -> None:
        self._wall = float(start)
        self._mono = float(monotonic_start)
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many coroutines are sleeping on this clock right now."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    def next_deadline(self) -> float | None:
        """Monotonic deadline of the earliest sleeper, or None when nobody sleeps."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` and wake every sleeper now due.

        Woken coroutines run at the caller's next ``await``; use :meth:`tick` when woken
        code sleeps again within the same span and must see every intermediate deadline.
        """
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._wall += seconds
        self._mono += seconds
        self._wake_due()

    async def tick(self, seconds: float, *, settle: int = 20) -> None:
        """Advance by ``seconds`` deadline by deadline, letting woken tasks run in between.

        At each sleeper's deadline inside the span the clock stops, wakes that sleeper and
        yields to the loop ``settle`` times, so a loop that sleeps again (a health check
        every 5 s over 60 s) runs every iteration.
        """
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        target = self._mono + seconds
        await settle_loop(settle)
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > target:
                break
            self.advance(max(0.0, deadline - self._mono))
            await settle_loop(settle)
        self.advance(target - self._mono)
        await settle_loop(settle)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


async def settle_loop(iterations: int = 20) -> None:
    """Yield to the event loop ``iterations`` times so ready tasks can run (test helper)."""
    for _ in range(iterations):
        await asyncio.sleep(0)
