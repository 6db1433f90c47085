"""Stopping a child task without swallowing the caller's own cancellation.

``task.cancel(); await task`` raises ``CancelledError`` in the caller in two cases that look
the same: the child ended because *we* cancelled it (expected: swallow it), or the caller
itself is being cancelled while it waits (must propagate, or ``close()`` would carry on and a
shutdown or a ``TaskGroup`` would hang). ``asyncio.current_task().cancelling()`` tells them
apart: it is non-zero only when someone asked to cancel the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait", "cancelling"]


def cancelling() -> bool:
    """Whether the running task is being cancelled. In ``except asyncio.CancelledError`` after
    cancelling a child: re-raise when this is true, swallow (the child's) otherwise."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended. Its cancellation is swallowed; the caller's
    is not. Any other exception the task ends with propagates."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if cancelling():
            raise
