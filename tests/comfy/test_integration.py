"""ComfyClient and ComfyHub against the ComfyUI test server (standins/comfy_server)."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.comfy import events as ev
from bot.comfy.client import ComfyClient
from bot.comfy.errors import ComfyAuthError, ComfyServerError, ComfyTimeout, ComfyUnreachable, ComfyValidationError
from bot.comfy.client_id import load_or_create_client_id
from bot.comfy.hub import ComfyHub, Subscription
from bot.comfy.models import FileRef, HistoryEntry
from bot.settings import ServerConfig
from standins.wait import wait_until

pytestmark = pytest.mark.timeout(30)


def png_bytes(color: tuple[int, int, int] = (200, 40, 40), size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return buf.getvalue()


def gif_graph(image: str, *, frames: int = 4, seed: int = 1, prefix: str = "bot_vhs") -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 32, "height": 32, "crop": "disabled"}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": frames}},
        "4": {"class_type": "ImageAddNoise", "inputs": {"image": ["3", 0], "seed": seed, "strength": 0.3}},
        "9": {
            "class_type": "VHS_VideoCombine",
            "inputs": {"images": ["4", 0], "frame_rate": 8, "loop_count": 0, "filename_prefix": prefix, "format": "image/gif", "pingpong": False, "save_output": True},
        },
    }


def client_for(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> ComfyClient:
    server_kwargs = {k: kwargs.pop(k) for k in ("username", "password") if k in kwargs}
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return ComfyClient(session, ServerConfig(name="gpu-box", url=url, **server_kwargs), **kwargs)


def hub_for(client: ComfyClient, session: aiohttp.ClientSession, client_id: str) -> ComfyHub:
    return ComfyHub(client, session, client_id, reconnect_min=0.02, reconnect_max=0.1)


async def outcome(sub: Subscription, timeout: float = 10.0) -> list[Any]:
    """Events up to and including the first terminal one (or a Reconnected)."""
    got: list[Any] = []
    async with asyncio.timeout(timeout):
        async for event in sub:
            got.append(event)
            if ev.is_terminal(event) or isinstance(event, ev.Reconnected):
                return got
    return got


async def test_every_client_method(session: aiohttp.ClientSession, comfy_server: Any, tmp_path: Path) -> None:
    client = client_for(session, comfy_server.url)
    # server info
    stats = await client.system_stats()
    assert stats.comfyui_version == "0.8.0" and stats.devices
    assert (await client.features())["max_upload_size"] == 104857600
    info = await client.object_info()
    assert "KSampler" in info and "VHS_VideoCombine" in info
    assert set(await client.object_info("KSampler")) == {"KSampler"}
    assert await client.object_info("NoSuchNode") == {}
    assert await client.view_metadata("checkpoints", "missing.safetensors") is None
    # uploads: the server's name is the one to use
    ref = await client.upload_image(png_bytes(), "peer.png")
    assert ref == FileRef("peer.png", "", "input")
    renamed = await client.upload_image(png_bytes((0, 0, 255)), "peer.png")
    assert renamed.filename == "peer (1).png"
    mask = await client.upload_mask(png_bytes(), "mask.png", original_ref=ref, subfolder="clipspace")
    assert mask.subfolder == "clipspace" and mask.filename == "mask.png"
    # a run with our own prompt id and extra_data, followed through the hub
    async with hub_for(client, session, "cid-every-method") as hub:
        assert await hub.wait_connected(5)
        pid = str(uuid.uuid4())
        sub = hub.subscribe(pid)
        queued = await client.queue_prompt(gif_graph(renamed.filename), client_id=hub.client_id, prompt_id=pid, extra_data={"job": 7})
        assert queued.prompt_id == pid and queued.node_errors == {}
        events = await outcome(sub)
        assert isinstance(events[-1], ev.ExecutionSuccess)
        assert any(isinstance(e, ev.Executed) and e.node == "9" for e in events)
    assert await client.queue_remaining() == 0
    entry = await client.get_history_entry(pid)
    assert isinstance(entry, HistoryEntry) and entry.succeeded and entry.extra_data["job"] == 7
    files = [f for f in entry.output_files() if f.filename.endswith(".gif")]
    assert len(files) == 1 and files[0].key == "gifs" and files[0].animated
    data = await client.view(files[0].ref, max_bytes=10_000_000)
    assert data[:6] in (b"GIF89a", b"GIF87a")
    dest = tmp_path / "out.gif"
    assert await client.download(files[0].ref, dest, max_bytes=10_000_000) == len(data) and dest.read_bytes() == data
    history = await client.get_history(max_items=1)
    assert list(history) == [pid]
    await client.delete_history([pid])
    assert await client.get_history_entry(pid) is None
    await client.clear_history()
    assert await client.get_history() == {}
    assert await client.get_history_entry("00000000-0000-0000-0000-000000000000") is None


async def test_queue_management(session: aiohttp.ClientSession, comfy_server_factory: Any) -> None:
    srv = await comfy_server_factory(step_time=0.05)
    client = client_for(session, srv.url)
    ref = await client.upload_image(png_bytes(), "q.png")
    running = await client.queue_prompt(gif_graph(ref.filename, frames=40, seed=1), client_id="cid-q")
    a = await client.queue_prompt(gif_graph(ref.filename, seed=2), client_id="cid-q")
    b = await client.queue_prompt(gif_graph(ref.filename, seed=3), client_id="cid-q")
    front = await client.queue_prompt(gif_graph(ref.filename, seed=4), client_id="cid-q", front=True)
    assert front.number < 0
    async def running_state() -> Any:
        state = await client.get_queue()
        return state if state.running else None

    state = await wait_until(running_state, timeout=5, what="the first prompt to run")
    assert state.position(running.prompt_id) == 0 and state.position(front.prompt_id) == 1
    assert await client.queue_remaining() == 4
    await client.delete_queued([a.prompt_id])
    assert not (await client.get_queue()).contains(a.prompt_id)
    await client.clear_queue()
    state = await client.get_queue()
    assert state.pending == [] and state.contains(running.prompt_id) and not state.contains(b.prompt_id)
    await client.interrupt("not-running")  # no effect
    assert (await client.get_queue()).contains(running.prompt_id)
    await client.interrupt(running.prompt_id)
    entry = await wait_until(lambda: client.get_history_entry(running.prompt_id), timeout=5,
                             what="the interrupted prompt in history")
    assert entry.interrupted and entry.error_message()
    await client.interrupt()  # global, nothing running: still fine


async def test_validation_errors_from_test_server(session: aiohttp.ClientSession, comfy_server: Any) -> None:
    client = client_for(session, comfy_server.url)
    ref = await client.upload_image(png_bytes(), "v.png")
    graph = gif_graph(ref.filename)
    graph["3"]["inputs"]["amount"] = 0
    with pytest.raises(ComfyValidationError) as info:
        await client.queue_prompt(graph, client_id="c")
    assert info.value.node_errors["3"]["class_type"] == "RepeatImageBatch"
    assert "amount" in info.value.summary and "smaller than min" in info.value.summary
    graph = gif_graph(ref.filename)
    graph["4"]["class_type"] = "NoSuchNodeType"
    with pytest.raises(ComfyValidationError) as info:
        await client.queue_prompt(graph, client_id="c")
    assert info.value.node_errors == {} and info.value.error_type == "invalid_prompt"
    assert sum(1 for r in comfy_server.requests if r == ("POST", "/prompt")) == 2


async def test_faults_500_retry_and_timeout(session: aiohttp.ClientSession, comfy_server: Any) -> None:
    client = client_for(session, comfy_server.url, retries=2, timeout=0.3)
    comfy_server.http_faults["/queue"] = 500
    comfy_server.http_faults["/prompt"] = 500
    with pytest.raises(ComfyServerError):
        await client.get_queue()
    assert comfy_server.requests.count(("GET", "/queue")) == 3
    with pytest.raises(ComfyServerError):
        await client.queue_prompt({"1": {}}, client_id="c")
    assert comfy_server.requests.count(("POST", "/prompt")) == 1
    comfy_server.http_faults.clear()
    comfy_server.http_faults["/system_stats"] = "slow"
    comfy_server.slow_seconds = 2.0
    with pytest.raises(ComfyTimeout) as info:
        await client.system_stats()
    assert "127.0.0.1" not in str(info.value)


async def test_a_get_whose_answer_breaks_off_is_asked_again(session: aiohttp.ClientSession, comfy_server: Any) -> None:
    client = client_for(session, comfy_server.url, retries=2, timeout=2.0)
    comfy_server.http_faults["/queue"] = "cut-once"
    state = await client.get_queue()  # the first answer stops half-way; the retry gets it all
    assert state.running == [] and state.pending == []
    assert comfy_server.requests.count(("GET", "/queue")) == 2
    comfy_server.http_faults["/object_info/KSampler"] = "cut-once"
    assert "KSampler" in await client.object_info("KSampler")
    # POST /prompt is never asked again, even when its answer breaks off
    ref = await client.upload_image(png_bytes(), "cut.png")
    comfy_server.http_faults["/prompt"] = "cut-once"
    with pytest.raises(ComfyUnreachable):
        await client.queue_prompt(gif_graph(ref.filename), client_id="c", prompt_id="cut-prompt")
    assert comfy_server.requests.count(("POST", "/prompt")) == 1
    # the prompt was queued all the same: that is why the bot looks it up instead of posting again
    assert (await client.get_queue()).contains("cut-prompt") or await client.get_history_entry("cut-prompt")


async def test_prefix_api_routes_and_auth(session: aiohttp.ClientSession, comfy_server_factory: Any) -> None:
    srv = await comfy_server_factory(api_token="tok-xyz", path_prefix="/comfy")
    assert srv.url.endswith("/comfy")
    with pytest.raises(ComfyAuthError):
        await client_for(session, srv.url).system_stats()
    client = client_for(session, srv.url, token="tok-xyz", api_prefix=True)
    assert (await client.system_stats()).comfyui_version == "0.8.0"
    assert srv.requests[-1] == ("GET", "/api/system_stats")
    async with hub_for(client, session, "cid-prefix") as hub:
        assert await hub.wait_connected(5)  # token on the handshake, /comfy/api/ws
    basic = await comfy_server_factory(basic_auth=("alice", "pw"))
    assert (await client_for(session, basic.url, username="alice", password="pw").queue_remaining()) == 0


async def test_history_pages_metadata_and_every_route_under_api_behind_a_prefix(
    session: aiohttp.ClientSession, comfy_server_factory: Any
) -> None:
    srv = await comfy_server_factory(api_token="tok-api", path_prefix="/comfy")
    header = json.dumps({"__metadata__": {"modelspec.title": "tiny"}}).encode()
    (srv.root / "models" / "loras").mkdir(parents=True, exist_ok=True)
    (srv.root / "models" / "loras" / "tiny.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    client = client_for(session, srv.url, token="tok-api", api_prefix=True)
    srv.requests.clear()
    assert await client.view_metadata("loras", "tiny.safetensors") == {"modelspec.title": "tiny"}
    assert await client.view_metadata("loras", "other.safetensors") is None
    ref = await client.upload_image(png_bytes(), "api.png")
    mask = await client.upload_mask(png_bytes(), "api-mask.png", original_ref=ref)
    ids = []
    for seed in (1, 2, 3):
        queued = await client.queue_prompt(gif_graph(ref.filename, seed=seed), client_id="cid-api")
        ids.append(queued.prompt_id)
    await wait_until(lambda: client.get_history_entry(ids[-1]), timeout=5, what="the last prompt in history")
    assert list(await client.get_history()) == ids  # oldest first
    assert list(await client.get_history(max_items=2)) == ids[1:]  # the newest two
    assert list(await client.get_history(max_items=1, offset=1)) == [ids[1]]  # counted from the oldest
    assert (await client.get_queue()).running == [] and await client.queue_remaining() == 0
    await client.delete_queued(["nothing"])
    await client.clear_queue()
    await client.interrupt()
    assert set(await client.object_info("LoadImage")) == {"LoadImage"}
    assert (await client.features())["max_upload_size"] > 0
    data = await client.view(FileRef(mask.filename, mask.subfolder, mask.type), max_bytes=1_000_000)
    assert data.startswith(b"\x89PNG")
    await client.delete_history(ids[:1])
    assert list(await client.get_history()) == ids[1:]
    await client.clear_history()
    assert await client.get_history() == {}
    paths = {path for _, path in srv.requests}
    assert all(path.startswith("/api/") for path in paths), paths
    assert ("GET", "/api/view_metadata/loras") in srv.requests  # a GET (POST answers 405)
    assert {"/api/history", "/api/upload/mask", "/api/queue", "/api/interrupt", "/api/prompt", "/api/view"} <= paths


async def test_two_overlapping_jobs_on_one_socket(session: aiohttp.ClientSession, comfy_server_factory: Any) -> None:
    srv = await comfy_server_factory(step_time=0.01)
    client = client_for(session, srv.url)
    red = await client.upload_image(png_bytes((255, 0, 0)), "red.png")
    blue = await client.upload_image(png_bytes((0, 0, 255)), "blue.png")
    async with hub_for(client, session, "cid-overlap") as hub:
        assert await hub.wait_connected(5)
        pa, pb = "job-a", "job-b"
        sa, sb = hub.subscribe(pa), hub.subscribe(pb)
        await client.queue_prompt(gif_graph(red.filename, frames=6, prefix="a"), client_id=hub.client_id, prompt_id=pa)
        await client.queue_prompt(gif_graph(blue.filename, frames=6, prefix="b"), client_id=hub.client_id, prompt_id=pb)
        ea, eb = await asyncio.gather(outcome(sa), outcome(sb))
    for events, pid, prefix in ((ea, pa, "a_"), (eb, pb, "b_")):
        assert isinstance(events[-1], ev.ExecutionSuccess)
        assert {e.prompt_id for e in events} == {pid}
        (executed,) = [e for e in events if isinstance(e, ev.Executed)]
        assert executed.output["gifs"][0]["filename"].startswith(prefix)
        assert any(isinstance(e, ev.Progress) for e in events)
        gif = await client.view(FileRef(executed.output["gifs"][0]["filename"]), max_bytes=5_000_000)
        frame = Image.open(io.BytesIO(gif)).convert("RGB").getpixel((16, 16))
        assert (frame[0] > frame[2]) == (pid == pa)  # each job got its own image back


async def test_socket_drop_mid_run_then_history(session: aiohttp.ClientSession, comfy_server_factory: Any) -> None:
    srv = await comfy_server_factory(step_time=0.02)
    srv.drop_ws_after_steps = 2
    client = client_for(session, srv.url)
    ref = await client.upload_image(png_bytes(), "d.png")
    async with hub_for(client, session, "cid-drop") as hub:
        assert await hub.wait_connected(5)
        sub = hub.subscribe("drop-me")
        await client.queue_prompt(gif_graph(ref.filename, frames=30), client_id=hub.client_id, prompt_id="drop-me")
        events = await outcome(sub)
        assert isinstance(events[-1], ev.Reconnected)
        # reconcile: the run is still going; the socket (same clientId) or /history tells the end
        rest = await outcome(sub)
        assert ev.is_terminal(rest[-1])
        # the server's replay of the current node (sent without prompt_id) reached this prompt
        assert isinstance(rest[0], ev.Executing) and rest[0].prompt_id == "drop-me" and rest[0].node == "9"
        entry = await wait_until(lambda: client.get_history_entry("drop-me"), timeout=5,
                                 what="the prompt in history")
        assert entry.succeeded and entry.output_files()


async def test_restarted_hub_with_same_client_id_still_gets_events(
    session: aiohttp.ClientSession, comfy_server_factory: Any, tmp_path: Path
) -> None:
    srv = await comfy_server_factory(step_time=0.03)
    client = client_for(session, srv.url)
    ref = await client.upload_image(png_bytes(), "r.png")
    data_dir = tmp_path / "data"
    first = hub_for(client, session, load_or_create_client_id(data_dir, "gpu-box"))
    await first.start()
    assert await first.wait_connected(5)
    sub = first.subscribe("survivor")
    await client.queue_prompt(gif_graph(ref.filename, frames=10), client_id=first.client_id, prompt_id="survivor")
    assert isinstance(await sub.get(timeout=5), ev.ExecutionStart)
    await first.close()  # the bot restarts mid-run
    second = hub_for(client, session, load_or_create_client_id(data_dir, "gpu-box"))
    async with second:
        assert second.client_id == first.client_id
        sub2 = second.subscribe("survivor")
        assert await second.wait_connected(5)
        events = await outcome(sub2)
        if isinstance(events[-1], ev.Reconnected):
            events += await outcome(sub2)
        assert isinstance(events[-1], ev.ExecutionSuccess)


async def test_binary_previews_with_and_without_metadata(session: aiohttp.ClientSession, comfy_server: Any) -> None:
    client = client_for(session, comfy_server.url)
    ref = await client.upload_image(png_bytes(), "p.png")
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": ref.filename}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    async with hub_for(client, session, "cid-preview") as hub:
        assert await hub.wait_connected(5)
        sub = hub.subscribe("prev")
        await client.queue_prompt(graph, client_id=hub.client_id, prompt_id="prev")
        events = await outcome(sub)
        previews = [e for e in events if isinstance(e, ev.PreviewImage)]
        assert previews and all(p.prompt_id == "prev" and p.image[:8] == bytes.fromhex("89504e470d0a1a0a") for p in previews)
        assert previews[0].node_id == "2"  # type 4: the hub sent supports_preview_metadata
        assert hub.server_features.get("supports_preview_metadata") is True


async def test_follow_prompt_through_a_drop_and_through_a_server_restart(
    session: aiohttp.ClientSession, comfy_server_factory: Any
) -> None:
    from bot.comfy.follow import follow_prompt

    srv = await comfy_server_factory(step_time=0.02)
    client = client_for(session, srv.url)
    ref = await client.upload_image(png_bytes(), "f.png")
    async with hub_for(client, session, "cid-follow") as hub:
        assert await hub.wait_connected(5)
        srv.drop_ws_after_steps = 2
        sub = hub.subscribe("follow-1")
        await client.queue_prompt(gif_graph(ref.filename, frames=8), client_id=hub.client_id, prompt_id="follow-1")
        outcome = await asyncio.wait_for(follow_prompt(client, sub), 10)
        assert outcome.status == "success" and outcome.entry is not None and outcome.entry.output_files()

        srv.drop_ws_after_steps = None
        sub = hub.subscribe("follow-2")
        await client.queue_prompt(gif_graph(ref.filename, frames=30, seed=9), client_id=hub.client_id, prompt_id="follow-2")
        assert isinstance(await sub.get(timeout=5), ev.ExecutionStart)
        await srv.restart(lose_state=True)  # the server crashes mid-run and forgets everything
        outcome = await asyncio.wait_for(follow_prompt(client, sub), 10)
        assert outcome.status == "lost"


async def test_follow_prompt_notices_an_end_its_socket_never_saw(
    session: aiohttp.ClientSession, comfy_server: Any
) -> None:
    """A prompt posted under another clientId sends this socket nothing: the silence check asks /history."""
    from bot.comfy.follow import follow_prompt

    client = client_for(session, comfy_server.url)
    ref = await client.upload_image(png_bytes(), "silent.png")
    async with hub_for(client, session, "cid-silent") as hub:
        assert await hub.wait_connected(5)
        sub = hub.subscribe("silent-1")
        await client.queue_prompt(gif_graph(ref.filename), client_id="someone-else", prompt_id="silent-1")
        outcome = await asyncio.wait_for(follow_prompt(client, sub, silence_check=0.2), 10)
        assert outcome.status == "success" and outcome.entry is not None and outcome.entry.output_files()
        never = hub.subscribe("never-posted")
        outcome = await asyncio.wait_for(follow_prompt(client, never, silence_check=0.2), 10)
        assert outcome.status == "lost"
