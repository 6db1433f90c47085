"""Follow one prompt to its end through a hub subscription, reconciling with ``/history`` and
``/queue`` when the websocket was away.

``follow_prompt`` returns an :class:`Outcome` once the prompt's end is known: from the first
terminal event (then the history entry is fetched; ComfyUI stores it just before its final
``executing`` with ``node: None``, so right after ``execution_success`` it may briefly be
missing), or after a :class:`~bot.comfy.events.Reconnected` from ``/history``; if the prompt is
neither in history nor in the queue after a reconnect, it is ``lost`` (e.g. the server restarted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot.comfy.client import ComfyClient
from bot.comfy.errors import ComfyError
from bot.comfy.events import (
    Event,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionSuccess,
    Reconnected,
    is_terminal,
)
from bot.comfy.hub import Subscription
from bot.comfy.models import HistoryEntry

log = logging.getLogger(__name__)

OutcomeStatus = Literal["success", "error", "interrupted", "lost"]


@dataclass(frozen=True)
class Outcome:
    """How a prompt ended. ``entry`` is its history entry when the server still has it."""

    prompt_id: str
    status: OutcomeStatus
    entry: HistoryEntry | None
    error: ExecutionError | None = None

    @property
    def message(self) -> str | None:
        """A short technical reason for a non-success (no URL)."""
        if self.status == "success":
            return None
        if self.error is not None:
            return f"{self.error.node_type or 'node'} #{self.error.node_id}: {self.error.exception_type}: {self.error.exception_message.strip()}"
        if self.entry is not None:
            return self.entry.error_message()
        return "the server no longer knows this prompt"


def _status_of(entry: HistoryEntry) -> OutcomeStatus:
    if entry.interrupted:
        return "interrupted"
    return "success" if entry.succeeded else "error"


async def _history(client: ComfyClient, prompt_id: str, attempts: int, delay: float) -> HistoryEntry | None:
    for attempt in range(attempts):
        entry = await client.get_history_entry(prompt_id)
        if entry is not None or attempt == attempts - 1:
            return entry
        await asyncio.sleep(delay)
    return None


async def reconcile(client: ComfyClient, prompt_id: str, *, history_delay: float = 0.05) -> Outcome | None:
    """What the server knows of a prompt without its websocket events.

    Its ending from ``/history``; ``None`` while it is still queued or running; ``lost`` when
    the server knows nothing of it (e.g. it restarted). Used after a reconnect and on recovery.
    """
    entry = await client.get_history_entry(prompt_id)
    if entry is not None:
        return Outcome(prompt_id, _status_of(entry), entry)
    if (await client.get_queue()).contains(prompt_id):
        return None
    entry = await _history(client, prompt_id, 3, history_delay)  # it may have just ended
    if entry is not None:
        return Outcome(prompt_id, _status_of(entry), entry)
    return Outcome(prompt_id, "lost", None)


async def follow_prompt(
    client: ComfyClient,
    sub: Subscription,
    *,
    on_event: Callable[[Event], Awaitable[None]] | None = None,
    history_attempts: int = 20,
    history_delay: float = 0.05,
    silence_check: float | None = 30.0,
) -> Outcome:
    """Consume ``sub`` until the prompt's end is known; ``on_event`` sees every event first.

    After ``silence_check`` seconds without an event the server is asked (``/history``,
    ``/queue``) whether the prompt ended unseen; ``None`` never asks.
    Wrap the call in ``asyncio.timeout`` for a job time limit. HTTP errors while reconciling
    (:class:`~bot.comfy.errors.ComfyError`) propagate to the caller, and so does a plain
    ``ComfyError`` when the subscription is closed (e.g. by ``hub.close()``) before the end.
    """
    prompt_id = sub.prompt_id
    while True:
        try:
            event = await sub.get(timeout=silence_check)
        except StopAsyncIteration:
            break
        except TimeoutError:
            # A long silence is normal (a checkpoint loading, a long queue), but the socket may
            # also have missed the end: ask the server, and keep waiting if it is still queued.
            try:
                outcome = await reconcile(client, prompt_id, history_delay=history_delay)
            except ComfyError as exc:  # unreachable now: the hub's reconnect will tell
                log.debug("prompt %s: cannot ask the server during a silence: %s", prompt_id, exc)
                continue
            if outcome is not None:
                log.info("prompt %s ended while its websocket was silent (%s)", prompt_id, outcome.status)
                return outcome
            continue
        if on_event is not None:
            await on_event(event)
        if isinstance(event, Reconnected):
            outcome = await reconcile(client, prompt_id, history_delay=history_delay)
            if outcome is None:
                log.debug("prompt %s still queued or running after a reconnect", prompt_id)
                continue
            return outcome
        if is_terminal(event):
            entry = await _history(client, prompt_id, history_attempts, history_delay)
            if isinstance(event, ExecutionError):
                return Outcome(prompt_id, "error", entry, event)
            if isinstance(event, ExecutionInterrupted):
                return Outcome(prompt_id, "interrupted", entry)
            if isinstance(event, ExecutionSuccess):
                return Outcome(prompt_id, "success", entry)
            # executing with node None came first: history decides
            if entry is not None:
                return Outcome(prompt_id, _status_of(entry), entry)
            return Outcome(prompt_id, "lost", None)
    raise ComfyError(client.name, "the subscription was closed before the prompt ended (hub closed?)")
