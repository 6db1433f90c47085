"""Test control of the ComfyUI test server: gates that hold back a chosen response until released.

Not a ComfyUI feature. A test (in another process, the server may run on its own) arms gates
and reads what ran through routes under ``/_standin/`` (see :func:`add_control_routes`;
:mod:`standins.comfy_server.control` is the client). A gate holds the first ``times``
matching arrivals (1 by default) and lets later ones through; each held arrival waits until
the gate is released.

Points where a gate can hold:

- ``request`` with ``stage="before"``: an HTTP request (``method``, ``path`` without the
  prefix; ``/api/x`` matches ``/x``) is held before its handler runs. Released with
  ``drop=True`` it is never handled and its connection is closed, as if it never arrived.
- ``request`` with ``stage="after"``: the handler ran (the image is saved, the prompt is
  queued, the file is read) but the answer is held back. ``drop=True`` closes the connection
  instead of answering.
- ``start``: the next queued prompt stays in ComfyUI's queue (the engine does not take it).
- ``step``: a running prompt stops after its ``step``-th progress step (any node's ticks count).
- ``ws``: from the first websocket message of type ``event`` (e.g. ``execution_success``)
  on, everything sent to that socket is held back; on release it goes to that socket if it
  is still open, else it is lost (as for a client that went away). The engine is not slowed:
  the history entry is written as usual.

What ran is kept too: how many times the engine started each prompt (:attr:`Gates.runs`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Gate", "Gates", "add_control_routes", "CONTROL_PREFIX"]

CONTROL_PREFIX = "/_standin"
POINTS = ("request", "start", "step", "ws")


@dataclass
class Gate:
    """One armed gate (see the module docstring for the points)."""

    id: str
    point: str
    method: str = "*"
    path: str = "*"
    stage: str = "after"
    step: int | None = None
    event: str | None = None
    times: int = 1
    hits: int = 0
    held: list[dict[str, Any]] = field(default_factory=list)  # what each held arrival was
    withheld: int = 0  # websocket messages held back so far (point "ws")
    drop: bool = False
    _arrived: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def wants(self) -> bool:
        return not self.released and self.hits < self.times

    def take(self, info: dict[str, Any]) -> None:
        self.hits += 1
        self.held.append(info)
        self._arrived.set()

    async def wait_release(self) -> bool:
        """Wait for the release; False when the arrival is to be dropped."""
        await self._released.wait()
        return not self.drop

    async def wait_held(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def release(self, *, drop: bool = False) -> None:
        self.drop = drop
        self._released.set()

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "point": self.point, "method": self.method, "path": self.path, "stage": self.stage,
                "step": self.step, "event": self.event, "times": self.times, "hits": self.hits,
                "held": list(self.held), "withheld": self.withheld, "released": self.released, "drop": self.drop}


@dataclass
class _HeldSocket:
    gate: Gate
    messages: list[str] = field(default_factory=list)


class Gates:
    """The gates of one server, and what its engine ran."""

    def __init__(self) -> None:
        self.gates: dict[str, Gate] = {}
        self.runs: dict[str, int] = {}  # prompt id -> times the engine started it
        self._ids = itertools.count(1)
        self._held_sockets: dict[int, _HeldSocket] = {}  # id(ws) -> held messages
        self._flushes: set[asyncio.Task[None]] = set()

    def add(self, point: str, **spec: Any) -> Gate:
        if point not in POINTS:
            raise ValueError(f"unknown gate point {point!r} (one of {', '.join(POINTS)})")
        if point == "request" and spec.get("stage", "after") not in ("before", "after"):
            raise ValueError("stage must be 'before' or 'after'")
        gate = Gate(id=str(next(self._ids)), point=point, **spec)
        gate.method = gate.method.upper()
        self.gates[gate.id] = gate
        return gate

    def release_all(self, *, drop: bool = False) -> None:
        for gate in self.gates.values():
            if not gate.released:
                gate.release(drop=drop)

    def _first(self, point: str, match: Callable[[Gate], bool]) -> Gate | None:
        for gate in self.gates.values():
            if gate.point == point and gate.wants() and match(gate):
                return gate
        return None

    # -- HTTP requests

    def request_gate(self, method: str, path: str, stage: str) -> Gate | None:
        plain = path[4:] if path.startswith("/api/") else path
        return self._first("request", lambda g: g.stage == stage and g.method in ("*", method)
                           and (fnmatch.fnmatchcase(plain, g.path) or fnmatch.fnmatchcase(path, g.path)))

    async def around_request(self, request: web.Request, path: str,
                             handler: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Run ``handler`` through any request gate armed for this request."""
        info = {"method": request.method, "path": path, "query": request.query_string}
        gate = self.request_gate(request.method, path, "before")
        if gate is not None:
            gate.take(info)
            if not await gate.wait_release():
                return _dropped(request)
        response = await handler()
        gate = self.request_gate(request.method, path, "after")
        if gate is not None:
            gate.take(info | {"status": response.status})
            if not await gate.wait_release():
                return _dropped(request)
        return response

    # -- engine

    async def before_start(self, prompt_id: str) -> None:
        """The engine is about to take ``prompt_id`` from its queue."""
        gate = self._first("start", lambda g: True)
        if gate is not None:
            gate.take({"prompt_id": prompt_id})
            await gate.wait_release()

    def started(self, prompt_id: str) -> None:
        self.runs[prompt_id] = self.runs.get(prompt_id, 0) + 1

    async def after_step(self, prompt_id: str, steps: int) -> None:
        """A running prompt finished its ``steps``-th progress step."""
        gate = self._first("step", lambda g: g.step == steps)
        if gate is not None:
            gate.take({"prompt_id": prompt_id, "step": steps})
            await gate.wait_release()

    # -- websocket

    def hold_message(self, ws: Any, event: str, data: dict[str, Any], text: str) -> bool:
        """Whether this message to ``ws`` is held back (then it is kept for the release)."""
        held = self._held_sockets.get(id(ws))
        if held is None:
            gate = self._first("ws", lambda g: g.event == event)
            if gate is None:
                return False
            gate.take({"event": event, "prompt_id": data.get("prompt_id")})
            held = self._held_sockets[id(ws)] = _HeldSocket(gate)
            task = asyncio.ensure_future(self._flush_on_release(ws, held))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        held.messages.append(text)
        held.gate.withheld += 1
        return True

    async def _flush_on_release(self, ws: Any, held: _HeldSocket) -> None:
        deliver = await held.gate.wait_release()
        self._held_sockets.pop(id(ws), None)
        if not deliver:
            return
        for text in held.messages:
            if ws.closed:
                return
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        self.release_all(drop=True)
        for task in list(self._flushes):
            task.cancel()
        await asyncio.gather(*self._flushes, return_exceptions=True)


