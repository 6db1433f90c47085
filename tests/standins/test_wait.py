"""standins.wait.wait_until: the one polling helper of the tests."""

from __future__ import annotations

import asyncio

import pytest

from standins.wait import wait_until


async def test_returns_the_first_truthy_value_of_a_sync_or_async_condition() -> None:
    calls: list[int] = []

    def sync() -> list[int] | None:
        calls.append(1)
        return calls if len(calls) >= 3 else None

    assert await wait_until(sync, timeout=5, interval=0) == [1, 1, 1]

    async def async_() -> str:
        return "ready"

    assert await wait_until(async_, timeout=5) == "ready"


async def test_a_time_out_names_what_was_awaited_and_the_state_last_seen() -> None:
    async def state() -> str:
        return "3 of 4 ended"

    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for all jobs to end; last seen: 3 of 4 ended"):
        await wait_until(lambda: False, timeout=0.05, what="all jobs to end", describe=state)
    with pytest.raises(AssertionError, match="last seen: sync"):
        await wait_until(lambda: False, timeout=0.01, describe=lambda: "sync")


async def test_a_check_that_outlasts_the_deadline_gets_one_more_after_it() -> None:
    """On a loaded machine one check can take longer than the whole time-out: the waiter
    checks once more, started after the deadline, instead of failing on the clock alone."""
    answers = iter([False, True])

    async def slow_check() -> bool:
        await asyncio.sleep(0.1)  # longer than the time-out below
        return next(answers)

    assert await wait_until(slow_check, timeout=0.01, interval=0)
    with pytest.raises(AssertionError):  # and a condition that stays false still fails
        await wait_until(slow_check_false, timeout=0.01, interval=0)


async def slow_check_false() -> bool:
    await asyncio.sleep(0.02)
    return False
