"""ComfyTestServer: an aiohttp stand-in for ComfyUI 0.8.0 (HTTP, websocket, execution engine).

Behaviour follows the recordings in tests/fixtures/comfyui/. Construct, ``await start()``,
use ``url``, ``await stop()``.

Knobs (plain attributes, change them at any time):
- ``step_time``: seconds slept per progress step (KSampler step, VHS frame, websocket image).
- ``mpx_step_time``: seconds added to each KSampler step per frame-megapixel it samples (frames x
  the requested width x height / 1e6), as SVD's sampler does every frame at every step: with it a
  run's time grows with its frames and pixels (the wait estimate's tests).
- ``load_time``: seconds the checkpoint loader takes when it runs (loading the model: the first
  run, and any run whose loader is not cached), as a cold first run on a real server does.
- ``fail_at``: a class_type or node id; that node fails with ``execution_error``.
- ``drop_ws_after_steps``: close every websocket after this many progress steps of a job.
- ``http_faults``: {route path (without prefix, e.g. "/prompt" or "/api/prompt"): status int
  or "slow" or "cut-once"}; "slow" sleeps ``slow_seconds`` before answering normally;
  "cut-once" sends the headers and half the body, then drops the connection, once.
- ``history_delay``: seconds between a prompt's terminal message (``execution_success``,
  ``execution_error``, ``execution_interrupted``) and its history entry being written, which
  is followed at once by ``status`` and ``executing`` with ``node: null`` (ComfyUI's
  ``task_done``); the prompt stays in ``/queue`` as running until then. 0 (the default) is
  the recorded order with no gap (tests/fixtures/comfyui/ws-success-*.json).
- ``checkpoints``: checkpoint names ImageOnlyCheckpointLoader accepts.
- ``full_size``: render frames at the requested size instead of at most 128 px.
- ``video_seconds``: the video output node (``VHS_VideoCombine``, ``SaveVideo``, ``SaveAnimatedWEBP``,
  ``SaveAnimatedPNG``) takes at least this long, its encoding included, as a real one does on a
  GPU server (benchmarks; with ``full_size`` a 14-frame 1024x576 GIF is a few MB).
- ``timeline``: when not None (``record_timeline=True``), what the server did and when
  (``time.monotonic()``, the same clock in every process of the machine): each HTTP request
  received and its answer sent, each prompt queued, each ``execution_start``, ``executed``,
  ``execution_success`` / ``_error`` / ``_interrupted`` and final ``executing`` sent. Read it from
  another process at ``GET /_standin/timeline`` (:meth:`ComfyControl.timeline`). For benchmarks.
- ``requests``: list of (method, path) seen, path without the prefix.
- ``gates``: hold back a chosen response (a request, a queued prompt, a step, websocket
  messages) until released, and count what ran; tests reach them under ``/_standin/`` from
  another process (see ``gates.py`` and ``control.py``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import io
import json
import logging
import mimetypes
import os
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image

from .gates import CONTROL_PREFIX, Gates, add_control_routes
from .nodedefs import FIXTURES, Validator, is_link, load_node_definitions, with_dynamic_lists
from .nodes import NODES, NodeFailure, resolve_input_path

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"
VIDEO_NODES = frozenset({"VHS_VideoCombine", "SaveVideo", "SaveAnimatedWEBP", "SaveAnimatedPNG"})
TIMELINE_EVENTS = frozenset({"execution_start", "executed", "execution_success", "execution_error",
                             "execution_interrupted"})
MODEL_FOLDERS = ("checkpoints", "loras", "vae", "clip_vision", "controlnet", "upscale_models", "embeddings")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _recorded_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))["response"]["json"]


@dataclass
class QueueItem:
    """One queued prompt, in ComfyUI's 5-element list shape."""

    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]

    def __lt__(self, other: QueueItem) -> bool:
        return self.number < other.number


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    sid: str
    preview_metadata: bool = False


@dataclass
class _Run:
    item: QueueItem
    client_id: str | None
    messages: list[list[Any]] = field(default_factory=list)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    interrupted: bool = False
    steps: int = 0
    dropped: bool = False
    current_node: str | None = None
    start_time: int = 0


class Interrupted(Exception):
    """Raised inside a run when an interrupt was requested."""