def _dropped(request: web.Request) -> web.Response:
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499, text="dropped by a test gate")


def add_control_routes(app: web.Application, gates: Gates, prefix: str = "") -> None:
    """``POST {CONTROL_PREFIX}/gates`` (a gate spec: ``point`` and its fields) -> ``{"id": ...}``;
    ``GET .../gates/{id}?wait=S`` -> the gate, after waiting up to S seconds for a held arrival;
    ``POST .../gates/{id}/release`` (``{"drop": bool}``); ``POST .../release-all``;
    ``GET .../runs`` -> ``{"runs": {prompt id: times started}}``."""
    base = prefix + CONTROL_PREFIX

    async def add(request: web.Request) -> web.Response:
        spec = await request.json()
        point = spec.pop("point", None)
        try:
            gate = gates.add(str(point), **spec)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(gate.describe())

    def find(request: web.Request) -> Gate:
        gate = gates.gates.get(request.match_info["gate_id"])
        if gate is None:
            raise web.HTTPNotFound(text="no such gate")
        return gate

    async def show(request: web.Request) -> web.Response:
        gate = find(request)
        wait = float(request.query.get("wait", "0"))
        if wait > 0:
            await gate.wait_held(wait)
        return web.json_response(gate.describe())

    async def release(request: web.Request) -> web.Response:
        gate = find(request)
        body = await request.json() if request.can_read_body else {}
        gate.release(drop=bool((body or {}).get("drop")))
        return web.json_response(gate.describe())

    async def release_all(request: web.Request) -> web.Response:
        gates.release_all()
        return web.json_response({"released": len(gates.gates)})

    async def runs(request: web.Request) -> web.Response:
        return web.json_response({"runs": dict(gates.runs)})

    app.router.add_post(base + "/gates", add)
    app.router.add_get(base + "/gates/{gate_id}", show)
    app.router.add_post(base + "/gates/{gate_id}/release", release)
    app.router.add_post(base + "/release-all", release_all)
    app.router.add_get(base + "/runs", runs)
