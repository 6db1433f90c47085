"""No POST is ever sent twice: a global clear repeated late would wipe what came after it.

Issue 13, defect 4: ``POST /queue {"clear": true}`` and ``POST /history {"clear": true}`` were
retried like GETs. Against the ComfyUI test server's fault knobs (a 500, an answer cut half-way,
no answer in time) each clear (and each delete) is sent exactly once and its failure is raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bot.comfy.client import ComfyClient
from bot.comfy.errors import ComfyServerError, ComfyTimeout, ComfyUnreachable
from bot.settings import ServerConfig
from standins.comfy_server import ComfyTestServer

pytestmark = pytest.mark.timeout(30)

Call = Callable[[ComfyClient], Awaitable[Any]]

CALLS: dict[str, tuple[str, Call]] = {
    "clear_queue": ("/queue", lambda c: c.clear_queue()),
    "clear_history": ("/history", lambda c: c.clear_history()),
    "delete_queued": ("/queue", lambda c: c.delete_queued(["nothing"])),
    "delete_history": ("/history", lambda c: c.delete_history(["nothing"])),
}


def _client(session: aiohttp.ClientSession, server: ComfyTestServer, *, timeout: float = 5.0) -> ComfyClient:
    # retries=3: a retried request would be sent four times
    return ComfyClient(session, ServerConfig(name="gpu", url=server.url), timeout=timeout, retries=3, backoff=0.01)


def _posts(server: ComfyTestServer, path: str) -> int:
    return server.requests.count(("POST", path))


@pytest.mark.parametrize("name", list(CALLS))
async def test_a_500_is_not_retried(comfy_server: ComfyTestServer, name: str) -> None:
    path, call = CALLS[name]
    comfy_server.http_faults[path] = 500
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ComfyServerError):
            await call(_client(session, comfy_server))
    assert _posts(comfy_server, path) == 1


@pytest.mark.parametrize("name", ["clear_queue", "clear_history"])
async def test_an_answer_cut_half_way_is_not_retried(comfy_server: ComfyTestServer, name: str) -> None:
    path, call = CALLS[name]
    comfy_server.http_faults[path] = "cut-once"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ComfyUnreachable):
            await call(_client(session, comfy_server))
    assert _posts(comfy_server, path) == 1


@pytest.mark.parametrize("name", ["clear_queue", "clear_history"])
async def test_no_answer_in_time_is_not_retried(comfy_server: ComfyTestServer, name: str) -> None:
    path, call = CALLS[name]
    comfy_server.http_faults[path] = "slow"
    comfy_server.slow_seconds = 2.0
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ComfyTimeout):
            await call(_client(session, comfy_server, timeout=0.3))
    assert _posts(comfy_server, path) == 1


async def test_a_get_is_still_retried(comfy_server: ComfyTestServer) -> None:
    comfy_server.http_faults["/queue"] = 500
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ComfyServerError):
            await _client(session, comfy_server).get_queue()
    assert comfy_server.requests.count(("GET", "/queue")) == 4


async def test_retry_true_on_a_post_is_ignored(comfy_server: ComfyTestServer) -> None:
    """The rule lives in the client's plumbing, not only in each method's ``retry=False``."""
    comfy_server.http_faults["/interrupt"] = 500
    async with aiohttp.ClientSession() as session:
        client = _client(session, comfy_server)
        with pytest.raises(ComfyServerError):
            await client._no_body("POST", "/interrupt", retry=True, json_body={})
    assert _posts(comfy_server, "/interrupt") == 1
