"""The one polling helper for tests and benchmarks: wait until a condition holds, or fail saying what.

Prefer waiting on the event itself (an ``asyncio.Event``, a future, a stand-in's record).
Where the thing to wait for lives in another process or has no event (a row in another
process's SQLite file, a message a child process posts), poll it here: one place, one
deadline rule, one failure message that names what was awaited and what was last seen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["wait_until"]


async def wait_until(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.02,
    describe: Callable[[], object | Awaitable[object]] | None = None,
) -> T:
    """Call ``condition`` (sync or async) until it returns something truthy, and return that.

    Raises ``AssertionError`` naming ``what`` (and ``describe()``, sync or async, the state
    last seen) when ``timeout`` seconds of real time pass first. The last check starts after
    the deadline, so a stalled loop (a loaded machine) does not fail a condition that holds.
    The interval only paces the polling; it never stands in for the event.
    """
    deadline = time.monotonic() + timeout
    while True:
        expired = time.monotonic() >= deadline  # read before the check: the last check starts late
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if expired:
            seen = ""
            if describe is not None:
                state = describe()
                if inspect.isawaitable(state):
                    state = await state
                seen = f"; last seen: {state}"
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{seen}")
        await asyncio.sleep(interval)
