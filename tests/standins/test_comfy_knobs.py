"""The test server's knobs: auth, prefix, faults, failures, dropped sockets, restart, subprocess, rendering."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from standins.comfy_server import ComfyTestServer
from standins.comfy_server.fixtures import ServerProcess
from standins.wait import wait_until

SEED = Path(__file__).resolve().parent.parent / "fixtures" / "svd_seed_prompt.json"

Factory = Callable[..., Awaitable[ComfyTestServer]]


def _png(color: tuple[int, int, int] = (200, 50, 50)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (80, 60), color).save(buf, format="PNG")
    return buf.getvalue()


async def _upload(session: aiohttp.ClientSession, url: str, data: bytes, name: str = "in.png") -> str:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    async with session.post(url + "/upload/image", data=form) as resp:
        assert resp.status == 200
        return (await resp.json())["name"]


def _seed_graph(image: str, **ksampler: Any) -> dict[str, Any]:
    graph = json.loads(SEED.read_text(encoding="utf-8"))
    graph["23"]["inputs"]["image"] = image
    graph["3"]["inputs"].update(ksampler)
    return graph


async def _run(session: aiohttp.ClientSession, url: str, graph: dict[str, Any], **body: Any) -> dict[str, Any]:
    async with session.post(url + "/prompt", json={"prompt": graph, **body}) as resp:
        assert resp.status == 200, await resp.text()
        pid = (await resp.json())["prompt_id"]

    async def entry() -> Any:
        async with session.get(f"{url}/history/{pid}") as resp:
            return (await resp.json()).get(pid)

    return await wait_until(entry, timeout=10, what=f"prompt {pid} to finish")


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_bearer_and_basic_auth_required(comfy_server_factory: Factory) -> None:
    bearer = await comfy_server_factory(api_token="s3cret")
    basic = await comfy_server_factory(basic_auth=("user", "pw"))
    async with aiohttp.ClientSession() as session:
        async with session.get(bearer.url + "/system_stats") as resp:
            assert resp.status == 401
        async with session.get(bearer.url + "/api/queue", headers={"Authorization": "Bearer s3cret"}) as resp:
            assert resp.status == 200
        async with session.get(basic.url + "/prompt", headers=_basic("user", "wrong")) as resp:
            assert resp.status == 401
        async with session.get(basic.url + "/prompt", headers=_basic("user", "pw")) as resp:
            assert resp.status == 200


async def test_path_prefix_serves_everything_under_it(comfy_server_factory: Factory) -> None:
    server = await comfy_server_factory(path_prefix="/comfy")
    assert server.url.endswith("/comfy")
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/api/system_stats") as resp:
            assert resp.status == 200
        async with session.get(server.url.removesuffix("/comfy") + "/system_stats") as resp:
            assert resp.status == 404
        ws = await session.ws_connect(server.url.replace("http", "ws") + "/ws?clientId=x")
        assert (await ws.receive_json())["data"]["sid"] == "x"
        await ws.close()
    assert ("GET", "/api/system_stats") in server.requests


async def test_http_faults(comfy_server: ComfyTestServer) -> None:
    comfy_server.http_faults = {"/queue": 503, "/prompt": "slow"}
    comfy_server.slow_seconds = 2.0
    async with aiohttp.ClientSession() as session:
        async with session.get(comfy_server.url + "/queue") as resp:
            assert resp.status == 503
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(comfy_server.url + "/prompt", timeout=aiohttp.ClientTimeout(total=0.2)):
                pass
        async with session.get(comfy_server.url + "/api/queue") as resp:
            assert resp.status == 200


async def test_front_runs_first_and_failure_knob(comfy_server: ComfyTestServer) -> None:
    comfy_server.step_time = 0.01
    async with aiohttp.ClientSession() as session:
        name = await _upload(session, comfy_server.url, _png())
        cid = uuid.uuid4().hex
        ws = await session.ws_connect(comfy_server.url.replace("http", "ws") + f"/ws?clientId={cid}")
        started: list[str] = []
        ids = []
        for seed, front in ((1, False), (2, False), (3, True)):
            async with session.post(
                comfy_server.url + "/prompt",
                json={"prompt": _seed_graph(name, seed=seed, steps=3), "client_id": cid, "front": front},
            ) as resp:
                ids.append((await resp.json())["prompt_id"])
        while len(started) < 3:
            msg = await ws.receive(timeout=10)
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "execution_start":
                started.append(json.loads(msg.data)["data"]["prompt_id"])
        assert started == [ids[0], ids[2], ids[1]]
        await ws.close()
        comfy_server.step_time = 0
        comfy_server.fail_at = "24"
        entry = await _run(session, comfy_server.url, _seed_graph(name, seed=9), client_id=cid)
        assert entry["status"]["status_str"] == "error"
        assert entry["status"]["messages"][-1][1]["node_type"] == "VHS_VideoCombine"


async def test_drop_ws_after_steps_and_history_still_tells(comfy_server: ComfyTestServer) -> None:
    comfy_server.drop_ws_after_steps = 5
    async with aiohttp.ClientSession() as session:
        name = await _upload(session, comfy_server.url, _png())
        ws = await session.ws_connect(comfy_server.url.replace("http", "ws") + "/ws?clientId=c")
        entry = await _run(session, comfy_server.url, _seed_graph(name), client_id="c")
        progress = 0
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "progress":
                progress += 1
        assert ws.closed and progress == 5
        assert entry["status"]["status_str"] == "success"


async def test_restart_loses_state_on_same_port(comfy_server: ComfyTestServer) -> None:
    async with aiohttp.ClientSession() as session:
        name = await _upload(session, comfy_server.url, _png())
        await _run(session, comfy_server.url, _seed_graph(name))
        url = comfy_server.url
        await comfy_server.restart(lose_state=True)
        assert comfy_server.url == url
        async with session.get(url + "/history") as resp:
            assert await resp.json() == {}
        # uploaded files survive, like on disk
        async with session.get(url + "/view", params={"filename": name, "type": "input"}) as resp:
            assert resp.status == 200


async def test_seed_changes_bytes_and_rendering_is_small_unless_full_size(comfy_server_factory: Factory) -> None:
    small = await comfy_server_factory()
    big = await comfy_server_factory(full_size=True)
    async with aiohttp.ClientSession() as session:
        sizes = []
        contents = []
        for server, seed in ((small, 1), (small, 2), (big, 1)):
            name = await _upload(session, server.url, _png())
            graph = _seed_graph(name, seed=seed, steps=2)
            graph["12"]["inputs"].update(width=256, height=144, video_frames=3)
            entry = await _run(session, server.url, graph)
            item = entry["outputs"]["24"]["gifs"][0]
            async with session.get(server.url + "/view", params={"filename": item["filename"], "type": "output"}) as resp:
                data = await resp.read()
            contents.append(data)
            sizes.append(Image.open(io.BytesIO(data)).size)
    assert sizes == [(128, 72), (128, 72), (256, 144)]
    assert contents[0] != contents[1]


def test_runs_in_its_own_process(comfy_server_process_factory: Callable[..., ServerProcess]) -> None:
    import urllib.request

    proc = comfy_server_process_factory(step_time=0.01, checkpoints=("a.safetensors",))
    with urllib.request.urlopen(proc.url + "/object_info/ImageOnlyCheckpointLoader", timeout=5) as resp:  # noqa: S310
        info = json.loads(resp.read())
    assert info["ImageOnlyCheckpointLoader"]["input"]["required"]["ckpt_name"][0] == ["a.safetensors"]
    proc.stop()
    assert proc.process.returncode is not None


async def test_video_seconds_and_the_timeline(comfy_server_factory: Factory) -> None:
    """The video node takes at least ``video_seconds``; the timeline tells when each request came
    and was answered, when the prompt was queued and when its messages went out."""
    from standins.comfy_server.control import ComfyControl

    server = await comfy_server_factory(video_seconds=0.4, record_timeline=True)
    async with aiohttp.ClientSession() as session:
        name = await _upload(session, server.url, _png())
        graph = _seed_graph(name, steps=2)
        graph["12"]["inputs"].update(width=128, height=72, video_frames=2)
        entry = await _run(session, server.url, graph, client_id="watcher")  # events are sent to a client
        pid = entry["prompt"][1]
        events = await ComfyControl(session, server.url).timeline()
    kinds = {(e["kind"], e.get("event") or e.get("stage")) for e in events}
    assert {("request", "received"), ("request", "sent"), ("queued", None), ("ws", "execution_start"),
            ("ws", "executed"), ("ws", "execution_success")} <= kinds
    at = {e.get("event"): e["t"] for e in events if e["kind"] == "ws" and e.get("prompt_id") == pid}
    assert at["execution_success"] - at["execution_start"] >= 0.4
    upload = [e for e in events if e["kind"] == "request" and e["path"] == "/upload/image"]
    assert [e["stage"] for e in upload] == ["received", "sent"] and upload[0]["t"] <= upload[1]["t"]
    assert not [e for e in events if e["path" if e["kind"] == "request" else "kind"] == "/_standin/timeline"]
    assert (await comfy_server_factory()).timeline is None  # off unless asked for
