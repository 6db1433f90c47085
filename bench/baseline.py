"""The common pattern of ComfyUI's example script, for a side-by-side run on the same servers.

``script_examples/websockets_api_example.py`` in ComfyUI opens a new websocket per job, queues
the prompt with blocking ``urllib``, reads the socket until ``executing`` with node null for its
prompt, then fetches ``/history`` and each output through ``/view``, all blocking. Here each job
also prepares and uploads its image (``/upload/image``, multipart with urllib) and builds the
same graph as the bot, so both sides do the same work; only the orchestration differs.

Modes: ``threads`` (a thread per job, all at once, as bots built on the example usually do;
each job gets its own clientId, since a shared one makes the server drop the older socket and
lose results) and ``sequential`` (one job after another, as the example runs). The servers are
used round-robin. The websocket client is a minimal blocking one on the standard library
(the example uses the ``websocket-client`` package, which is not a dependency here).
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import struct
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import FAST_OPTIONS, WORKFLOWS_DIR, cpu_seconds, median, percentile, small_png
from bot.jobs.pipeline import build_graph
from bot.media.images import prepare_image
from bot.workflows import Workflow, load_workflows, resolve_options

JOB_TIMEOUT = 120.0


class BlockingWebSocket:
    """Just enough of RFC 6455 for a client that reads text/binary frames (server frames are unmasked)."""

    def __init__(self, url: str, timeout: float = JOB_TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self._sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self._sock.sendall(request.encode())
        self._buf = bytearray()
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        end = self._buf.index(b"\r\n\r\n")
        status_line = bytes(self._buf[: self._buf.index(b"\r\n")])
        del self._buf[: end + 4]
        if b" 101" not in status_line:
            raise ConnectionError(f"websocket handshake refused: {status_line!r}")

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("websocket closed by the server")
        self._buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(header + mask + masked)

    def recv(self) -> str | bytes:
        """The next text (str) or binary (bytes) message; answers pings."""
        parts: list[bytes] = []
        kind = 0
        while True:
            b1, b2 = self._take(2)
            fin, opcode, length = b1 & 0x80, b1 & 0x0F, b2 & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._take(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", self._take(8))
            if b2 & 0x80:
                mask = self._take(4)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._take(length)))
            else:
                payload = self._take(length)
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the server")
            if opcode in (0x1, 0x2):
                kind = opcode
                parts = [payload]
            else:
                parts.append(payload)
            if fin:
                data = b"".join(parts)
                return data.decode() if kind == 0x1 else data

    def close(self) -> None:
        try:
            self._send(0x8, struct.pack(">H", 1000))
        except OSError:
            pass
        self._sock.close()


def _upload(server: str, png: bytes, name: str) -> str:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + png + (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n--{boundary}--\r\n'
    ).encode()
    request = urllib.request.Request(
        f"{server}/upload/image", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=JOB_TIMEOUT) as resp:  # noqa: S310 - 127.0.0.1 test server
        answer = json.loads(resp.read())
    return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]


def _queue_prompt(server: str, graph: dict[str, Any], client_id: str, prompt_id: str) -> None:
    data = json.dumps({"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}).encode()
    request = urllib.request.Request(f"{server}/prompt", data=data)
    with urllib.request.urlopen(request, timeout=JOB_TIMEOUT) as resp:  # noqa: S310
        resp.read()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=JOB_TIMEOUT) as resp:  # noqa: S310
        return json.loads(resp.read())


def _view(server: str, item: dict[str, Any]) -> bytes:
    query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                    "type": item.get("type", "output")})
    with urllib.request.urlopen(f"{server}/view?{query}", timeout=JOB_TIMEOUT) as resp:  # noqa: S310
        return resp.read()


def one_job(server: str, workflow: Workflow, image: bytes, index: int) -> float:
    """One job the example's way; returns its duration in seconds."""
    start = time.perf_counter()
    prepared = prepare_image(image)
    job_id = f"base{index}-{uuid.uuid4().hex[:8]}"
    name = _upload(server, prepared.png, f"animate_{job_id}.png")
    options = resolve_options(workflow, FAST_OPTIONS, random.Random(index))
    graph = build_graph(workflow, options, image_name=name, width=prepared.width, height=prepared.height,
                        job_id=job_id)
    client_id = uuid.uuid4().hex
    ws_url = server.replace("http://", "ws://", 1) + f"/ws?clientId={client_id}"
    ws = BlockingWebSocket(ws_url)
    try:
        prompt_id = str(uuid.uuid4())
        _queue_prompt(server, graph, client_id, prompt_id)
        while True:
            out = ws.recv()
            if isinstance(out, str):
                message = json.loads(out)
                if message.get("type") == "executing":
                    data = message["data"]
                    if data.get("node") is None and data.get("prompt_id") == prompt_id:
                        break
        history = _get_json(f"{server}/history/{prompt_id}")[prompt_id]
        files = 0
        for node_output in history["outputs"].values():
            for items in node_output.values():
                if isinstance(items, list):
                    for item in items:
                        if isinstance(item, dict) and "filename" in item:
                            _view(server, item)
                            files += 1
        if not files:
            raise RuntimeError(f"prompt {prompt_id} produced no file")
    finally:
        ws.close()
    return time.perf_counter() - start


def run(urls: list[str], *, jobs: int, mode: str) -> dict[str, Any]:
    """``jobs`` jobs over ``urls`` round-robin, in ``mode`` ``threads`` or ``sequential``."""
    result = load_workflows(WORKFLOWS_DIR)
    workflow = result.registry.default
    assert workflow is not None
    images = [small_png(i % 100) for i in range(jobs)]
    durations: list[float] = []
    failures: list[str] = []
    start = time.perf_counter()
    cpu_start = cpu_seconds()
    if mode == "sequential":
        for i in range(jobs):
            try:
                durations.append(one_job(urls[i % len(urls)], workflow, images[i], i))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failures.append(f"{type(exc).__name__}: {exc}")
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(one_job, urls[i % len(urls)], workflow, images[i], i) for i in range(jobs)]
            for future in futures:
                try:
                    durations.append(future.result())
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"{type(exc).__name__}: {exc}")
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    return {
        f"baseline_{mode}": {
            "jobs": jobs,
            "servers": len(urls),
            "wall_seconds": wall,
            "jobs_per_second": len(durations) / wall,
            "cpu_ms_per_job": cpu / max(1, jobs) * 1000,
            "completed": len(durations),
            "failed": len(failures),
            "failures": failures[:5],
            "job_p50_ms": median(durations) * 1000,
            "job_p99_ms": percentile(durations, 99) * 1000,
        }
    }
