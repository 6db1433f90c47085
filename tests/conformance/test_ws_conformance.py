"""Every websocket recording (tests/fixtures/comfyui/ws-*.json) replayed against the test server.

Same graph, same kind of client; the message sequence must have the same types in the same
order (runs of progress / progress_state / previews may differ in length), messages the same
keys and value types, and the history entry the same shape.
"""

from __future__ import annotations

import copy
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageStat

from standins.comfy_server import ComfyTestServer
from standins.comfy_server.nodedefs import is_link
from standins.wait import wait_until

from .helpers import WsClient, assert_messages_conform, assert_same_shape, load, png_bytes, recorded_messages, upload

SVD_SEED = Path(__file__).resolve().parent.parent / "fixtures" / "svd_seed_prompt.json"


@pytest.fixture
async def env(comfy_server: ComfyTestServer) -> AsyncIterator[tuple[ComfyTestServer, aiohttp.ClientSession]]:
    (comfy_server.root / "input" / "peer-test.png").write_bytes(png_bytes(0, (96, 64)))
    async with aiohttp.ClientSession() as session:
        yield comfy_server, session


def _recorded_cached(rec: dict[str, Any]) -> list[str]:
    for event, data in rec["history_after"]["response"]["json"][rec["prompt_id"]]["status"]["messages"]:
        if event == "execution_cached":
            return list(data["nodes"])
    return []


async def _wait_history(server: ComfyTestServer, session: aiohttp.ClientSession, pid: str) -> dict[str, Any]:
    async def entry() -> Any:
        async with session.get(f"{server.url}/history/{pid}") as resp:
            return (await resp.json()).get(pid)

    return await wait_until(entry, timeout=10, what=f"a history entry for {pid}")


async def warm_cache(
    server: ComfyTestServer, session: aiohttp.ClientSession, graph: dict[str, Any], cached: list[str]
) -> None:
    """Run a variant of ``graph`` so exactly ``cached`` nodes are in cache, as in the recording."""
    if not cached:
        return
    variant = copy.deepcopy(graph)
    for nid, node in variant.items():
        if nid in cached:
            continue
        parents = [v[0] for v in node["inputs"].values() if is_link(v)]
        if all(p in cached for p in parents):
            node["inputs"]["__warmup__"] = 1  # ignored by validation, changes the cache key
    async with session.post(server.url + "/prompt", json={"prompt": variant}) as resp:
        assert resp.status == 200, await resp.text()
        pid = (await resp.json())["prompt_id"]
    await _wait_history(server, session, pid)


