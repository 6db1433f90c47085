"""The event-loop lag monitor sees a blocked loop, and stopping it never swallows the caller's cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.clock import SystemClock
from bot.observability.loop_lag import LoopLagMonitor
from bot.observability.metrics import BotMetrics
from standins.fake_clock import FakeClock

from .helpers import value

pytestmark = pytest.mark.timeout(10)


async def test_a_blocking_call_shows_up_as_lag_on_the_real_clock() -> None:
    metrics = BotMetrics(process_metrics=False)
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    late: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def record(lag: float) -> None:
        metrics.loop_lag_observed(lag)
        if not first.done():
            first.set_result(lag)
        elif lag >= 0.15 and not late.done():
            late.set_result(lag)

    monitor = LoopLagMonitor(record, interval=0.01, clock=SystemClock())
    monitor.start()
    try:
        await first  # the probe is running (and now asleep again)
        time.sleep(0.25)  # the injected block: nothing else runs on the loop meanwhile
        lag = await asyncio.wait_for(late, 5)
    finally:
        await monitor.stop()
    assert 0.15 <= lag < 5
    assert monitor.last_lag is not None and monitor.last_lag >= 0.15
    count = value(metrics, "animate_bot_event_loop_lag_count") or 0
    assert count >= 2
    assert (value(metrics, "animate_bot_event_loop_lag_bucket", le="0.1") or 0) < count  # the blocked wake-up
    assert not monitor.running


async def test_lag_is_how_late_the_probe_woke_on_an_injected_clock() -> None:
    clock = FakeClock()
    seen: list[float] = []
    woke = asyncio.Event()

    def record(lag: float) -> None:
        seen.append(lag)
        woke.set()

    monitor = LoopLagMonitor(record, interval=1.0, clock=clock)
    monitor.start()
    try:
        while clock.sleepers == 0:
            await asyncio.sleep(0)
        clock.advance(1.75)  # the probe wakes 0.75 s after its deadline
        await woke.wait()
    finally:
        await monitor.stop()
    assert seen == [pytest.approx(0.75)]


async def test_a_failing_recorder_does_not_stop_the_probe() -> None:
    clock = FakeClock()
    calls = 0
    second = asyncio.Event()

    def record(lag: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("metrics broke")
        second.set()

    monitor = LoopLagMonitor(record, interval=1.0, clock=clock)
    monitor.start()
    try:
        await clock.tick(2.0)
        await second.wait()
    finally:
        await monitor.stop()
    assert calls >= 2


async def test_stop_swallows_the_probes_cancellation_but_not_the_callers() -> None:
    clock = FakeClock()
    monitor = LoopLagMonitor(lambda lag: None, interval=1.0, clock=clock)
    monitor.start()
    with pytest.raises(RuntimeError):
        monitor.start()
    await monitor.stop()  # its own cancellation is swallowed
    assert not monitor.running

    monitor.start()
    while clock.sleepers == 0:
        await asyncio.sleep(0)
    caller = asyncio.create_task(monitor.stop())
    await asyncio.sleep(0)  # the caller has cancelled the probe and waits for it
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LoopLagMonitor(lambda lag: None, interval=0)
