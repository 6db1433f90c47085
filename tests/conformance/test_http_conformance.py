"""Every recorded HTTP exchange (tests/fixtures/comfyui/http-*.json) replayed against the test server.

Status, content type, keys and value types must match; ids, timestamps and paths may differ.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from standins.comfy_server import ComfyTestServer
from standins.wait import wait_until

from .helpers import assert_same_shape, load, png_bytes

BROKEN = b"this is not a png at al"  # 23 bytes, like the recording


def _content_for(field: dict[str, Any]) -> bytes:
    if field["size"] == 23:
        return BROKEN
    # 1284-byte uploads in the recording are one image, other sizes another one
    return png_bytes(0 if field["size"] in (1284, 1315) else 1)


async def replay(session: aiohttp.ClientSession, base: str, req: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    method, url = req["method"], base + req["url"]
    kwargs: dict[str, Any] = {}
    if "multipart_fields" in req:
        form = aiohttp.FormData()
        for field in req["multipart_fields"]:
            if "filename" in field:
                form.add_field(field["name"], _content_for(field), filename=field["filename"], content_type=field["content_type"])
            else:
                form.add_field(field["name"], field["value"])
        kwargs["data"] = form
    elif "raw_body" in req:
        kwargs["data"] = req["raw_body"]
        kwargs["headers"] = req.get("headers", {})
    elif "json" in req:
        kwargs["json"] = req["json"]
    async with session.request(method, url, **kwargs) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def assert_response(recorded: dict[str, Any], status: int, headers: dict[str, str], body: bytes) -> Any:
    assert status == recorded["status"], body[:300]
    rec_type = recorded["headers"].get("Content-Type")
    if rec_type:
        assert headers.get("Content-Type", "").split(";")[0] == rec_type.split(";")[0]
    if "Content-Disposition" in recorded["headers"]:
        assert headers["Content-Disposition"] == recorded["headers"]["Content-Disposition"]
    if "json" in recorded:
        actual = json.loads(body)
        assert_same_shape(recorded["json"], actual)
        return actual
    if "text" in recorded:
        assert body.decode() == recorded["text"]
    if "body" in recorded:
        rec = recorded["body"]
        if rec["size"] == 0:
            assert body == b""
        else:
            assert body[:4].hex() == rec["first8_hex"][:8]
    return None


@pytest.fixture
async def seeded(comfy_server: ComfyTestServer) -> AsyncIterator[tuple[ComfyTestServer, aiohttp.ClientSession]]:
    """The server with the files the recordings assume: peer-test.png, a subfolder, temp, output, a lora."""
    root = comfy_server.root
    (root / "input" / "peer-test.png").write_bytes(png_bytes(0))
    (root / "input" / "discord" / "abc").mkdir(parents=True)
    (root / "input" / "discord" / "abc" / "peer-a51c9e.png").write_bytes(png_bytes(0))
    (root / "temp" / "peer-a51c9e-tmp.png").write_bytes(png_bytes(0))
    (root / "output" / "peer-a51c9e-out.png").write_bytes(png_bytes(0))
    header = json.dumps({"__metadata__": {"ss_network_dim": "4", "modelspec.title": "peer tiny test file"}}).encode()
    (root / "models" / "loras").mkdir(parents=True)
    (root / "models" / "loras" / "peer-tiny-meta.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    async with aiohttp.ClientSession() as session:
        yield comfy_server, session


SINGLE = ["http-system_stats.json", "http-features.json"] + [
    f"http-object_info-{c}.json"
    for c in (
        "ImageOnlyCheckpointLoader",
        "KSampler",
        "LoadImage",
        "NoSuchNode",
        "SVD_img2vid_Conditioning",
        "SaveAnimatedWEBP",
        "VHS_VideoCombine",
        "VideoLinearCFGGuidance",
    )
]


@pytest.mark.parametrize("name", SINGLE)
async def test_single_exchange(seeded: tuple[ComfyTestServer, aiohttp.ClientSession], name: str) -> None:
    server, session = seeded
    rec = load(name)
    status, headers, body = await replay(session, server.url, rec["request"])
    assert_response(rec["response"], status, headers, body)


async def test_object_info_definitions_match_recordings(seeded: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = seeded
    more = load("http-object_info-more.json")["classes"]
    for name, definition in more.items():
        async with session.get(f"{server.url}/object_info/{name}") as resp:
            assert resp.status == 200
            assert (await resp.json()) == {name: definition}
    summary = load("http-object_info-all.json")["response"]["json_summary"]
    async with session.get(server.url + "/object_info") as resp:
        everything = await resp.json()
    assert set(more) <= set(everything) <= set(summary["node_classes"])
    fields = next(v for k, v in summary.items() if "field" in k)
    for definition in everything.values():
        assert set(fields) - {"output_tooltips"} <= set(definition)  # not every class has it


@pytest.mark.parametrize(
    "name", ["http-upload_image.json", "http-upload_mask.json", "http-view.json", "http-view_metadata.json"]
)
async def test_case_files_in_order(seeded: tuple[ComfyTestServer, aiohttp.ClientSession], name: str) -> None:
    server, session = seeded
    for case_name, case in load(name)["cases"].items():
        status, headers, body = await replay(session, server.url, case["request"])
        actual = assert_response(case["response"], status, headers, body)
        if actual is not None and "name" in case["response"]["json"]:
            assert actual == case["response"]["json"], case_name


async def test_upload_mask_traversal_writes_nothing(seeded: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = seeded
    case = load("http-upload_mask.json")["cases"]["original_ref_traversal"]
    await replay(session, server.url, case["request"])
    assert not (server.root / "input" / "clipspace-mask2-a51c9e.png").exists()


async def test_prompt_validation_errors(seeded: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = seeded
    server.checkpoints = []  # as recorded: no checkpoint installed
    for case_name, case in load("http-prompt-validation_errors.json")["cases"].items():
        status, headers, body = await replay(session, server.url, case["request"])
        actual = assert_response(case["response"], status, headers, body)
        if status == 400:
            assert actual == case["response"]["json"], case_name


async def _run_recorded_gif(
    server: ComfyTestServer, session: aiohttp.ClientSession, graph: dict[str, Any] | None = None, **extra: Any
) -> str:
    body = {"prompt": graph or load("ws-success-vhs_gif.json")["workflow"], **extra}
    async with session.post(server.url + "/prompt", json=body) as resp:
        assert resp.status == 200
        pid = (await resp.json())["prompt_id"]

    async def finished() -> bool:
        async with session.get(f"{server.url}/history/{pid}") as resp:
            return bool(await resp.json())

    await wait_until(finished, timeout=8, what=f"prompt {pid} to finish")
    return pid


async def test_history_and_jobs(seeded: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = seeded
    first = await _run_recorded_gif(
        server, session, prompt_id="5530af54-5014-4d34-98ab-b118f544a9c2", extra_data={"discord": {"channel": 1, "user": 2}}, client_id="c1"
    )
    second = await _run_recorded_gif(server, session, client_id="c1")
    third = await _run_recorded_gif(server, session, client_id="c1")
    cases = load("http-history.json")["cases"]
    async with session.get(server.url + "/history") as resp:
        everything = await resp.json()
    assert list(everything) == [first, second, third]
    for entry in everything.values():
        assert sorted(entry) == cases["GET_history_all_summary"]["response"]["json_summary"]["entry_keys"]
    for name, case in cases.items():
        if name == "GET_history_all_summary":
            continue
        req = dict(case["request"])
        req["url"] = req["url"].replace("5530af54-5014-4d34-98ab-b118f544a9c2", first)
        req["url"] = req["url"].replace("4cf31a6a-130c-466d-ae4d-04cd78d46a08", second)
        if "json" in req:
            req["json"] = {"delete": [second]}
        status, headers, body = await replay(session, server.url, req)
        recorded = case["response"]
        if name == "GET_history_max_items_2":
            assert list(json.loads(body)) == [second, third]
            continue
        if name == "GET_api_jobs_summary":
            assert status == 200
            actual = json.loads(body)
            assert set(actual) == set(recorded["json"])
            assert set(actual["pagination"]) == set(recorded["json"]["pagination"])
            assert [j["id"] for j in actual["jobs"]] == [third, second, first]
            assert_same_shape(recorded["json"]["jobs"][1], actual["jobs"][0])
            continue
        actual = assert_response(recorded, status, headers, body)
        if name == "GET_history_max_items_1_offset_0":
            assert list(actual) == [first]
            assert actual[first]["prompt"][3]["discord"] == {"channel": 1, "user": 2}
    async with session.get(f"{server.url}/history/{second}") as resp:
        assert await resp.json() == {}


async def test_api_prefix_routes(seeded: tuple[ComfyTestServer, aiohttp.ClientSession]) -> None:
    server, session = seeded
    cases = load("http-api_prefix.json")["cases"]
    recorded_entry = next(iter(cases["GET /api/history/{id}"]["response"]["json"].values()))
    pid = await _run_recorded_gif(server, session, recorded_entry["prompt"][2], client_id="c1")
    for name, case in cases.items():
        req = dict(case["request"])
        req["url"] = req["url"].replace("ac5fb2c8-f496-4cf4-85c3-356d7f040e19", pid)
        status, headers, body = await replay(session, server.url, req)
        if name == "GET /api/history?max_items=1":
            # the recorded newest entry was an interrupted run; here it is a finished one
            assert status == 200 and set(json.loads(body)[pid]) == {"prompt", "outputs", "status", "meta"}
            continue
        assert_response(case["response"], status, headers, body)
