"""Choosing a ComfyUI server for the next job, and noticing when one stops answering."""

from __future__ import annotations

import asyncio

import pytest

from bot.jobs.backends import Backend, BackendPool, call_with_timeout
from standins.fake_clock import FakeClock, settle_loop


class FakeClient:
    """Answers ``queue_remaining`` with a set value, fails, or hangs forever."""

    def __init__(self, remaining: int = 0) -> None:
        self.remaining = remaining
        self.mode = "ok"  # "ok" | "error" | "hang"
        self.calls = 0

    async def queue_remaining(self) -> int:
        self.calls += 1
        if self.mode == "error":
            raise ConnectionError("connection refused")
        if self.mode == "hang":
            await asyncio.Event().wait()
        return self.remaining

    async def system_stats(self) -> dict:
        return {"system": {"comfyui_version": "test"}}


def make_pool(*remaining: int, max_pending: int = 1, clock: FakeClock | None = None) -> tuple[BackendPool, list[FakeClient]]:
    clients = [FakeClient(r) for r in remaining]
    backends = [Backend(name=f"gpu{i + 1}", client=c, max_pending=max_pending) for i, c in enumerate(clients)]
    return BackendPool(backends, clock=clock or FakeClock(), check_timeout=5.0), clients


def test_prefers_least_loaded_then_configuration_order() -> None:
    pool, _ = make_pool(0, 0, 0)
    assert pool.choose().name == "gpu1"  # tie: first listed
    pool.reserve("gpu1")
    assert pool.choose().name == "gpu2"
    pool.reserve("gpu2")
    pool.reserve("gpu3")
    assert pool.choose().name == "gpu1"  # all at 1: first listed again
    pool.update_queue_remaining("gpu1", 4)  # someone else queued work on gpu1
    assert pool.choose().name == "gpu2"


def test_room_is_one_running_plus_max_pending() -> None:
    pool, _ = make_pool(0, 0, max_pending=1)
    for _ in range(4):
        backend = pool.choose()
        assert backend is not None
        pool.reserve(backend)
    assert pool.choose() is None  # 2 each: full
    assert not pool.has_room()
    pool.release("gpu2")
    assert pool.choose().name == "gpu2"
    pool.release("gpu2")
    pool.release("gpu2")  # an extra release does not go negative
    assert pool.get("gpu2").in_flight == 0


def test_exclude_and_down_servers_are_skipped() -> None:
    pool, _ = make_pool(0, 5)
    assert pool.choose(exclude={"gpu1"}).name == "gpu2"
    pool.mark_down("gpu1", "websocket closed")
    assert pool.choose().name == "gpu2"
    assert pool.choose(exclude={"gpu2"}) is None
    pool.mark_up("gpu1")
    assert pool.choose().name == "gpu1"


async def test_health_checks_skip_a_silent_server_until_it_answers() -> None:
    clock = FakeClock()
    pool, (c1, c2) = make_pool(3, 0, clock=clock)
    changes: list[tuple[str, bool]] = []
    pool.add_listener(lambda b, healthy: changes.append((b.name, healthy)))
    task = asyncio.create_task(pool.run_health_checks(10.0))
    try:
        await clock.tick(0)
        assert pool.get("gpu1").queue_remaining == 3 and pool.get("gpu1").last_seen == clock.now()
        assert pool.choose().name == "gpu2"

        c2.mode = "hang"  # stops answering: found out when the 5 s limit passes
        await clock.tick(10)
        assert pool.get("gpu2").healthy  # check in progress, not yet timed out
        await clock.tick(5)
        assert not pool.get("gpu2").healthy
        assert pool.choose().name == "gpu1"
        assert changes == [("gpu2", False)]

        c2.mode = "ok"
        c2.remaining = 0
        await clock.tick(10)
        assert pool.get("gpu2").healthy and pool.get("gpu2").consecutive_failures == 0
        assert pool.choose().name == "gpu2"
        assert changes == [("gpu2", False), ("gpu2", True)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_error_marks_down_and_posted_prompts_count_until_next_read() -> None:
    clock = FakeClock()
    pool, (c1, c2) = make_pool(0, 0, max_pending=3, clock=clock)
    await pool.check_all()
    pool.reserve("gpu1")
    pool.reserve("gpu1")
    assert pool.get("gpu1").load == 2
    assert pool.choose().name == "gpu2"
    c1.remaining = 0  # both finished; a fresh read resets the estimate
    await pool.check("gpu1")
    assert pool.get("gpu1").load == 0

    c1.mode = "error"
    assert not await pool.check("gpu1")
    b1 = pool.get("gpu1")
    assert not b1.healthy and b1.consecutive_failures == 1
    assert "connection refused" in (b1.last_error or "")
    assert [s.name for s in pool.statuses() if s.healthy] == ["gpu2"]


async def test_failure_threshold() -> None:
    clock = FakeClock()
    clients = [FakeClient()]
    pool = BackendPool([Backend("gpu1", clients[0])], clock=clock, failure_threshold=2)
    clients[0].mode = "error"
    await pool.check("gpu1")
    assert pool.get("gpu1").healthy  # one blip is tolerated
    await pool.check("gpu1")
    assert not pool.get("gpu1").healthy


async def test_call_with_timeout_returns_value_or_times_out() -> None:
    clock = FakeClock()
    client = FakeClient(7)
    assert await call_with_timeout(client.queue_remaining, 1.0, clock) == 7
    client.mode = "hang"
    task = asyncio.create_task(call_with_timeout(client.queue_remaining, 1.0, clock))
    await settle_loop()
    assert not task.done()
    clock.advance(1.0)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(task, 1)
    assert clock.sleepers == 0


def test_names_must_be_unique() -> None:
    with pytest.raises(ValueError):
        BackendPool([Backend("a", FakeClient()), Backend("a", FakeClient())])
