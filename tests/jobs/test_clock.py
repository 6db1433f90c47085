"""The fake clock wakes sleepers in deadline order and only when time is moved."""

from __future__ import annotations

import asyncio

from bot.clock import Clock, SystemClock
from standins.fake_clock import FakeClock, settle_loop


async def test_fake_clock_wakes_in_deadline_order() -> None:
    clock = FakeClock(start=5000.0, monotonic_start=1000.0)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(f"{name}@{clock.monotonic() - 1000.0:g}")

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("c", 30), ("a", 10), ("b", 10)]]
    await settle_loop()
    assert clock.sleepers == 3 and woke == []
    clock.advance(9)
    await settle_loop()
    assert woke == []
    clock.advance(1)
    await settle_loop()
    assert woke == ["a@10", "b@10"]
    assert clock.now() == 5010.0
    await clock.tick(100)  # stops at c's deadline on the way, so c sees the time it asked for
    assert woke == ["a@10", "b@10", "c@30"]
    assert clock.monotonic() - 1000.0 == 110
    await asyncio.gather(*tasks)


async def test_tick_runs_every_iteration_of_a_periodic_loop() -> None:
    clock = FakeClock()
    ticks: list[float] = []

    async def every_5s() -> None:
        while True:
            ticks.append(clock.monotonic())
            await clock.sleep(5)

    task = asyncio.create_task(every_5s())
    await clock.tick(20)
    task.cancel()
    assert [t - ticks[0] for t in ticks] == [0, 5, 10, 15, 20]


async def test_cancelled_sleeper_does_not_block_others() -> None:
    clock = FakeClock()
    a = asyncio.create_task(clock.sleep(5))
    b = asyncio.create_task(clock.sleep(10))
    await settle_loop()
    a.cancel()
    await settle_loop()
    assert clock.next_deadline() == clock.monotonic() + 10
    clock.advance(10)
    await asyncio.wait_for(b, 1)


def test_system_clock_is_a_clock() -> None:
    assert isinstance(SystemClock(), Clock) and isinstance(FakeClock(), Clock)
    assert SystemClock().now() > 1_600_000_000
