"""One scheduler for every status-message edit, paced to stay inside Discord's rate limits.

Status messages change often (queue position, step k of n), but Discord allows only a few
requests per interaction token (5 every 2 s) and the bot keeps its own budget per channel.
Producers call :meth:`EditScheduler.post` with the latest rendering of a message; the scheduler
keeps only the newest one per message and sends a *progress* edit when the message's own interval
(fast while running, slow while waiting), the message's budget (:attr:`EditPacing.message_edits`
per :attr:`EditPacing.message_window`, so Discord's bucket always has room for the final edit)
and the channel's budget allow. A rendering that shows what the message already shows
(``shown`` equal to the last one sent) is not sent, and drops an older one still waiting.

A *final* rendering (``final=True``: the result, or the notice that the job ended) is never dropped
and never waits for the bot's own pacing: it replaces any pending progress edit and goes out at
once, only after an edit of the same message still in flight (so it lands last); discord.py's own
handling of Discord's bucket is then the only brake. It still counts in the channel's budget, so
progress edits after it are paced. The edit itself is an async callable, so this module needs no
discord import.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from bot.clock import Clock, SystemClock
from bot.logs import log_failure
from bot.tasks import cancel_and_wait

log = logging.getLogger(__name__)

EditFn = Callable[[], Awaitable[None]]


@dataclass
class _Pending:
    channel_id: int
    edit: EditFn
    interval: float
    final: bool
    shown: Hashable | None = None


@dataclass
class _MessageState:
    last_sent: float = float("-inf")
    pending: _Pending | None = None
    sending: bool = False
    sent: deque[float] = field(default_factory=deque)  # when its recent progress edits went out
    shown: Hashable | None = None  # what the last edit sent shows (None: unknown)


@dataclass
class EditPacing:
    """How often progress edits may go out (final edits do not wait for any of these)."""

    running_interval: float = 1.5  #: seconds between two edits of a message while its job runs
    waiting_interval: float = 6.0  #: ... while it waits (in the bot's line or ComfyUI's queue)
    channel_edits: int = 4  #: edits per channel ...
    channel_window: float = 5.0  #: ... in any window this long
    #: Progress edits per message in any ``message_window``. Discord allows 5 requests per 2 s on an
    #: interaction's token; with at most 3 of them progress edits, the final edit finds the bucket
    #: open and does not empty it either (discord.py would then hold the call until the bucket
    #: resets, keeping the job "posting" although the member already sees the result).
    message_edits: int = 3
    message_window: float = 2.0


@dataclass
class _ChannelBudget:
    sent: deque[float] = field(default_factory=deque)


class EditScheduler:
    """Coalesces and paces edits to status messages."""

    def __init__(self, clock: Clock | None = None, pacing: EditPacing | None = None) -> None:
        self._clock = clock or SystemClock()
        self.pacing = pacing or EditPacing()
        self._messages: dict[Hashable, _MessageState] = {}
        self._channels: dict[int, _ChannelBudget] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.sent_count = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="edit-scheduler")

    async def close(self, *, flush: bool = True) -> None:
        if flush:
            await self.flush()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def post(self, key: Hashable, channel_id: int, edit: EditFn, *, waiting: bool = False, final: bool = False,
             shown: Hashable | None = None) -> None:
        """Queue the newest rendering of message ``key``; an older unsent one is replaced.

        ``shown`` describes what the edit makes visible (for example its text and buttons): a
        progress edit that shows what the message already shows is not sent. A final edit is sent
        at once unless an edit of the same message is still in flight (then right after it).
        """
        state = self._messages.setdefault(key, _MessageState())
        if state.pending is not None and state.pending.final and not final:
            return  # a final state is never replaced by an older kind of update
        if not final and shown is not None and shown == state.shown:
            state.pending = None  # nothing visible would change (and an older pending one is stale)
            return
        interval = self.pacing.waiting_interval if waiting else self.pacing.running_interval
        state.pending = _Pending(channel_id=channel_id, edit=edit, interval=interval, final=final, shown=shown)
        if final and not state.sending:
            self._send(key, state, self._clock.monotonic())  # no pacing, no loop round trip
            return
        self._wake.set()

    def forget(self, key: Hashable) -> None:
        """Drop what is kept for a message, its pending edit included (the message was deleted,
        or its job ended without a final edit through here)."""
        self._messages.pop(key, None)

    def per_job_counts(self) -> dict[str, int]:
        """What is kept per status message and per channel (channels with no edit inside the
        window are dropped first). A message is dropped after its final edit, or by :meth:`forget`."""
        self._prune_channels(self._clock.monotonic())
        return {
            "scheduler_messages": len(self._messages),
            "scheduler_edits_in_flight": len(self._inflight),
            "scheduler_channels": len(self._channels),
        }

    def _prune_channels(self, now: float) -> None:
        horizon = now - self.pacing.channel_window
        for channel_id in [c for c, b in self._channels.items() if not b.sent or b.sent[-1] <= horizon]:
            del self._channels[channel_id]

    def has_pending(self) -> bool:
        return any(s.pending is not None or s.sending for s in self._messages.values())

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every pending edit has been sent (used at shutdown and in tests)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.has_pending() and loop.time() < end:
            self._wake.set()
            await asyncio.sleep(0.05)

    def _channel_ready_at(self, channel_id: int, now: float) -> float:
        budget = self._channels.setdefault(channel_id, _ChannelBudget())
        window = self.pacing.channel_window
        while budget.sent and budget.sent[0] <= now - window:
            budget.sent.popleft()
        if len(budget.sent) < self.pacing.channel_edits:
            return now
        return budget.sent[0] + window

    def _message_ready_at(self, state: _MessageState, pending: _Pending, now: float) -> float:
        """When a progress edit of this message may go: after its interval and within its budget."""
        window = self.pacing.message_window
        while state.sent and state.sent[0] <= now - window:
            state.sent.popleft()
        ready = state.last_sent + pending.interval
        if len(state.sent) >= self.pacing.message_edits:
            ready = max(ready, state.sent[-self.pacing.message_edits] + window)
        return ready

    def _next_due(self, now: float) -> tuple[list[Hashable], float | None]:
        """Messages that may be sent now (finals first, then oldest), and the next wake-up time."""
        due: list[tuple[bool, float, Hashable]] = []
        soonest: float | None = None
        for key, state in self._messages.items():
            pending = state.pending
            if pending is None or state.sending:
                continue
            ready = now if pending.final else self._message_ready_at(state, pending, now)
            if ready <= now:
                due.append((not pending.final, state.last_sent, key))
            elif soonest is None or ready < soonest:
                soonest = ready
        due.sort(key=lambda item: (item[0], item[1]))
        return [key for _, _, key in due], soonest

    async def _run(self) -> None:
        while True:
            now = self._clock.monotonic()
            keys, soonest = self._next_due(now)
            for key in keys:
                state = self._messages.get(key)
                if state is None or state.pending is None:
                    continue
                if state.pending.final:  # never held back by the bot's own budgets
                    self._send(key, state, now)
                    continue
                channel_ready = self._channel_ready_at(state.pending.channel_id, now)
                if channel_ready > now:
                    soonest = channel_ready if soonest is None else min(soonest, channel_ready)
                    continue
                self._send(key, state, now)
            self._prune_channels(now)
            self._wake.clear()
            delay = None if soonest is None else max(0.01, soonest - self._clock.monotonic())
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the wake-up does, and this loop would then never end
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _send(self, key: Hashable, state: _MessageState, now: float) -> None:
        pending = state.pending
        assert pending is not None
        state.pending = None
        state.sending = True
        state.last_sent = now
        state.shown = pending.shown
        if not pending.final:
            state.sent.append(now)
        self._channels.setdefault(pending.channel_id, _ChannelBudget()).sent.append(now)
        task = asyncio.create_task(self._do_edit(key, state, pending))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _do_edit(self, key: Hashable, state: _MessageState, pending: _Pending) -> None:
        try:
            await pending.edit()
            self.sent_count += 1
        except asyncio.CancelledError:
            state.shown = None
            raise
        except Exception:
            state.shown = None  # what the message shows is not known any more
            log_failure(log, logging.WARNING, "status edit for %s failed", key)
        finally:
            state.sending = False
            if pending.final and state.pending is None:
                self._messages.pop(key, None)
            elif state.pending is not None and state.pending.final and self._messages.get(key) is state:
                self._send(key, state, self._clock.monotonic())  # the final was waiting for this one
            self._wake.set()
