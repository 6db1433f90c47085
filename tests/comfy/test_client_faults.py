"""ComfyClient against tiny inline aiohttp apps: status mapping, retries, timeouts, auth,
prefixes, the /view byte cap, uploads. Nothing here needs the full test server."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.comfy.errors import (
    ComfyAuthError,
    ComfyBadRequest,
    ComfyBadResponse,
    ComfyError,
    ComfyNotFound,
    ComfyServerError,
    ComfyTimeout,
    ComfyTooLarge,
    ComfyUnreachable,
    ComfyValidationError,
)
from bot.comfy.models import FileRef

from .conftest import Serve, load_fixture, make_client

TOKEN = "s3cret-token-value"
PASSWORD = "hunter2-pass"


class Recorder:
    """An app whose routes answer from a script and record every request."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.hits: dict[str, int] = {}

    def route(self, method: str, path: str, handler: Any) -> None:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.method, request.path_qs, dict(request.headers)))
            self.hits[request.path] = self.hits.get(request.path, 0) + 1
            return await handler(request, self.hits[request.path])

        self.app.router.add_route(method, path, wrapped)


def _assert_clean(err: ComfyError, url: str) -> None:
    host = url.split("//", 1)[1]
    for text in (str(err), repr(err), err.message):
        assert host not in text and "127.0.0.1" not in text and TOKEN not in text and PASSWORD not in text
    assert "gpu-box" in str(err) and err.server == "gpu-box"


async def test_unreachable_closed_port(session: aiohttp.ClientSession, closed_port_url: str) -> None:
    client = make_client(session, closed_port_url, token=TOKEN, retries=2)
    with pytest.raises(ComfyUnreachable) as info:
        await client.system_stats()
    _assert_clean(info.value, closed_port_url)
    with pytest.raises(ComfyUnreachable):
        await client.queue_prompt({}, client_id="c")


async def test_timeout_on_slow_route(session: aiohttp.ClientSession, serve: Serve) -> None:
    rec = Recorder()

    async def slow(request: web.Request, n: int) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    rec.route("GET", "/queue", slow)
    rec.route("POST", "/prompt", slow)
    url = await serve(rec.app)
    client = make_client(session, url, timeout=0.2, retries=1)
    with pytest.raises(ComfyTimeout) as info:
        await client.get_queue()
    _assert_clean(info.value, url)
    assert rec.hits["/queue"] == 2  # a GET is retried after a timeout
    with pytest.raises(ComfyTimeout):
        await client.queue_prompt({"1": {}}, client_id="c")
    assert rec.hits["/prompt"] == 1  # POST /prompt never is


async def test_get_retried_on_5xx_until_success(session: aiohttp.ClientSession, serve: Serve) -> None:
    rec = Recorder()

    async def flaky(request: web.Request, n: int) -> web.Response:
        if n < 3:
            return web.Response(status=502 if n == 1 else 503, text="proxy says no")
        return web.json_response({"exec_info": {"queue_remaining": 4}})

    rec.route("GET", "/prompt", flaky)
    client = make_client(session, await serve(rec.app), retries=3)
    assert await client.queue_remaining() == 4
    assert rec.hits["/prompt"] == 3


async def test_500_after_retries_and_post_prompt_never_retried(session: aiohttp.ClientSession, serve: Serve) -> None:
    rec = Recorder()

    async def boom(request: web.Request, n: int) -> web.Response:
        return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")

    rec.route("GET", "/history", boom)
    rec.route("POST", "/prompt", boom)
    url = await serve(rec.app)
    client = make_client(session, url, retries=2)
    with pytest.raises(ComfyServerError) as info:
        await client.get_history()
    assert info.value.status == 500 and rec.hits["/history"] == 3
    _assert_clean(info.value, url)
    with pytest.raises(ComfyServerError):
        await client.queue_prompt({"1": {}}, client_id="c", prompt_id="p1")
    assert rec.hits["/prompt"] == 1


