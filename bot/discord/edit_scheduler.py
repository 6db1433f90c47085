"""One scheduler for every status-message edit, paced to stay inside Discord's rate limits.

Status messages change often (queue position, step k of n), but Discord allows only a
few edits per channel every few seconds. Producers call :meth:`EditScheduler.post` with
the latest rendering of a message; the scheduler keeps only the newest one per message
and sends it when both the message's own interval (fast while running, slow while
waiting) and the channel's budget allow. A final rendering (``final=True``) is never
dropped and goes out as soon as the channel budget allows, so the last state is always
shown. The edit itself is an async callable, so this module needs no discord import.
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


@dataclass
class _MessageState:
    last_sent: float = float("-inf")
    pending: _Pending | None = None
    sending: bool = False


@dataclass
class EditPacing:
    """How often edits may go out."""

    running_interval: float = 1.5
    waiting_interval: float = 6.0
    channel_edits: int = 4
    channel_window: float = 5.0


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

    def post(self, key: Hashable, channel_id: int, edit: EditFn, *, waiting: bool = False, final: bool = False) -> None:
        """Queue the newest rendering of message ``key``; an older unsent one is replaced."""
        state = self._messages.setdefault(key, _MessageState())
        if state.pending is not None and state.pending.final and not final:
            return  # a final state is never replaced by an older kind of update
        interval = self.pacing.waiting_interval if waiting else self.pacing.running_interval
        state.pending = _Pending(channel_id=channel_id, edit=edit, interval=interval, final=final)
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

    def _next_due(self, now: float) -> tuple[list[Hashable], float | None]:
        """Messages that may be sent now (finals first, then oldest), and the next wake-up time."""
        due: list[tuple[bool, float, Hashable]] = []
        soonest: float | None = None
        for key, state in self._messages.items():
            pending = state.pending
            if pending is None or state.sending:
                continue
            ready = now if pending.final else state.last_sent + pending.interval
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
        self._channels.setdefault(pending.channel_id, _ChannelBudget()).sent.append(now)
        task = asyncio.create_task(self._do_edit(key, state, pending))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _do_edit(self, key: Hashable, state: _MessageState, pending: _Pending) -> None:
        try:
            await pending.edit()
            self.sent_count += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log_failure(log, logging.WARNING, "status edit for %s failed", key)
        finally:
            state.sending = False
            if pending.final and state.pending is None:
                self._messages.pop(key, None)
            self._wake.set()
