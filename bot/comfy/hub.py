"""``ComfyHub``: ONE websocket per ComfyUI server, shared by every job, routed by ``prompt_id``.

ComfyUI sends execution events only to the socket whose clientId submitted the prompt, so the
clientId is chosen once per server and persisted (:func:`bot.comfy.client_id.load_or_create_client_id`), then reused
across reconnects and restarts. Subscribe to a prompt id *before* posting it (the bot chooses its
own prompt ids); events of a prompt nobody subscribed to yet (previews excepted) are kept briefly, so subscribing
right after ``POST /prompt`` works too. The hub reconnects with backoff until closed; after a
reconnect it delivers :class:`~bot.comfy.events.Reconnected` to every open subscription and calls
the ``on_reconnect`` callbacks, because events sent while it was away are lost. ComfyUI then
replays the current node as ``executing`` without a ``prompt_id``; the hub routes it to the
prompt it saw executing before the drop (if still followed), so a follower sees the node.
Unexpected failures it survives are logged with ``exc_info``; how much of a traceback reaches the
log is the application's choice (its log filter).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp

from bot.comfy.client import ComfyClient
from bot.comfy.events import (
    Event,
    Executing,
    ExecutionStart,
    FeatureFlags,
    PreviewImage,
    Reconnected,
    StatusEvent,
    event_prompt_id,
    is_terminal,
    parse_binary,
    parse_text,
)

log = logging.getLogger(__name__)

FEATURE_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}

StatusCallback = Callable[[StatusEvent], Awaitable[None]]
EventObserver = Callable[[Event], None]
ReconnectCallback = Callable[[], Awaitable[None]]

_CLOSED = object()


class Subscription:
    """The events of one prompt, as an async iterator backed by a queue. ``close()`` ends it."""

    def __init__(self, hub: ComfyHub, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self._hub = hub
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    def __repr__(self) -> str:
        return f"Subscription(prompt_id={self.prompt_id!r}, closed={self.closed})"

    def _put(self, event: Event) -> None:
        if not self.closed:
            self._queue.put_nowait(event)

    def _end(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(_CLOSED)

    def close(self) -> None:
        """Stop receiving; a pending or later ``get`` ends the iteration."""
        self._hub._unsubscribe(self)
        self._end()

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; ``StopAsyncIteration`` once closed, ``TimeoutError`` after ``timeout``."""
        if timeout is None:
            item = await self._queue.get()
        else:
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # stay ended for later calls
            raise StopAsyncIteration
        return cast(Event, item)

    def pending(self) -> int:
        return self._queue.qsize()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class ComfyHub:
    """One websocket to one ComfyUI server, shared by all jobs."""

    def __init__(
        self,
        client: ComfyClient,
        session: aiohttp.ClientSession,
        client_id: str,
        *,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        heartbeat: float | None = 30.0,
        buffer_seconds: float = 30.0,
        buffer_events: int = 500,
        buffer_prompts: int = 32,
        stable_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._session = session
        self.client_id = client_id
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.heartbeat = heartbeat
        self.buffer_seconds = buffer_seconds
        self.buffer_events = buffer_events
        self.buffer_prompts = buffer_prompts
        self.stable_after = stable_after  # a connection that lived this long resets the backoff
        self._clock = clock
        self._subs: dict[str, list[Subscription]] = {}
        self._buffer: dict[str, deque[tuple[float, Event]]] = {}
        self._status_cbs: list[StatusCallback] = []
        self._reconnect_cbs: list[ReconnectCallback] = []
        self._observers: list[EventObserver] = []
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self.queue_remaining: int | None = None
        self.server_features: dict[str, Any] = {}
        self.executing_prompt: str | None = None
        # The prompt seen executing when the previous socket went away: the target of the
        # ``executing`` replay (no prompt_id) that ComfyUI sends right after a reconnect.
        self._replay_prompt: str | None = None
        self.connections = 0  # successful connections so far
        self.last_error: str | None = None  # why the last connection attempt failed (no URL)

    def __repr__(self) -> str:
        return f"ComfyHub(server={self.client.name!r}, connected={self.connected})"

    @property
    def name(self) -> str:
        return self.client.name

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def connected_event(self) -> asyncio.Event:
        return self._connected

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until the socket is up; ``False`` if it is not within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the reader in the background. Never fails: a down server is retried."""
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"comfy-hub-{self.client.name}")

    async def close(self) -> None:
        """Close the socket, stop the reader and end every subscription."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the caller itself is being cancelled, not only the reader
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            await ws.close()
        self._connected.clear()
        for subs in list(self._subs.values()):
            for sub in subs:
                sub._end()
        self._subs.clear()
        self._buffer.clear()

    async def __aenter__(self) -> ComfyHub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ subscriptions and callbacks

    def subscribe(self, prompt_id: str) -> Subscription:
        """Events of ``prompt_id`` (already-buffered ones first). Subscribe before posting."""
        sub = Subscription(self, prompt_id)
        if self._closing:
            sub._end()
            return sub
        self._subs.setdefault(prompt_id, []).append(sub)
        self._prune_buffer()
        for _, event in self._buffer.pop(prompt_id, ()):
            sub._put(event)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.prompt_id)
        if subs and sub in subs:
            subs.remove(sub)
            if not subs:
                del self._subs[sub.prompt_id]

    def per_prompt_counts(self) -> dict[str, int]:
        """What the hub holds per prompt: open subscriptions, and prompts with buffered events
        (those older than ``buffer_seconds`` are dropped first; at most ``buffer_prompts``)."""
        self._prune_buffer()
        return {
            "hub_subscriptions": sum(len(subs) for subs in self._subs.values()),
            "hub_buffered_prompts": len(self._buffer),
        }

    def on_status(self, callback: StatusCallback) -> None:
        """``await callback(StatusEvent)`` on every status broadcast (keep it quick)."""
        self._status_cbs.append(callback)

    def on_event(self, observer: EventObserver) -> None:
        """``observer(event)`` for every event of a prompt (any prompt, followed or not), before it
        is routed; for measuring, e.g. run times. Keep it quick; what it raises is logged."""
        self._observers.append(observer)

    def on_reconnect(self, callback: ReconnectCallback) -> None:
        """``await callback()`` after every reconnect (not the first connection)."""
        self._reconnect_cbs.append(callback)

    # ------------------------------------------------------------ the reader

    def _backoff(self, attempt: int) -> float:
        delay = min(self.reconnect_max, self.reconnect_min * float(2 ** min(attempt, 30)))
        return delay * (0.5 + random.random() / 2)

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                ws = await self._connect()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                delay = self._backoff(attempt)
                attempt += 1
                status = getattr(exc, "status", None)
                self.last_error = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
                level = logging.WARNING if status in (401, 403) or attempt == 5 else logging.INFO
                log.log(level, "websocket to %s failed (%s); retrying in %.1fs", self.client.name, self.last_error, delay)
                await asyncio.sleep(delay)
                continue
            connected_at = self._clock()
            try:
                await self._on_connected(ws)
                await self._read(ws)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.info("websocket to %s lost (%s)", self.client.name, type(exc).__name__)
            except Exception:
                log.error("websocket reader for %s failed; reconnecting", self.client.name, exc_info=True)
            finally:
                self._connected.clear()
                self._ws = None
                if not ws.closed:
                    await asyncio.shield(ws.close())
            if not self._closing:
                # A socket that keeps closing right after the handshake (a proxy, a crashing
                # server) backs off like a refused one instead of reconnecting in a tight loop.
                attempt = 0 if self._clock() - connected_at >= self.stable_after else attempt + 1
                delay = self._backoff(attempt)
                log.info("websocket to %s closed; reconnecting in %.1fs", self.client.name, delay)
                await asyncio.sleep(delay)

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        async with asyncio.timeout(self.client.timeout):
            return await self._session.ws_connect(
                self.client.ws_url(self.client_id),
                headers=self.client.auth_headers(),
                heartbeat=self.heartbeat,
                max_msg_size=64 * 1024 * 1024,
                autoping=True,
            )

    async def _on_connected(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_str(json.dumps(FEATURE_FLAGS))
        self._ws = ws
        self.connections += 1
        reconnect = self.connections > 1
        self._replay_prompt = self.executing_prompt if reconnect else None
        self.executing_prompt = None
        self.last_error = None
        self._connected.set()
        log.info("websocket to %s connected%s", self.client.name, " again" if reconnect else "")
        if reconnect or self._subs:
            for prompt_id, subs in list(self._subs.items()):
                for sub in list(subs):
                    sub._put(Reconnected(prompt_id))
        if reconnect:
            for callback in list(self._reconnect_cbs):
                try:
                    await callback()
                except Exception:
                    log.error("on_reconnect callback failed", exc_info=True)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.ERROR:
                log.info("websocket to %s errored: %s", self.client.name, type(ws.exception()).__name__)
                break
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                continue
            try:
                event = parse_text(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else parse_binary(msg.data)
            except Exception:  # a custom node's odd message must not cost the connection
                log.debug("unparseable websocket frame from %s ignored", self.client.name, exc_info=True)
                continue
            if event is None:  # unknown types (custom nodes, logs, progress_text, ...) are ignored
                continue
            if isinstance(event, PreviewImage) and event.prompt_id is None and self.executing_prompt is not None:
                event = PreviewImage(event.image, event.image_type, event.node_id, self.executing_prompt)
            await self._dispatch(event)

    async def _dispatch(self, event: Event) -> None:
        if isinstance(event, StatusEvent):
            if event.queue_remaining is not None:
                self.queue_remaining = event.queue_remaining
            for callback in list(self._status_cbs):
                try:
                    await callback(event)
                except Exception:
                    log.error("on_status callback failed", exc_info=True)
            return
        if isinstance(event, FeatureFlags):
            self.server_features = event.flags
            return
        prompt_id = event_prompt_id(event)
        if prompt_id is None and isinstance(event, Executing) and event.node is not None:
            event = self._route_replay(event)
            prompt_id = event.prompt_id
        self._replay_prompt = None  # the replay is the first execution message, or never
        if prompt_id is None:
            log.debug("event without prompt id dropped: %s", type(event).__name__)
            return
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.error("on_event observer failed", exc_info=True)
        if isinstance(event, ExecutionStart) or (isinstance(event, Executing) and event.node is not None):
            self.executing_prompt = prompt_id
        elif is_terminal(event) and self.executing_prompt == prompt_id:
            self.executing_prompt = None
        subs = self._subs.get(prompt_id)
        if subs:
            for sub in list(subs):
                sub._put(event)
        elif isinstance(event, PreviewImage):
            pass  # big, and stale by the time anyone subscribes
        elif isinstance(event, Executing) and event.node is None and prompt_id not in self._buffer:
            # A prompt's very last message, after its follower already concluded from the
            # terminal event and left: nobody will subscribe to it again, so nothing is kept.
            # (A prompt nobody has subscribed to yet has its earlier events buffered.)
            pass
        else:
            self._remember(prompt_id, event)

    def _route_replay(self, event: Executing) -> Executing:
        """ComfyUI replays the current node without a prompt_id right after a reconnect, and
        only to the clientId of the prompt running then. Give it to the prompt this hub saw
        executing before the drop, if someone still follows it and nothing else came first;
        that prompt's follower has already got ``Reconnected`` and reconciles if it ended."""
        target = self._replay_prompt
        if target is None or target not in self._subs:
            return event
        return Executing(target, event.node, event.display_node)

    def _remember(self, prompt_id: str, event: Event) -> None:
        now = self._clock()
        self._prune_buffer(now)
        queue = self._buffer.get(prompt_id)
        if queue is None:
            while len(self._buffer) >= self.buffer_prompts:
                self._buffer.pop(next(iter(self._buffer)))
            queue = self._buffer[prompt_id] = deque(maxlen=self.buffer_events)
        queue.append((now, event))

    def _prune_buffer(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        horizon = now - self.buffer_seconds
        for prompt_id in list(self._buffer):
            queue = self._buffer[prompt_id]
            while queue and queue[0][0] < horizon:
                queue.popleft()
            if not queue:
                del self._buffer[prompt_id]