async def test_status_table(session: aiohttp.ClientSession, serve: Serve) -> None:
    rec = Recorder()
    statuses = {"/a401": 401, "/a403": 403, "/a404": 404, "/a405": 405, "/a400": 400}

    async def answer(request: web.Request, n: int) -> web.Response:
        return web.Response(status=statuses[request.path], text="no")

    for path in statuses:
        rec.route("GET", path, answer)
    client = make_client(session, await serve(rec.app), token=TOKEN)
    expected = {"/a401": ComfyAuthError, "/a403": ComfyAuthError, "/a404": ComfyNotFound, "/a405": ComfyBadRequest, "/a400": ComfyBadRequest}
    for path, cls in expected.items():
        with pytest.raises(cls) as info:
            await client._json("GET", path, retry=True)
        assert info.value.status == statuses[path]
    assert all(rec.hits[p] == 1 for p in statuses)  # 4xx is never retried


async def test_validation_error_from_400(session: aiohttp.ClientSession, serve: Serve) -> None:
    recorded = load_fixture("http-prompt-validation_errors.json")["cases"]
    rec = Recorder()

    async def refuse(request: web.Request, n: int) -> web.Response:
        body = await request.json()
        case = "POST_unknown_class_type" if "4" in body["prompt"] else "POST_int_below_min"
        return web.json_response(recorded[case]["response"]["json"], status=400)

    rec.route("POST", "/prompt", refuse)
    url = await serve(rec.app)
    client = make_client(session, url)
    with pytest.raises(ComfyValidationError) as info:
        await client.queue_prompt({"3": {"class_type": "RepeatImageBatch"}}, client_id="c")
    err = info.value
    assert err.summary == "RepeatImageBatch #3: amount: Value 0 smaller than min of 1"
    assert err.node_errors["3"]["class_type"] == "RepeatImageBatch" and err.error_type == "prompt_outputs_failed_validation"
    _assert_clean(err, url)
    with pytest.raises(ComfyValidationError) as info:
        await client.queue_prompt({"4": {"class_type": "NoSuchNodeType"}}, client_id="c")
    assert info.value.node_errors == {} and info.value.error_type == "invalid_prompt"
    assert "NoSuchNodeType" in info.value.summary and "#4" in info.value.summary
    assert rec.hits["/prompt"] == 2


async def test_non_json_answer_is_bad_response(session: aiohttp.ClientSession, serve: Serve) -> None:
    rec = Recorder()

    async def html(request: web.Request, n: int) -> web.Response:
        return web.Response(text="<html>login</html>", content_type="text/html")

    rec.route("GET", "/system_stats", html)
    with pytest.raises(ComfyBadResponse):
        await make_client(session, await serve(rec.app)).system_stats()


def _echo_app(prefix: str) -> Recorder:
    rec = Recorder()

    async def stats(request: web.Request, n: int) -> web.Response:
        return web.json_response(load_fixture("http-system_stats.json")["response"]["json"])

    rec.route("GET", prefix + "/system_stats", stats)
    return rec


async def test_bearer_token_path_prefix_and_api_prefix(session: aiohttp.ClientSession, serve: Serve) -> None:
    rec = _echo_app("/comfy/api")
    base = await serve(rec.app)
    client = make_client(session, base + "/comfy", token=TOKEN, api_prefix=True)
    stats = await client.system_stats()
    assert stats.comfyui_version == "0.8.0"
    method, path, headers = rec.requests[0]
    assert path == "/comfy/api/system_stats" and headers["Authorization"] == f"Bearer {TOKEN}"
    assert client.ws_url("abc") == base.replace("http://", "ws://") + "/comfy/api/ws?clientId=abc"
    assert client.auth_headers() == {"Authorization": f"Bearer {TOKEN}"}
    assert TOKEN not in repr(client) and "127.0.0.1" not in repr(client)


async def test_basic_auth_sent(session: aiohttp.ClientSession, serve: Serve) -> None:
    rec = _echo_app("")
    client = make_client(session, await serve(rec.app), username="alice", password=PASSWORD)
    await client.system_stats()
    expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert rec.requests[0][2]["Authorization"] == expected


