"""Follow one prompt to its end through a hub subscription, reconciling with ``/history`` and
``/queue`` when the websocket was away.

``follow_prompt`` returns an :class:`Outcome` once the prompt's end is known, with its history
entry. ComfyUI 0.8.0 ends a prompt in two steps: ``PromptExecutor.execute`` sends
``execution_success`` (or ``execution_error`` / ``execution_interrupted``) and returns; then its
worker writes the history entry (``task_done``, which also takes the prompt off the running
queue) and sends ``executing`` with ``node: None`` to the prompt's client. In between, with
``--disable-smart-memory``, it unloads every model, so the gap can last seconds. A follower
therefore takes the first terminal event as the end but waits for the entry: until that
prompt's ``executing``/``None`` (the entry is written by then), asking ``/history`` now and
then meanwhile, for as long as the caller lets it run (wrap it in the job's time limit). It
never reports ``success`` without the entry, whose outputs say where the result is.

After a :class:`~bot.comfy.events.Reconnected` the ending comes from ``/history``; a prompt that
is neither in history nor in the queue is ``lost`` (e.g. the server restarted), and so is a
success whose entry is gone even after the final ``executing`` (someone deleted it).
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
    Executing,
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
    history_poll_max: float = 1.0,
    silence_check: float | None = 30.0,
) -> Outcome:
    """Consume ``sub`` until the prompt's end is known; ``on_event`` sees every event first.

    After the first terminal event without a history entry yet, ``/history`` is asked every
    ``history_delay`` seconds ``history_attempts`` times, then every ``history_poll_max``
    seconds, until the entry appears or the prompt's final ``executing``/``None`` comes (see
    the module docstring); there is no other limit, so wrap the call in ``asyncio.timeout``
    (or the job's watchdog) for a job time limit.
    After ``silence_check`` seconds without an event the server is asked (``/history``,
    ``/queue``) whether the prompt ended unseen; ``None`` never asks.
    HTTP errors while reconciling (:class:`~bot.comfy.errors.ComfyError`) propagate to the
    caller, and so does a plain ``ComfyError`` when the subscription is closed (e.g. by
    ``hub.close()``) before the end.
    """
    prompt_id = sub.prompt_id
    ended: Event | None = None  # the first terminal event, while its history entry is awaited
    polls = 0
    while True:
        if ended is None:
            timeout = silence_check
        else:
            timeout = history_delay if polls < history_attempts else max(history_delay, history_poll_max)
        try:
            event = await sub.get(timeout=timeout)
        except StopAsyncIteration:
            break
        except TimeoutError:
            if ended is not None:
                polls += 1
                try:
                    entry = await client.get_history_entry(prompt_id)
                except ComfyError as exc:  # unreachable now: the hub's reconnect will tell
                    log.debug("prompt %s: cannot ask for its history entry: %s", prompt_id, exc)
                    continue
                if entry is not None:
                    return _ended_outcome(prompt_id, ended, entry)
                continue
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
            if ended is not None and outcome.entry is not None:
                return _ended_outcome(prompt_id, ended, outcome.entry)
            return outcome
        if not is_terminal(event):
            continue
        if isinstance(event, Executing):
            # The prompt's very last message: its history entry was written just before it.
            entry = await _history(client, prompt_id, 3, history_delay)
            if entry is None:
                return _no_entry_outcome(prompt_id, ended)
            return _ended_outcome(prompt_id, ended, entry)
        if ended is not None:
            continue  # a second ending of the same kind: keep waiting for the entry
        ended = event
        try:
            entry = await client.get_history_entry(prompt_id)
        except ComfyError as exc:  # asked again below; a reconnect reconciles
            log.debug("prompt %s: cannot ask for its history entry: %s", prompt_id, exc)
            entry = None
        if entry is not None:
            return _ended_outcome(prompt_id, ended, entry)
        log.debug("prompt %s ended (%s); its history entry is not written yet", prompt_id, type(event).__name__)
    raise ComfyError(client.name, "the subscription was closed before the prompt ended (hub closed?)")


def _ended_outcome(prompt_id: str, ended: Event | None, entry: HistoryEntry) -> Outcome:
    """The outcome of a prompt whose history entry is known, from the first terminal event seen."""
    if isinstance(ended, ExecutionError):
        return Outcome(prompt_id, "error", entry, ended)
    if isinstance(ended, ExecutionInterrupted):
        return Outcome(prompt_id, "interrupted", entry)
    if isinstance(ended, ExecutionSuccess):
        return Outcome(prompt_id, "success", entry)
    return Outcome(prompt_id, _status_of(entry), entry)  # only the final executing was seen


def _no_entry_outcome(prompt_id: str, ended: Event | None) -> Outcome:
    """The prompt's final message came but its history entry is gone (deleted meanwhile)."""
    if isinstance(ended, ExecutionError):
        return Outcome(prompt_id, "error", None, ended)
    if isinstance(ended, ExecutionInterrupted):
        return Outcome(prompt_id, "interrupted", None)
    # never "success" without the outputs: the result cannot be found, as after a restart
    return Outcome(prompt_id, "lost", None)
