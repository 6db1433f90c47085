"""The test server's ``history_delay`` knob and its default message order at a prompt's end.

ComfyUI 0.8.0 (main.py ``prompt_worker``): ``e.execute(...)`` sends ``execution_success`` (or
error / interrupted), then ``q.task_done(...)`` writes history, takes the prompt off the running
queue and broadcasts ``status``, then ``executing`` with ``node: null`` goes to the prompt's
client. The recordings show no gap; ``history_delay`` adds one (models unloaded in between).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import aiohttp
import pytest
from PIL import Image

from standins.comfy_server import ComfyTestServer
from tests.conftest import FIXTURES

pytestmark = pytest.mark.timeout(30)


def _recorded_tail(name: str) -> list[str]:
    data = json.loads((FIXTURES / "comfyui" / name).read_text(encoding="utf-8"))
    messages = data["websocket"]["messages"]
    texts = [m["data"]["type"] for m in messages if m["kind"] == "text"]
    return texts[texts.index("execution_success"):]


async def _run(server: ComfyTestServer, session: aiohttp.ClientSession) -> tuple[str, list[tuple[float, dict[str, Any]]], dict[str, Any]]:
    """Run a small prompt; returns its id, the text messages after ``execution_success`` (with
    arrival times) and what /history and /queue said when ``execution_success`` arrived."""
    client_id = uuid.uuid4().hex
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="PNG")
    form = aiohttp.FormData()
    form.add_field("image", buf.getvalue(), filename="d.png", content_type="image/png")
    async with session.post(server.url + "/upload/image", data=form) as resp:
        name = (await resp.json())["name"]
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "d"}},
    }
    tail: list[tuple[float, dict[str, Any]]] = []
    at_success: dict[str, Any] = {}
    async with session.ws_connect(f"{server.url}/ws?clientId={client_id}") as ws:
        async with session.post(server.url + "/prompt", json={"prompt": graph, "client_id": client_id}) as resp:
            prompt_id = (await resp.json())["prompt_id"]
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data["type"] == "execution_success" or tail:
                tail.append((time.monotonic(), data))
            if data["type"] == "execution_success":
                async with session.get(f"{server.url}/history/{prompt_id}") as resp:
                    at_success["history"] = await resp.json()
                async with session.get(f"{server.url}/queue") as resp:
                    at_success["queue"] = await resp.json()
            if data["type"] == "executing" and data["data"].get("node") is None:
                break
    return prompt_id, tail, at_success


async def test_default_order_at_the_end_matches_the_recordings(comfy_server: ComfyTestServer) -> None:
    expected = _recorded_tail("ws-success-core_outputs.json")
    assert expected == ["execution_success", "status", "executing"]
    for name in ("ws-success-vhs_gif.json", "ws-success-vhs_h264_mp4.json"):
        assert _recorded_tail(name) == expected
    async with aiohttp.ClientSession() as session:
        prompt_id, tail, _ = await _run(comfy_server, session)
    assert [m["type"] for _, m in tail] == expected
    assert tail[-1][1]["data"] == {"node": None, "prompt_id": prompt_id}


async def test_history_delay_holds_back_history_status_and_the_last_executing(comfy_server: ComfyTestServer) -> None:
    comfy_server.history_delay = 0.6
    async with aiohttp.ClientSession() as session:
        prompt_id, tail, at_success = await _run(comfy_server, session)
        async with session.get(f"{comfy_server.url}/history/{prompt_id}") as resp:
            after = await resp.json()
        async with session.get(f"{comfy_server.url}/queue") as resp:
            queue_after = await resp.json()
    assert [m["type"] for _, m in tail] == ["execution_success", "status", "executing"]
    assert tail[-1][0] - tail[0][0] >= 0.5  # the gap
    assert at_success["history"] == {}  # not written yet
    assert [item[1] for item in at_success["queue"]["queue_running"]] == [prompt_id]  # still running
    assert after[prompt_id]["status"]["status_str"] == "success" and after[prompt_id]["outputs"]["2"]
    assert queue_after["queue_running"] == []