async def test_auth_refused_is_auth_error_without_secrets(session: aiohttp.ClientSession, serve: Serve) -> None:
    rec = Recorder()

    async def guard(request: web.Request, n: int) -> web.Response:
        if request.headers.get("Authorization") != "Bearer right":
            return web.Response(status=401, text=f"bad token {request.headers.get('Authorization')}")
        return web.json_response({"supports_preview_metadata": True})

    rec.route("GET", "/features", guard)
    url = await serve(rec.app)
    with pytest.raises(ComfyAuthError) as info:
        await make_client(session, url, token=TOKEN).features()
    _assert_clean(info.value, url)
    assert await make_client(session, url, token="right").features() == {"supports_preview_metadata": True}


def _file_app(payload: bytes, *, chunked: bool) -> Recorder:
    rec = Recorder()

    async def view(request: web.Request, n: int) -> web.StreamResponse:
        if request.query.get("filename") != "out.gif":
            return web.Response(status=404)
        if not chunked:
            return web.Response(body=payload, content_type="image/gif")
        resp = web.StreamResponse(headers={"Content-Type": "image/gif"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(payload), 10_000):
            await resp.write(payload[i : i + 10_000])
        await resp.write_eof()
        return resp

    rec.route("GET", "/view", view)
    return rec


@pytest.mark.parametrize("chunked", [False, True])
async def test_view_byte_cap(session: aiohttp.ClientSession, serve: Serve, tmp_path: Path, chunked: bool) -> None:
    payload = bytes(range(256)) * 800  # 204800 bytes
    rec = _file_app(payload, chunked=chunked)
    client = make_client(session, await serve(rec.app))
    ref = FileRef("out.gif", "", "output")
    assert await client.view(ref, max_bytes=len(payload)) == payload
    assert rec.requests[0][1].startswith("/view?") and "filename=out.gif" in rec.requests[0][1] and "type=output" in rec.requests[0][1]
    with pytest.raises(ComfyTooLarge):
        await client.view(ref, max_bytes=len(payload) - 1)
    dest = tmp_path / "result.gif"
    assert await client.download(ref, dest, max_bytes=len(payload)) == len(payload)
    assert dest.read_bytes() == payload
    other = tmp_path / "too-big.gif"
    with pytest.raises(ComfyTooLarge):
        await client.download(ref, other, max_bytes=1000)
    assert list(tmp_path.iterdir()) == [dest]  # no partial file left behind
    with pytest.raises(ComfyNotFound):
        await client.view(FileRef("missing.gif"), max_bytes=10)


async def test_upload_returns_server_name_and_sends_fields(session: aiohttp.ClientSession, serve: Serve) -> None:
    rec = Recorder()
    seen: list[dict[str, Any]] = []

    async def upload(request: web.Request, n: int) -> web.Response:
        form = await request.post()
        fields = {k: (v.filename, v.file.read()) if hasattr(v, "filename") else v for k, v in form.items()}
        seen.append(fields)
        return web.json_response({"name": "peer (1).png", "subfolder": form.get("subfolder", ""), "type": form.get("type", "input")})

    rec.route("POST", "/upload/image", upload)
    rec.route("POST", "/upload/mask", upload)
    client = make_client(session, await serve(rec.app))
    ref = await client.upload_image(b"PNGDATA", "peer.png", subfolder="discord", overwrite=True)
    assert ref == FileRef("peer (1).png", "discord", "input")
    assert seen[0]["image"] == ("peer.png", b"PNGDATA") and seen[0]["overwrite"] == "true" and seen[0]["subfolder"] == "discord"
    mask = await client.upload_mask(b"M", "mask.png", original_ref=FileRef("peer.png", "", "input"))
    assert mask.filename == "peer (1).png"
    assert json.loads(seen[1]["original_ref"]) == {"filename": "peer.png", "subfolder": "", "type": "input"}