class ComfyTestServer:
    """ComfyUI stand-in on 127.0.0.1. See the module docstring for knobs."""

    def __init__(
        self,
        root: Path,
        *,
        step_time: float = 0.0,
        checkpoints: tuple[str, ...] | list[str] = ("svd_xt_1_1.safetensors",),
        api_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        path_prefix: str = "",
        full_size: bool = False,
        without_nodes: tuple[str, ...] | list[str] = (),
        video_seconds: float = 0.0,
        record_timeline: bool = False,
        mpx_step_time: float = 0.0,
        load_time: float = 0.0,
    ) -> None:
        self.root = Path(root)
        self.step_time = step_time
        self.mpx_step_time = mpx_step_time
        self.load_time = load_time
        self.checkpoints = list(checkpoints)
        self.api_token = api_token
        self.basic_auth = basic_auth
        self.path_prefix = path_prefix.rstrip("/")
        self.full_size = full_size
        self.video_seconds = video_seconds
        self.timeline: list[dict[str, Any]] | None = [] if record_timeline else None
        self.fail_at: str | None = None
        self.drop_ws_after_steps: int | None = None
        self.http_faults: dict[str, int | str] = {}
        self.slow_seconds = 30.0
        self.history_delay = 0.0
        self.requests: list[tuple[str, str]] = []
        self.gates = Gates()  # test control under /_standin/ (see gates.py); not part of ComfyUI
        self.ws_opened = 0  # websocket connections accepted since construction (GET /_standin/websockets)
        self.port: int | None = None
        self._definitions = load_node_definitions()
        for class_type in without_nodes:  # as if its node pack were not installed
            self._definitions.pop(class_type, None)
        self._uninstalled: set[str] = set()
        self._validator = Validator(self._current_definitions, self._image_exists)
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self._reset_state()
        for sub in ("input", "output", "temp", "models"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ lifecycle

    def _reset_state(self) -> None:
        self._queue: list[QueueItem] = []
        self._running: QueueItem | None = None
        self._run: _Run | None = None
        self._history: dict[str, dict[str, Any]] = {}
        self._jobs_meta: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._number = 0
        self._sockets: list[_Socket] = []
        self._wakeup: asyncio.Event | None = asyncio.Event()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT plus the path prefix."""
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}{self.path_prefix}"

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:port (0 = ephemeral) and start the worker."""
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        app = web.Application(middlewares=[self._middleware], client_max_size=200 * 1024 * 1024)
        self._add_routes(app)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self._runner = runner
        server = site._server  # noqa: SLF001 - the only way to learn an ephemeral port
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self._worker = asyncio.create_task(self._worker_loop(), name="comfy-test-worker")
        logger.info("ComfyTestServer listening on %s", self.url)

    async def stop(self) -> None:
        """Stop the worker, close sockets, stop listening."""
        await self.gates.close()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.wait([self._worker])
            self._worker = None
        for sock in list(self._sockets):
            await sock.ws.close()
        self._sockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, lose_state: bool = True) -> None:
        """Stop and start again on the same port; with lose_state, queue/history/cache are gone."""
        port = self.port
        await self.stop()
        if lose_state:
            self._reset_state()
        elif self._running is not None:
            # the running job is lost like in a real crash; pending ones survive
            self._running = None
            self._run = None
        await self.start(port or 0)

    # ------------------------------------------------------------------ http plumbing

    def _add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("GET", "/ws", self._ws),
            ("GET", "/prompt", self._get_prompt),
            ("POST", "/prompt", self._post_prompt),
            ("GET", "/queue", self._get_queue),
            ("POST", "/queue", self._post_queue),
            ("POST", "/interrupt", self._post_interrupt),
            ("GET", "/history", self._get_history),
            ("GET", "/history/{prompt_id}", self._get_history_entry),
            ("POST", "/history", self._post_history),
            ("GET", "/view", self._view),
            ("POST", "/upload/image", self._upload_image),
            ("POST", "/upload/mask", self._upload_mask),
            ("GET", "/object_info", self._object_info),
            ("GET", "/object_info/{node_class}", self._object_info_one),
            ("GET", "/system_stats", self._system_stats),
            ("GET", "/features", self._features),
            ("GET", "/view_metadata/{folder_name}", self._view_metadata),
            ("GET", "/jobs", self._jobs),
            ("GET", "/jobs/{job_id}", self._job),
        ]
        for method, path, handler in routes:
            for full in (self.path_prefix + path, self.path_prefix + "/api" + path):
                if path.startswith("/jobs") and "/api" not in full:
                    continue
                app.router.add_route(method, full, handler)
        add_control_routes(app, self.gates, self.path_prefix)
        app.router.add_get(self.path_prefix + CONTROL_PREFIX + "/websockets", self._websocket_counts)
        app.router.add_get(self.path_prefix + CONTROL_PREFIX + "/timeline", self._get_timeline)

    async def _websocket_counts(self, request: web.Request) -> web.Response:
        """Test control: websockets accepted so far and open now (benchmarks check one per client)."""
        return web.json_response({"opened": self.ws_opened, "open": len(self._sockets)})

    def _mark(self, kind: str, **fields: Any) -> None:
        if self.timeline is not None:
            self.timeline.append({"t": time.monotonic(), "kind": kind, **fields})

    async def _get_timeline(self, request: web.Request) -> web.Response:
        """``GET /_standin/timeline[?since=T]``: the events recorded at or after T (see ``timeline``)."""
        since = float(request.query.get("since", "-inf"))
        events = [e for e in self.timeline or () if e["t"] >= since]
        return web.json_response({"recording": self.timeline is not None, "events": events})

    def _route_path(self, request: web.Request) -> str:
        path = request.path
        if self.path_prefix and path.startswith(self.path_prefix):
            path = path[len(self.path_prefix) :] or "/"
        return path

    def _authorized(self, request: web.Request) -> bool:
        if self.api_token is None and self.basic_auth is None:
            return True
        header = request.headers.get("Authorization", "")
        if self.api_token is not None and header == f"Bearer {self.api_token}":
            return True
        if self.basic_auth is not None and header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return (user, password) == self.basic_auth
        return False

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = self._route_path(request)
        if path.startswith(CONTROL_PREFIX + "/"):
            return await handler(request)  # test control: not recorded, never gated or faulted
        self.requests.append((request.method, path))
        if not self._authorized(request):
            return web.Response(status=401, text="401: Unauthorized")
        fault = self.http_faults.get(path)
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif fault == "cut-once":
            del self.http_faults[path]
            return await self._cut_answer(request, await handler(request))
        elif isinstance(fault, int):
            return web.Response(status=fault, text=f"{fault}: injected fault")
        if isinstance(request.match_info.http_exception, web.HTTPNotFound):
            return web.Response(status=404, content_type="application/octet-stream")
        if self.timeline is not None:
            return await self._timed(request, path, handler)
        return await self._answer(request, path, handler)

    async def _answer(self, request: web.Request, path: str,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """The handler's answer through the gates; a bare 500 page when it fails, as aiohttp's."""
        try:
            return await self.gates.around_request(request, path, lambda: handler(request))
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a real aiohttp server answers a bare 500 page
            logger.exception("handler failed for %s %s", request.method, path)
            return web.Response(status=500, text=INTERNAL_ERROR)

    async def _timed(self, request: web.Request, path: str,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Answer as usual, with the request's arrival and the end of its answer on the timeline
        (the answer is written here, so "sent" means its last byte went to the socket)."""
        query = dict(request.query)
        self._mark("request", stage="received", method=request.method, path=path, query=query)
        answer = await self._answer(request, path, handler)
        if not answer.prepared and not isinstance(answer, web.WebSocketResponse):
            await answer.prepare(request)
            await answer.write_eof()
        self._mark("request", stage="sent", method=request.method, path=path, query=query, status=answer.status)
        return answer

    @staticmethod
    async def _cut_answer(request: web.Request, answer: web.StreamResponse) -> web.StreamResponse:
        """Send ``answer``'s headers and half its body, then drop the connection."""
        body = answer.body if isinstance(answer, web.Response) and isinstance(answer.body, bytes) else b"{}" * 64
        cut = web.StreamResponse(status=answer.status, headers={"Content-Type": answer.content_type})
        cut.content_length = len(body)
        await cut.prepare(request)
        await cut.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return cut

    # ------------------------------------------------------------------ helpers

    def _input_files(self) -> list[str]:
        return sorted(p.name for p in self.input_dir.iterdir() if p.is_file())

    def pending_items(self) -> list[QueueItem]:
        """The prompts waiting in the server's queue (not the running one)."""
        return list(self._queue)

    def offer_only(self, class_type: str, input_name: str, values: list[str]) -> None:
        """A choice input of a node offers only ``values`` (an older node pack, say)."""
        spec = self._definitions[class_type]["input"]["required"][input_name]
        spec[0] = list(values)

    def uninstall(self, class_type: str) -> None:
        """New prompts and ``/object_info`` no longer see this node class (its pack was
        removed); prompts already accepted still run."""
        self._uninstalled.add(class_type)

    def _current_definitions(self) -> dict[str, dict[str, Any]]:
        defs = with_dynamic_lists(self._definitions, self._input_files(), self.checkpoints)
        for class_type in self._uninstalled:
            defs.pop(class_type, None)
        return defs

    def _image_exists(self, name: str) -> bool:
        try:
            return resolve_input_path(self.input_dir, name).is_file()
        except (OSError, ValueError):
            return False

    def _queue_remaining(self) -> int:
        return len(self._queue) + (1 if self._running is not None else 0)

    async def _send_json(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        text = json.dumps({"type": event, "data": data})
        if self.timeline is not None and (event in TIMELINE_EVENTS or (event == "executing" and data.get("node") is None)):
            self._mark("ws", event=event, prompt_id=data.get("prompt_id"), node=data.get("node"))
        for sock in list(self._sockets):
            if sid is not None and sock.sid != sid:
                continue
            if self.gates.hold_message(sock.ws, event, data, text):
                continue
            try:
                await sock.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                pass

    async def _send_status(self) -> None:
        await self._send_json("status", {"status": {"exec_info": {"queue_remaining": self._queue_remaining()}}}, None)

    # ------------------------------------------------------------------ websocket

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        sock = _Socket(ws=ws, sid=sid)
        self.ws_opened += 1
        # a reconnect with the same clientId replaces the old socket
        self._sockets = [s for s in self._sockets if s.sid != sid]
        self._sockets.append(sock)
        try:
            await ws.send_str(
                json.dumps(
                    {
                        "type": "status",
                        "data": {"status": {"exec_info": {"queue_remaining": self._queue_remaining()}}, "sid": sid},
                    }
                )
            )
            run = self._run
            if run is not None and run.client_id == sid and run.current_node is not None:
                await ws.send_str(json.dumps({"type": "executing", "data": {"node": run.current_node}}))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(payload, dict) and payload.get("type") == "feature_flags":
                    flags = payload.get("data") or {}
                    sock.preview_metadata = bool(flags.get("supports_preview_metadata"))
                    await ws.send_str(json.dumps({"type": "feature_flags", "data": _recorded_json("http-features.json")}))
        finally:
            if sock in self._sockets:
                self._sockets.remove(sock)
        return ws

    # ------------------------------------------------------------------ prompt / queue

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self._queue_remaining()}})

    async def _post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=500, text=INTERNAL_ERROR)
        if not isinstance(body, dict):
            return web.Response(status=500, text=INTERNAL_ERROR)
        if "number" in body:
            number: float = float(body["number"])
        else:
            number = self._number
            if body.get("front"):
                number = -number
            self._number += 1
        prompt = body.get("prompt")
        if prompt is None:
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        if not isinstance(prompt, dict):
            return web.Response(status=500, text=INTERNAL_ERROR)
        ok, error, outputs, node_errors = await asyncio.to_thread(self._validator.validate, prompt)
        if not ok:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        extra_data = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra_data["client_id"] = body["client_id"]
        extra_data["create_time"] = _now_ms()
        item = QueueItem(number, prompt_id, prompt, extra_data, outputs)
        heapq.heappush(self._queue, item)
        self._mark("queued", prompt_id=prompt_id)
        await self._send_status()
        assert self._wakeup is not None
        self._wakeup.set()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = [self._running.as_list()] if self._running is not None else []
        return web.json_response({"queue_running": running, "queue_pending": [i.as_list() for i in self._queue]})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        if body.get("clear"):
            self._queue.clear()
            await self._send_status()
        if "delete" in body:
            ids = set(body["delete"] or [])
            before = len(self._queue)
            self._queue = [i for i in self._queue if i.prompt_id not in ids]
            heapq.heapify(self._queue)
            if len(self._queue) != before:
                await self._send_status()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        wanted = body.get("prompt_id")
        run = self._run
        if run is not None and (wanted is None or wanted == run.item.prompt_id):
            run.interrupted = True
        return web.Response(status=200)

    # ------------------------------------------------------------------ history / jobs

    async def _get_history(self, request: web.Request) -> web.Response:
        max_items_raw = request.query.get("max_items")
        max_items = int(max_items_raw) if max_items_raw is not None else None
        offset = int(request.query.get("offset", -1))
        keys = list(self._history)
        if offset < 0 and max_items is not None:
            offset = len(keys) - max_items
        out: dict[str, Any] = {}
        for i, key in enumerate(keys):
            if i >= offset:
                out[key] = self._history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return web.json_response(out)

    async def _get_history_entry(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        if pid in self._history:
            return web.json_response({pid: self._history[pid]})
        return web.json_response({})

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        if body.get("clear"):
            self._history.clear()
        for pid in body.get("delete") or []:
            self._history.pop(pid, None)
        return web.Response(status=200)

    def _job_summary(self, pid: str) -> dict[str, Any] | None:
        meta = self._jobs_meta.get(pid)
        pending = {i.prompt_id: i for i in self._queue}
        if pid in pending:
            item = pending[pid]
            return {
                "id": pid,
                "status": "pending",
                "priority": item.number,
                "create_time": item.extra_data.get("create_time"),
                "outputs_count": 0,
            }
        if self._running is not None and self._running.prompt_id == pid:
            return {
                "id": pid,
                "status": "in_progress",
                "priority": self._running.number,
                "create_time": self._running.extra_data.get("create_time"),
                "outputs_count": 0,
            }
        if pid in self._history and meta is not None:
            entry = self._history[pid]
            return {
                "id": pid,
                "status": "completed" if entry["status"]["status_str"] == "success" else "failed",
                "priority": entry["prompt"][0],
                "create_time": entry["prompt"][3].get("create_time"),
                "execution_start_time": meta["start"],
                "execution_end_time": meta["end"],
                "outputs_count": sum(
                    len(v) for out in entry["outputs"].values() for v in out.values() if isinstance(v, list) and v and isinstance(v[0], dict)
                ),
            }
        return None

    async def _jobs(self, request: web.Request) -> web.Response:
        ids = [i.prompt_id for i in self._queue]
        if self._running is not None:
            ids.append(self._running.prompt_id)
        ids.extend(self._history)
        jobs = [j for j in (self._job_summary(pid) for pid in ids) if j is not None]
        jobs.sort(key=lambda j: j.get("create_time") or 0, reverse=True)
        offset = int(request.query.get("offset", 0))
        limit_raw = request.query.get("limit")
        limit = int(limit_raw) if limit_raw is not None else len(jobs)
        page = jobs[offset : offset + limit]
        return web.json_response(
            {
                "jobs": page,
                "pagination": {
                    "offset": offset,
                    "limit": limit,
                    "total": len(jobs),
                    "has_more": offset + len(page) < len(jobs),
                },
            }
        )

    async def _job(self, request: web.Request) -> web.Response:
        pid = request.match_info["job_id"]
        job = self._job_summary(pid)
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        if pid in self._history:
            entry = self._history[pid]
            job["outputs"] = entry["outputs"]
            job["execution_status"] = entry["status"]
            job["workflow"] = {"prompt": entry["prompt"][2], "extra_data": entry["prompt"][3]}
        else:
            item = self._running if self._running is not None and self._running.prompt_id == pid else None
            item = item or next(i for i in self._queue if i.prompt_id == pid)
            job["workflow"] = {"prompt": item.prompt, "extra_data": item.extra_data}
        return web.json_response(job)

    # ------------------------------------------------------------------ files

    def _dir_for_type(self, kind: str) -> Path | None:
        return {"input": self.input_dir, "output": self.output_dir, "temp": self.root / "temp"}.get(kind)

    async def _view(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if "filename" not in query:
            return web.Response(status=404)
        filename = query["filename"]
        base_dir: Path | None = None
        if filename.endswith("]") and " [" in filename:
            filename, _, kind = filename[:-1].rpartition(" [")
            base_dir = self._dir_for_type(kind)
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if base_dir is None:
            base_dir = self._dir_for_type(query.get("type", "output"))
            if base_dir is None:
                return web.Response(status=400)
        base = os.path.abspath(base_dir)
        folder = base
        if "subfolder" in query:
            folder = os.path.abspath(os.path.join(base, query["subfolder"]))
            if os.path.commonpath((folder, base)) != base:
                return web.Response(status=403)
        path = Path(folder) / os.path.basename(filename)
        if not path.is_file():
            return web.Response(status=404)
        name = path.name
        preview = query.get("preview")
        channel = query.get("channel")

        def render() -> tuple[bytes, str]:
            if preview or channel:
                with Image.open(path) as img:
                    img.load()
                    if preview:
                        fmt, _, quality = preview.partition(";")
                        fmt = fmt if fmt in ("webp", "jpeg") else "webp"
                        buf = io.BytesIO()
                        img.convert("RGB").save(buf, format=fmt.upper(), quality=int(quality or 90))
                        return buf.getvalue(), f"image/{fmt}"
                    rgba = img.convert("RGBA")
                    out = rgba.convert("RGB") if channel == "rgb" else rgba.getchannel("A") if channel == "a" else rgba
                    buf = io.BytesIO()
                    out.save(buf, format="PNG")
                    return buf.getvalue(), "image/png"
            return path.read_bytes(), mimetypes.guess_type(name)[0] or "application/octet-stream"

        data, ctype = await asyncio.to_thread(render)
        return web.Response(body=data, content_type=ctype, headers={"Content-Disposition": f'filename="{name}"'})

    async def _save_upload(
        self, post: Any, image: Any, *, write: Callable[[Path, bytes], None] | None = None
    ) -> web.Response:
        filename = getattr(image, "filename", None)
        if not filename:
            return web.Response(status=400)
        kind = post.get("type", "input")
        base_dir = self._dir_for_type(kind) or self.input_dir
        base = os.path.abspath(base_dir)
        subfolder = post.get("subfolder", "")
        folder = os.path.join(base, os.path.normpath(subfolder))
        filepath = os.path.abspath(os.path.join(folder, filename))
        if os.path.commonpath((base, filepath)) != base:
            return web.Response(status=400)
        data: bytes = image.file.read()
        overwrite = post.get("overwrite")

        def store() -> str:
            nonlocal filepath, filename
            os.makedirs(folder, exist_ok=True)
            if overwrite not in ("true", "1"):
                stem, ext = os.path.splitext(filename)
                i = 1
                while os.path.exists(filepath):
                    if hashlib.sha256(Path(filepath).read_bytes()).digest() == hashlib.sha256(data).digest():
                        return filename
                    filename = f"{stem} ({i}){ext}"
                    filepath = os.path.join(folder, filename)
                    i += 1
            if write is not None:
                write(Path(filepath), data)
            else:
                Path(filepath).write_bytes(data)
            return filename

        # Checked and written without yielding to the event loop, as ComfyUI's image_upload does
        # (a plain function called from its handler): two uploads of one name never interleave.
        name = store()
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})

    async def _upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if image is None or isinstance(image, str):
            return web.Response(status=400)
        return await self._save_upload(post, image)

    async def _upload_mask(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if image is None or isinstance(image, str):
            return web.Response(status=400)
        try:
            ref = json.loads(str(post.get("original_ref", "{}")))
        except ValueError:
            return web.Response(status=400)
        ref_name = str(ref.get("filename", ""))
        ref_dir = self._dir_for_type(str(ref.get("type", "input"))) or self.input_dir
        base = os.path.abspath(ref_dir)
        original = os.path.abspath(os.path.join(base, str(ref.get("subfolder", "")), ref_name))
        if not ref_name or os.path.commonpath((base, original)) != base:
            # recorded: answers 200 with the would-be name but writes nothing
            return await self._save_upload(post, image, write=lambda p, d: None)

        def apply_mask(target: Path, data: bytes) -> None:
            if not os.path.isfile(original):
                target.write_bytes(data)
                return
            with Image.open(original) as orig, Image.open(io.BytesIO(data)) as mask:
                out = orig.convert("RGBA")
                out.putalpha(mask.convert("RGBA").getchannel("A").resize(out.size))
                out.save(target, format="PNG")

        return await self._save_upload(post, image, write=apply_mask)

    async def _object_info(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self._current_definitions))

    async def _object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        defs = await asyncio.to_thread(self._current_definitions)
        return web.json_response({name: defs[name]} if name in defs else {})

    async def _system_stats(self, request: web.Request) -> web.Response:
        stats = _recorded_json("http-system_stats.json")
        stats["system"]["argv"] = ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port)]
        return web.json_response(stats)

    async def _features(self, request: web.Request) -> web.Response:
        return web.json_response(_recorded_json("http-features.json"))

    async def _view_metadata(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder_name"]
        filename = request.query.get("filename")
        if folder not in MODEL_FOLDERS or not filename or not filename.endswith(".safetensors"):
            return web.Response(status=404)
        path = self.root / "models" / folder / filename
        if ".." in filename or not path.is_file():
            return web.Response(status=404)

        def read() -> dict[str, Any]:
            with path.open("rb") as fh:
                length = struct.unpack("<Q", fh.read(8))[0]
                header = json.loads(fh.read(length))
            return header.get("__metadata__", {})

        return web.json_response(await asyncio.to_thread(read))

    # ------------------------------------------------------------------ engine

    async def _worker_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self.gates.before_start(self._queue[0].prompt_id)  # a test may hold it queued
            if not self._queue:
                continue
            item = heapq.heappop(self._queue)
            self.gates.started(item.prompt_id)
            self._running = item
            await self._send_status()
            try:
                await self._execute(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the worker alive like the real one
                logger.exception("test server engine failed on %s", item.prompt_id)
            finally:
                self._running = None
                self._run = None

    async def _execute(self, item: QueueItem) -> None:
        client_id = item.extra_data.get("client_id")
        run = _Run(item=item, client_id=client_id, start_time=_now_ms())
        self._run = run
        prompt = item.prompt
        pid = item.prompt_id

        async def message(event: str, data: dict[str, Any], *, record: bool = True) -> None:
            if record:
                run.messages.append([event, data])
            if client_id is not None:
                await self._send_json(event, data, client_id)

        await message("execution_start", {"prompt_id": pid, "timestamp": _now_ms()})
        signatures = {nid: _signature(prompt, nid, self.input_dir) for nid in prompt}
        cached = [nid for nid in prompt if signatures[nid] in self._cache]
        await message("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _now_ms()})
        values: dict[str, tuple[Any, ...]] = {nid: self._cache[signatures[nid]][0] for nid in cached}
        outputs_ui: dict[str, dict[str, Any]] = {}
        order = _execution_order(prompt, item.outputs, set(cached), self._definitions)
        status_str, completed = "success", True
        try:
            for nid in order:
                if nid in values:
                    ui = self._cache[signatures[nid]][1]
                    if ui is not None:
                        outputs_ui[nid] = ui
                        await self._executed(run, nid, ui)
                    run.progress[nid] = self._pstate(pid, nid, 1, 1, "finished")
                    await self._send_progress_state(run)
                    continue
                await self._run_node(run, nid, values, signatures, outputs_ui)
            await message("execution_success", {"prompt_id": pid, "timestamp": _now_ms()})
        except Interrupted:
            status_str, completed = "error", False
            node = run.current_node or ""
            await message(
                "execution_interrupted",
                {
                    "prompt_id": pid,
                    "node_id": node,
                    "node_type": prompt.get(node, {}).get("class_type", ""),
                    "executed": list(run.executed),
                    "timestamp": _now_ms(),
                },
            )
        except NodeFailure as failure:
            status_str, completed = "error", False
            node = run.current_node or ""
            inputs = prompt.get(node, {}).get("inputs", {})
            await message(
                "execution_error",
                {
                    "prompt_id": pid,
                    "node_id": node,
                    "node_type": prompt.get(node, {}).get("class_type", ""),
                    "executed": list(run.executed),
                    "exception_message": failure.message,
                    "exception_type": failure.exception_type,
                    "traceback": failure.traceback,
                    "current_inputs": {k: [v] for k, v in inputs.items() if not is_link(v)},
                    "current_outputs": list(prompt),
                    "timestamp": _now_ms(),
                },
            )
        # classic cache: keep only what this prompt used
        keep = {signatures[n] for n in prompt}
        self._cache = {k: v for k, v in self._cache.items() if k in keep}
        if self.history_delay > 0:
            # ComfyUI 0.8.0 sends the terminal message from inside PromptExecutor.execute; only
            # after it returns does prompt_worker write history (task_done, which also takes it
            # off the running queue and broadcasts status) and send executing/null. With
            # --disable-smart-memory, execute unloads every model in between: seconds.
            await asyncio.sleep(self.history_delay)
        self._history[pid] = {
            "prompt": item.as_list(),
            "outputs": outputs_ui,
            "status": {"status_str": status_str, "completed": completed, "messages": run.messages},
            "meta": {
                nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                for nid in outputs_ui
            },
        }
        self._jobs_meta[pid] = {"start": run.start_time, "end": _now_ms()}
        self._running = None
        self._run = None
        await self._send_status()
        if client_id is not None:
            await self._send_json("executing", {"node": None, "prompt_id": pid}, client_id)

    @staticmethod
    def _pstate(pid: str, nid: str, value: float, maximum: float, state: str) -> dict[str, Any]:
        return {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": nid,
            "prompt_id": pid,
            "display_node_id": nid,
            "parent_node_id": None,
            "real_node_id": nid,
        }

    async def _send_progress_state(self, run: _Run) -> None:
        await self._send_json(
            "progress_state",
            {"prompt_id": run.item.prompt_id, "nodes": {k: dict(v) for k, v in run.progress.items()}},
            run.client_id,
        )

    async def _executed(self, run: _Run, nid: str, ui: dict[str, Any]) -> None:
        if run.client_id is not None:
            await self._send_json(
                "executed",
                {"node": nid, "display_node": nid, "output": ui, "prompt_id": run.item.prompt_id},
                run.client_id,
            )

    async def _run_node(
        self,
        run: _Run,
        nid: str,
        values: dict[str, tuple[Any, ...]],
        signatures: dict[str, str],
        outputs_ui: dict[str, dict[str, Any]],
    ) -> None:
        pid = run.item.prompt_id
        node = run.item.prompt[nid]
        class_type = node["class_type"]
        run.current_node = nid
        run.progress[nid] = self._pstate(pid, nid, 0.0, 1.0, "running")
        await self._send_progress_state(run)
        if run.client_id is not None:
            await self._send_json("executing", {"node": nid, "display_node": nid, "prompt_id": pid}, run.client_id)
        if run.interrupted:
            raise Interrupted
        if self.fail_at is not None and self.fail_at in (nid, class_type):
            raise NodeFailure(
                f"Injected failure at node {nid} ({class_type})\n",
                "RuntimeError",
                ['  File "execution.py", line 518, in execute\n    <source line omitted>\n'],
            )
        inputs = {k: (values[v[0]][v[1]] if is_link(v) else v) for k, v in node["inputs"].items()}
        ctx = _NodeContext(self, run, nid)
        started = time.monotonic()
        try:
            result, ui = await NODES[class_type](ctx, inputs)
            if class_type in VIDEO_NODES and self.video_seconds > 0:
                await asyncio.sleep(max(0.0, started + self.video_seconds - time.monotonic()))
        except (NodeFailure, Interrupted):
            raise
        except Exception as ex:  # noqa: BLE001 - any node bug becomes an execution_error, like ComfyUI
            logger.exception("node %s (%s) failed", nid, class_type)
            raise NodeFailure(f"{ex}\n", type(ex).__name__, [f'  File "nodes.py", in {class_type}\n']) from ex
        if run.interrupted:
            raise Interrupted
        values[nid] = result
        self._cache[signatures[nid]] = (result, ui)
        run.executed.append(nid)
        if ui is not None:
            outputs_ui[nid] = ui
            await self._executed(run, nid, ui)
        state = run.progress[nid]
        state["state"] = "finished"
        state["value"] = state["max"]
        await self._send_progress_state(run)

    async def _tick(self, run: _Run, nid: str, value: int, maximum: int, megapixel_frames: float = 0.0) -> None:
        seconds = self.step_time + megapixel_frames * self.mpx_step_time
        if seconds > 0:
            await asyncio.sleep(seconds)
        if run.interrupted:
            raise Interrupted
        run.progress[nid].update(value=value, max=maximum)
        await self._send_progress_state(run)
        await self._send_json(
            "progress", {"value": value, "max": maximum, "prompt_id": run.item.prompt_id, "node": nid}, run.client_id
        )
        run.steps += 1
        await self.gates.after_step(run.item.prompt_id, run.steps)  # a test may hold the run here
        limit = self.drop_ws_after_steps
        if limit is not None and not run.dropped and run.steps >= limit:
            run.dropped = True
            for sock in list(self._sockets):
                await sock.ws.close()

    async def _preview(self, run: _Run, nid: str, data: bytes, image_type: str) -> None:
        for sock in list(self._sockets):
            if run.client_id is not None and sock.sid != run.client_id:
                continue
            if sock.preview_metadata:
                meta = json.dumps(
                    {
                        "node_id": nid,
                        "prompt_id": run.item.prompt_id,
                        "display_node_id": nid,
                        "parent_node_id": None,
                        "real_node_id": nid,
                        "image_type": image_type,
                    }
                ).encode()
                frame = struct.pack(">II", 4, len(meta)) + meta + data
            else:
                frame = struct.pack(">II", 1, 2 if image_type == "image/png" else 1) + data
            try:
                await sock.ws.send_bytes(frame)
            except (ConnectionError, RuntimeError):
                pass


class _NodeContext:
    """The Context handed to node functions."""

    def __init__(self, server: ComfyTestServer, run: _Run, node_id: str) -> None:
        self._server = server
        self._run = run
        self.node_id = node_id
        self.prompt = run.item.prompt
        self.extra_data = run.item.extra_data
        self.full_size = server.full_size
        self.load_time = server.load_time
        self.input_dir = server.input_dir
        self.output_dir = server.output_dir

    async def tick(self, value: int, maximum: int, megapixel_frames: float = 0.0) -> None:
        await self._server._tick(self._run, self.node_id, value, maximum, megapixel_frames)  # noqa: SLF001

    async def preview(self, data: bytes, image_type: str) -> None:
        await self._server._preview(self._run, self.node_id, data, image_type)  # noqa: SLF001


async def _json_or_empty(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    return body if isinstance(body, dict) else {}


def _signature(prompt: dict[str, Any], nid: str, input_dir: Path, _memo: dict[str, str] | None = None) -> str:
    memo = _memo if _memo is not None else {}
    if nid in memo:
        return memo[nid]
    node = prompt[nid]
    parts: dict[str, Any] = {}
    for key, val in sorted(node.get("inputs", {}).items()):
        if is_link(val) and val[0] in prompt:
            parts[key] = [_signature(prompt, val[0], input_dir, memo), val[1]]
        else:
            parts[key] = val
    if node["class_type"] == "LoadImage":
        path = resolve_input_path(input_dir, str(node["inputs"].get("image", "")))
        try:
            parts["__file__"] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            parts["__file__"] = None
    sig = hashlib.sha256(json.dumps([node["class_type"], parts], sort_keys=True, default=str).encode()).hexdigest()
    memo[nid] = sig
    return sig


def _execution_order(
    prompt: dict[str, Any], outputs: list[str], cached: set[str], defs: dict[str, dict[str, Any]]
) -> list[str]:
    """ComfyUI's ExecutionList order (stack DFS from outputs, then ux_friendly_pick_node)."""
    pending: dict[str, bool] = {}
    blocking: dict[str, set[str]] = {}
    block_count: dict[str, int] = {}

    def is_output(nid: str) -> bool:
        return bool(defs[prompt[nid]["class_type"]].get("output_node"))

    for out in outputs:
        stack = [out]
        links: list[tuple[str, str]] = []
        while stack:
            nid = stack.pop()
            if nid in pending:
                continue
            pending[nid] = True
            block_count.setdefault(nid, 0)
            blocking.setdefault(nid, set())
            for val in prompt[nid].get("inputs", {}).values():
                if is_link(val):
                    if val[0] not in cached:
                        stack.append(val[0])
                        links.append((val[0], nid))
        for src, dst in links:
            blocking.setdefault(src, set())
            if dst not in blocking[src]:
                blocking[src].add(dst)
                block_count[dst] = block_count.get(dst, 0) + 1
    order: list[str] = []
    while pending:
        available = [n for n in pending if block_count[n] == 0]
        if not available:
            break
        pick = next((n for n in available if is_output(n)), None)
        if pick is None:
            pick = next((n for n in available if any(is_output(b) for b in blocking[n])), None)
        if pick is None:
            pick = next(
                (n for n in available if any(is_output(b2) for b in blocking[n] for b2 in blocking[b])), None
            )
        if pick is None:
            pick = available[0]
        order.append(pick)
        del pending[pick]
        for dst in blocking[pick]:
            block_count[dst] -= 1
    return order
