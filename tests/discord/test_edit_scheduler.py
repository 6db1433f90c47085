"""The status-edit scheduler: progress edits paced (interval, message and channel budgets), nothing
sent that changes nothing visible, and final edits sent at once, last."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.discord.edit_scheduler import EditPacing, EditScheduler
from standins.wait import wait_until

# Discord's shape of limits, scaled down so each test takes well under a second.
PACING = EditPacing(running_interval=0.15, waiting_interval=0.5, channel_edits=2, channel_window=0.6,
                    message_edits=2, message_window=0.5)

Sent = list[tuple[str, float]]


@pytest.fixture
async def scheduler() -> AsyncIterator[EditScheduler]:
    scheduler = EditScheduler(pacing=PACING)
    scheduler.start()
    yield scheduler
    await scheduler.close(flush=False)


def recorder(sent: Sent) -> Callable[[str], Callable[[], Awaitable[None]]]:
    def edit(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            sent.append((name, time.monotonic()))
        return run
    return edit


def names(sent: Sent) -> list[str]:
    return [name for name, _ in sent]


async def test_a_final_edit_skips_the_budgets_and_replaces_a_pending_progress_edit(scheduler: EditScheduler) -> None:
    sent: Sent = []
    edit = recorder(sent)
    scheduler.post("a", 1, edit("a"))
    scheduler.post("b", 1, edit("b"))
    await wait_until(lambda: len(sent) == 2, timeout=2, what="two progress edits")
    scheduler.post("c", 1, edit("c progress"))  # the channel's budget (2 per 0.6 s) is used up
    await asyncio.sleep(0.1)
    assert names(sent) == ["a", "b"]
    posted = time.monotonic()
    scheduler.post("c", 1, edit("c final"), final=True)
    await wait_until(lambda: len(sent) == 3, timeout=2, what="the final edit")
    assert names(sent) == ["a", "b", "c final"] and sent[-1][1] - posted < 0.05
    await asyncio.sleep(0.7)  # the replaced progress edit never goes out, even once the budget allows
    assert names(sent) == ["a", "b", "c final"]
    assert scheduler.per_job_counts()["scheduler_messages"] == 2  # "c" is dropped after its final edit


async def test_a_final_edit_lands_after_an_edit_of_the_same_message_in_flight(scheduler: EditScheduler) -> None:
    sent: Sent = []
    release = asyncio.Event()

    async def slow() -> None:
        sent.append(("progress", time.monotonic()))
        await release.wait()
        sent.append(("progress answered", time.monotonic()))

    scheduler.post("m", 1, slow)
    await wait_until(lambda: sent, timeout=2, what="the progress edit")
    scheduler.post("m", 1, recorder(sent)("final"), final=True)
    await asyncio.sleep(0.05)
    assert names(sent) == ["progress"]
    release.set()
    await wait_until(lambda: len(sent) == 3, timeout=2, what="the final edit")
    assert names(sent) == ["progress", "progress answered", "final"]
    assert sent[2][1] - sent[1][1] < 0.05


async def test_nothing_is_sent_that_changes_nothing_visible(scheduler: EditScheduler) -> None:
    sent: Sent = []
    edit = recorder(sent)
    scheduler.post("m", 1, edit("one"), shown=("one", True))
    await wait_until(lambda: sent, timeout=2, what="the first edit")
    scheduler.post("m", 1, edit("one again"), shown=("one", True))
    scheduler.post("n", 2, edit("n one"), shown=("one", True))  # another message: sent
    await asyncio.sleep(0.3)
    assert names(sent) == ["one", "n one"]
    scheduler.post("m", 1, edit("two"), shown=("two", True))
    scheduler.post("m", 1, edit("one once more"), shown=("one", True))  # back to what it shows: "two" is dropped
    await asyncio.sleep(0.3)
    assert names(sent) == ["one", "n one"]
    scheduler.post("m", 1, edit("three"), shown=("three", False))
    await wait_until(lambda: len(sent) == 3, timeout=2, what="a visible change")


async def test_progress_edits_of_one_message_keep_a_token_for_the_final() -> None:
    """At most ``message_edits`` progress edits per ``message_window`` (Discord: 5 per 2 s per
    interaction token, one kept for the final), however often the message changes."""
    pacing = EditPacing(running_interval=0.05, waiting_interval=0.5, channel_edits=50, channel_window=0.6,
                        message_edits=3, message_window=0.6)
    scheduler = EditScheduler(pacing=pacing)
    scheduler.start()
    sent: Sent = []
    edit = recorder(sent)
    start = time.monotonic()
    try:
        for i in range(12):
            scheduler.post(("m",), 1, edit(f"step {i}"), shown=(f"step {i}", True))
            await asyncio.sleep(0.04)
        in_first_window = [t for _, t in sent if t - start < pacing.message_window - 0.05]
        assert len(in_first_window) == pacing.message_edits
        scheduler.post(("m",), 1, edit("final"), final=True)
        await wait_until(lambda: names(sent)[-1] == "final", timeout=1, what="the final edit")
        assert sent[-1][1] - start < pacing.message_window  # not held back by the message's budget
    finally:
        await scheduler.close(flush=False)
