"""Closing a helper task never swallows the caller's own cancellation (issue 13, defect 3).

Each ``close()`` / time-out helper cancels a child task and waits for it. The child's
``CancelledError`` is expected and swallowed; but when the *caller* is cancelled while it waits,
the caller must end cancelled (``asyncio.current_task().cancelling()`` is non-zero then).
Each test cancels the caller at the moment it is waiting for its cancelled child.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.jobs.backends import call_with_timeout
from bot.discord.edit_scheduler import EditScheduler
from bot.storage import AuditRecord
from bot.tasks import cancel_and_wait
from bot.discord.audit import AuditLog
from standins.fake_clock import FakeClock

pytestmark = pytest.mark.timeout(10)


async def _cancel_caller_while_it_waits_for(caller: asyncio.Task[Any], child: asyncio.Future[Any]) -> None:
    """``caller`` has just been created and will cancel ``child`` and await it: let it get that
    far (one turn of the loop), check it did, then cancel the caller."""
    await asyncio.sleep(0)
    assert child.cancelled() or (isinstance(child, asyncio.Task) and child.cancelling()), "child not cancelled yet"
    assert not child.done() and not caller.done(), "caller is not waiting for its child"
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()


async def _stubborn(started: asyncio.Event) -> None:
    """A child that needs one more turn of the loop to end after being cancelled."""
    started.set()
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0)


async def test_cancel_and_wait_swallows_only_the_childs_cancellation() -> None:
    started = asyncio.Event()
    child = asyncio.create_task(_stubborn(started))
    await started.wait()
    await cancel_and_wait(child)  # our own child: its cancellation is swallowed
    assert child.cancelled()

    started = asyncio.Event()
    child = asyncio.create_task(_stubborn(started))
    await started.wait()
    caller = asyncio.create_task(cancel_and_wait(child))
    await _cancel_caller_while_it_waits_for(caller, child)


async def test_edit_scheduler_close() -> None:
    scheduler = EditScheduler(clock=FakeClock())
    scheduler.start()
    await asyncio.sleep(0)  # its loop is now waiting for work
    child = scheduler._task
    assert child is not None
    caller = asyncio.create_task(scheduler.close(flush=False))
    await _cancel_caller_while_it_waits_for(caller, child)


class _BlockingStore:
    """Enough of a Storage for the audit worker: its guild records never answer."""

    @property
    def guilds(self) -> _BlockingStore:
        return self

    async def get_settings(self, guild_id: int) -> Any:
        await asyncio.Event().wait()


async def test_audit_log_close() -> None:
    audit = AuditLog(client=object(), store=_BlockingStore())  # type: ignore[arg-type]
    audit.post(AuditRecord(guild_id=1, at=0.0, actor_id=None, action="job.queued", id=1))
    child = audit._worker
    assert child is not None
    await asyncio.sleep(0)  # the worker is now waiting on the store
    caller = asyncio.create_task(audit.close())
    await _cancel_caller_while_it_waits_for(caller, child)


async def test_call_with_timeout_giving_up() -> None:
    clock = FakeClock()
    entered, cancelled, finish = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_call() -> int:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            await finish.wait()  # cleaning up takes a while
            raise
        return 0

    caller = asyncio.create_task(call_with_timeout(slow_call, 5.0, clock))
    await entered.wait()
    await clock.tick(5.0)  # the time limit passes: it cancels the call and waits for it
    await cancelled.wait()
    assert not caller.done()
    caller.cancel()  # the caller itself is cancelled while it waits
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await caller  # not asyncio.TimeoutError: the caller's cancellation wins
    assert caller.cancelled()


async def test_call_with_timeout_still_times_out() -> None:
    clock = FakeClock()
    entered = asyncio.Event()

    async def never() -> int:
        entered.set()
        await asyncio.Event().wait()
        return 0

    caller = asyncio.create_task(call_with_timeout(never, 5.0, clock))
    await entered.wait()
    await clock.tick(5.0)
    with pytest.raises(asyncio.TimeoutError):
        await caller
