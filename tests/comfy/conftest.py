"""Fixtures for the bot.comfy tests: a shared session and tiny inline aiohttp servers.

``MiniComfy`` is a minimal, fully scripted ComfyUI look-alike (websocket by clientId, a few HTTP
routes, request log) for fault cases and for driving the hub frame by frame. The full test
server lives in ``standins/comfy_server`` and is used by the integration tests.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.comfy.client import ComfyClient
from bot.settings import ServerConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp app on 127.0.0.1, port 0; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def make_client(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> ComfyClient:
    server_kwargs = {k: kwargs.pop(k) for k in ("username", "password") if k in kwargs}
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("timeout", 2.0)
    return ComfyClient(session, ServerConfig(name="gpu-box", url=url, **server_kwargs), **kwargs)


class MiniComfy:
    """A scripted ComfyUI stand-in: tests push frames to sockets and set history answers."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.received: dict[str, list[Any]] = {}
        self.handshake_headers: list[dict[str, str]] = []
        self.connects: list[str] = []
        self.history: dict[str, Any] = {}
        self.queue: dict[str, Any] = {"queue_running": [], "queue_pending": []}
        self.posted: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        # notified on every request, connection and frame received: wait with ``wait_for``
        self.changed = asyncio.Condition()
        self.connected = self.changed  # the older name, kept for callers
        self.refuse_ws = False
        self.app = web.Application()
        for p in {prefix, prefix + "/api"}:
            self.app.router.add_get(p + "/ws", self._ws)
            self.app.router.add_post(p + "/prompt", self._prompt)
            self.app.router.add_get(p + "/history/{pid}", self._history)
            self.app.router.add_get(p + "/queue", self._queue)

    async def _note(self, request: tuple[str, str] | None = None) -> None:
        async with self.changed:
            if request is not None:
                self.requests.append(request)
            self.changed.notify_all()

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        await self._note(("GET", request.path))
        if self.refuse_ws:
            raise web.HTTPServiceUnavailable()
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.handshake_headers.append(dict(request.headers))
        self.received.setdefault(client_id, [])
        async with self.changed:
            self.sockets[client_id] = ws
            self.connects.append(client_id)
            self.changed.notify_all()
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}})
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.received[client_id].append(json.loads(msg.data))
                await self._note()
        if self.sockets.get(client_id) is ws:
            del self.sockets[client_id]
        return ws

    async def _prompt(self, request: web.Request) -> web.Response:
        await self._note(("POST", request.path))
        body = await request.json()
        self.posted.append(body)
        pid = body.get("prompt_id") or str(uuid.uuid4())
        return web.json_response({"prompt_id": pid, "number": len(self.posted), "node_errors": {}})

    async def _history(self, request: web.Request) -> web.Response:
        await self._note(("GET", request.path))
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _queue(self, request: web.Request) -> web.Response:
        await self._note(("GET", request.path))
        return web.json_response(self.queue)

    async def wait_for(self, predicate: Callable[[], object], what: str = "the condition", timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked on every request, connection and frame."""
        try:
            async with asyncio.timeout(timeout):
                async with self.changed:
                    await self.changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(f"MiniComfy: no {what} within {timeout:g} s; requests: {self.requests}") from None

    def count(self, method: str, path_end: str) -> int:
        """How many requests ``method`` made to a path ending with ``path_end``."""
        return sum(1 for m, p in self.requests if m == method and p.endswith(path_end))

    async def wait_connects(self, n: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: len(self.connects) >= n, f"connection number {n}", timeout)

    async def send(self, client_id: str, kind: str, data: dict[str, Any]) -> None:
        await self.sockets[client_id].send_json({"type": kind, "data": data})

    async def send_bytes(self, client_id: str, frame: bytes) -> None:
        await self.sockets[client_id].send_bytes(frame)

    async def drop(self, client_id: str) -> None:
        ws = self.sockets.pop(client_id)
        await ws.close()


@pytest.fixture
async def mini(serve: Serve) -> tuple[MiniComfy, str]:
    fake = MiniComfy()
    url = await serve(fake.app)
    return fake, url