async def post(session: aiohttp.ClientSession, server: ComfyTestServer, body: dict[str, Any], path: str = "/prompt") -> str:
    async with session.post(server.url + path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        reply = await resp.json()
    assert set(reply) == {"prompt_id", "number", "node_errors"}
    return reply["prompt_id"]


async def check_history(
    server: ComfyTestServer, session: aiohttp.ClientSession, rec: dict[str, Any], pid: str
) -> dict[str, Any]:
    entry = await _wait_history(server, session, pid)
    recorded = rec["history_after"]["response"]["json"][rec["prompt_id"]]
    assert_same_shape(recorded, entry)
    assert entry["status"]["status_str"] == recorded["status"]["status_str"]
    for view in rec.get("view_of_outputs", []):
        node, key = view["from_output"]["node"], view["from_output"]["key"]
        for item in entry["outputs"][node][key]:
            params = {"filename": item["filename"], "subfolder": item["subfolder"], "type": item["type"]}
            async with session.get(server.url + "/view", params=params) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == view["response"]["headers"]["Content-Type"]
                assert (await resp.read())[:4].hex() == view["response"]["body"]["first8_hex"][:8]
    return entry


async def replay_simple(
    server: ComfyTestServer, session: aiohttp.ClientSession, rec: dict[str, Any], *, flags: bool = False
) -> dict[str, Any]:
    cid = uuid.uuid4().hex
    graph = rec["workflow"]
    await warm_cache(server, session, graph, _recorded_cached(rec))
    client = await WsClient.connect(session, server.url, cid)
    if flags:
        sent = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
        client.messages.append(sent)
        await client.ws.send_str(json.dumps(sent))
        await client.until(lambda m: m["type"] == "feature_flags")
    else:
        await client.next()
    body = copy.deepcopy(rec["post_prompt"]["request"]["json"])
    body["client_id"] = cid
    pid = await post(session, server, body)
    await client.until_done()
    await client.close()
    assert_messages_conform(recorded_messages(rec["websocket"]), client.messages)
    return await check_history(server, session, rec, pid)


@pytest.mark.parametrize(
    "name",
    [
        "ws-success-vhs_gif.json",
        "ws-success-vhs_h264_mp4.json",
        "ws-success-core_outputs.json",
        "ws-binary_frames-SaveImageWebsocket.json",
    ],
)
async def test_recorded_run(env: tuple[ComfyTestServer, aiohttp.ClientSession], name: str) -> None:
    server, session = env
    entry = await replay_simple(server, session, load(name))
    if name == "ws-success-vhs_gif.json":
        assert entry["prompt"][1] == "5530af54-5014-4d34-98ab-b118f544a9c2"  # client-chosen id kept
        assert entry["prompt"][3]["discord"] == {"channel": 1, "user": 2}


async def test_feature_flags_and_binary(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    await replay_simple(server, session, load("ws-feature_flags-and-binary.json"), flags=True)


async def test_execution_error_on_non_image(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    await upload(session, server.url, b"not an image", "broken.png")
    entry = await replay_simple(server, session, load("ws-execution_error.json"))
    error = entry["status"]["messages"][-1][1]
    assert error["exception_type"] == "PIL.UnidentifiedImageError"
    assert error["current_inputs"] == {"image": ["broken.png"]}


async def test_injected_failure_has_recorded_fields(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    server.fail_at = "ImageAddNoise"
    rec = load("ws-execution_error.json")
    cid = uuid.uuid4().hex
    client = await WsClient.connect(session, server.url, cid)
    graph = load("ws-success-vhs_gif.json")["workflow"]
    pid = await post(session, server, {"prompt": graph, "client_id": cid})
    await client.until_done()
    error = next(m for m in client.messages if m["type"] == "execution_error")
    recorded = next(m for m in recorded_messages(rec["websocket"]) if m["type"] == "execution_error")
    assert set(error["data"]["current_inputs"]) == {"seed", "strength"}
    assert_same_shape(
        {k: v for k, v in recorded["data"].items() if k != "current_inputs"},
        {k: v for k, v in error["data"].items() if k != "current_inputs"},
    )
    assert error["data"]["node_id"] == "4" and error["data"]["prompt_id"] == pid


async def test_svd_seed_workflow_with_upload(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    rec = load("ws-svd_seed_workflow-standin_models.json")
    source = Image.new("RGB", (160, 90), (30, 160, 60))
    source.paste((220, 40, 40), (0, 0, 80, 90))
    buf = io.BytesIO()
    source.save(buf, format="PNG")
    uploaded = await upload(session, server.url, buf.getvalue(), "svd-standin-43697c.png")
    assert uploaded == rec["upload_image"]["response"]["json"]
    seed = json.loads(SVD_SEED.read_text(encoding="utf-8"))
    seed["23"]["inputs"]["image"] = uploaded["name"]
    for node in seed.values():
        node.pop("_meta", None)  # the recorder stripped titles too
    cid = uuid.uuid4().hex
    client = await WsClient.connect(session, server.url, cid)
    await client.next()
    pid = await post(session, server, {"prompt": seed, "client_id": cid})
    await client.until_done()
    assert_messages_conform(recorded_messages(rec["websocket"]), client.messages)
    entry = await check_history(server, session, rec, pid)
    item = entry["outputs"]["24"]["gifs"][0]
    assert item["filename"] == "SVD_img2vid_00001.gif" and item["format"] == "image/gif"
    async with session.get(server.url + "/view", params={"filename": item["filename"], "type": "output"}) as resp:
        gif = Image.open(io.BytesIO(await resp.read()))
    assert gif.n_frames == 14
    first = gif.convert("RGB").resize((32, 18))
    expected = source.resize((32, 18))
    diff = [abs(a - b) for a, b in zip(ImageStat.Stat(first).mean, ImageStat.Stat(expected).mean)]
    assert max(diff) < 12, diff
    # left half red, right half green, as in the PNG
    assert first.getpixel((4, 9))[0] > 150 and first.getpixel((28, 9))[1] > 120


async def test_cached_rerun_points_to_same_file(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    rec = load("ws-cached_rerun.json")
    first = await replay_simple(server, session, rec["first_run"])
    second = await replay_simple(server, session, rec["second_run"])
    assert first["outputs"] == second["outputs"]


@pytest.mark.parametrize("name", ["ws-interrupted-global.json", "ws-interrupted-by_prompt_id.json"])
async def test_interrupt(env: tuple[ComfyTestServer, aiohttp.ClientSession], name: str) -> None:
    server, session = env
    server.step_time = 0.005
    rec = load(name)
    await warm_cache(server, session, rec["workflow"], _recorded_cached(rec))
    cid = uuid.uuid4().hex
    client = await WsClient.connect(session, server.url, cid)
    await client.next()
    body = copy.deepcopy(rec["post_prompt"]["request"]["json"])
    body["client_id"] = cid
    pid = await post(session, server, body)
    await client.until(lambda m: m["type"] == "progress" and m["data"]["value"] >= 5)
    for key in ("GET_queue_while_running", "GET_prompt_while_running"):
        async with session.get(server.url + rec[key]["request"]["url"]) as resp:
            assert_same_shape(rec[key]["response"]["json"], await resp.json())
    interrupt = {"prompt_id": pid} if "json" in rec["POST_interrupt"]["request"] else None
    async with session.post(server.url + "/interrupt", json=interrupt) as resp:
        assert resp.status == 200
    await client.until_done()
    assert_messages_conform(recorded_messages(rec["websocket"]), client.messages)
    entry = await check_history(server, session, rec, pid)
    assert entry["outputs"] == {} and entry["status"]["messages"][-1][0] == "execution_interrupted"


async def test_two_clients(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    rec = load("ws-two_clients.json")
    await warm_cache(server, session, rec["workflow"], _recorded_cached(rec))
    ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    clients = [await WsClient.connect(session, server.url, i) for i in ids]
    for c in clients:
        await c.next()
    pid = await post(session, server, {"prompt": rec["workflow"], "client_id": ids[0]})
    await clients[0].until_done()
    await clients[1].until(lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
    for recorded, client in zip(rec["websockets"], clients):
        assert_messages_conform(recorded_messages(recorded), client.messages)
        await client.close()
    await check_history(server, session, rec, pid)


async def test_two_clients_prompt_without_client_id(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    rec = load("ws-two_clients-prompt_without_client_id.json")
    await warm_cache(server, session, rec["workflow"], _recorded_cached(rec))
    clients = [await WsClient.connect(session, server.url, uuid.uuid4().hex) for _ in range(2)]
    for c in clients:
        await c.next()
    await post(session, server, {"prompt": rec["workflow"]})
    for recorded, client in zip(rec["websockets"], clients):
        await client.until(lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
        assert_messages_conform(recorded_messages(recorded), client.messages)
        await client.close()


async def test_reconnect_same_client_id(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    server.step_time = 0.01
    rec = load("ws-reconnect_same_clientId.json")
    await warm_cache(server, session, rec["workflow"], _recorded_cached(rec))
    cid = uuid.uuid4().hex
    before = await WsClient.connect(session, server.url, cid)
    await before.next()
    pid = await post(session, server, {"prompt": rec["workflow"], "client_id": cid})
    await before.until(lambda m: m["type"] == "progress" and m["data"]["node"] == "9" and m["data"]["value"] >= 3)
    await before.close()
    after = await WsClient.connect(session, server.url, cid)
    await after.until_done()
    await after.close()
    assert_messages_conform(recorded_messages(rec["websocket_before_disconnect"]), before.messages)
    # progress may or may not still be running when the new socket arrives
    assert_messages_conform(
        recorded_messages(rec["websocket_after_reconnect"]), after.messages, drop={"progress", "progress_state"}
    )
    assert after.messages[1] == {"type": "executing", "data": {"node": "9"}}
    await check_history(server, session, rec, pid)


async def test_queue_management(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    server.step_time = 0.005
    rec = load("ws-queue_management.json")
    reqs = rec["requests"]
    cid = uuid.uuid4().hex
    client = await WsClient.connect(session, server.url, cid)
    await client.next()
    ids: dict[str, str] = {}
    numbers: dict[str, float] = {}
    for key in ("POST_prompt_running", "POST_prompt_pending_a", "POST_prompt_pending_b", "POST_prompt_pending_c_front"):
        body = copy.deepcopy(reqs[key]["request"]["json"])
        body["client_id"] = cid
        async with session.post(server.url + "/prompt", json=body) as resp:
            reply = await resp.json()
        ids[key], numbers[key] = reply["prompt_id"], reply["number"]
        if key == "POST_prompt_running":
            await client.until(lambda m: m["type"] == "execution_start")
    assert numbers["POST_prompt_pending_c_front"] < 0 < numbers["POST_prompt_pending_a"] < numbers["POST_prompt_pending_b"]

    async def get(url: str) -> Any:
        async with session.get(server.url + url) as resp:
            assert resp.status == 200
            return await resp.json()

    async def post_json(url: str, body: dict[str, Any]) -> None:
        async with session.post(server.url + url, json=body) as resp:
            assert resp.status == 200 and await resp.read() == b""

    queue = await get("/queue")
    assert_same_shape(reqs["GET_queue_busy"]["response"]["json"], queue)
    assert queue["queue_pending"][0][1] == ids["POST_prompt_pending_c_front"]  # heap head
    assert await get("/prompt") == reqs["GET_prompt_busy"]["response"]["json"]
    jobs = await get("/api/jobs?limit=5")
    assert [j["status"] for j in jobs["jobs"][:4]] == ["pending", "pending", "pending", "in_progress"]
    assert_same_shape(reqs["GET_api_jobs_busy"]["response"]["json"]["jobs"][0], jobs["jobs"][0])
    await post_json("/queue", {"delete": [ids["POST_prompt_pending_a"]]})
    queue = await get("/queue")
    assert ids["POST_prompt_pending_a"] not in [i[1] for i in queue["queue_pending"]]
    await post_json("/queue", {"delete": [ids["POST_prompt_running"]]})
    await post_json("/queue", {"clear": True})
    queue = await get("/queue")
    assert queue["queue_pending"] == [] and queue["queue_running"][0][1] == ids["POST_prompt_running"]
    await post_json("/interrupt", {"prompt_id": ids["POST_prompt_pending_a"]})
    assert (await get("/queue"))["queue_running"][0][1] == ids["POST_prompt_running"]
    await post_json("/interrupt", {"prompt_id": ids["POST_prompt_running"]})
    await client.until_done()
    assert await get("/queue") == reqs["GET_queue_idle"]["response"]["json"]
    assert await get(f"/history/{ids['POST_prompt_pending_a']}") == {}
    # status broadcasts interleave with timing; the rest must follow the recording
    assert_messages_conform(recorded_messages(rec["websocket"]), client.messages, drop={"status", "progress", "progress_state", "executing"})
    await client.close()


async def test_api_prefix_websocket(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    server.step_time = 0.002
    rec = load("ws-api_prefix.json")
    graph = load("ws-two_clients-prompt_without_client_id.json")["workflow"]
    await post(session, server, {"prompt": graph}, path="/api/prompt")  # a job of someone else, no client_id
    client = await WsClient.connect(session, server.url, uuid.uuid4().hex, path="/api/ws")
    await client.until(lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
    await client.close()
    recorded = recorded_messages(rec["websocket"])
    assert client.messages[0]["type"] == "status" and "sid" in client.messages[0]["data"]
    assert {m["type"] for m in client.messages} <= {"status", "progress", "progress_state"}
    assert_messages_conform(recorded, client.messages[: len(recorded)], drop={"status"})


async def test_connect_without_client_id(env: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = env
    rec = load("ws-connect_without_clientId.json")
    client = await WsClient.connect(session, server.url, None)
    await client.next()
    await client.close()
    assert_messages_conform(recorded_messages(rec["websocket"]), client.messages)
    assert len(client.messages[0]["data"]["sid"]) == len(rec["websocket"]["messages"][0]["data"]["data"]["sid"])
