"""ComfyHub driven frame by frame by the scripted MiniComfy (tests/comfy/conftest.py)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.comfy import events as ev
from bot.comfy.client_id import client_id_path, load_or_create_client_id
from bot.comfy.hub import FEATURE_FLAGS, ComfyHub, Subscription

from .conftest import MiniComfy, make_client

PNG = bytes.fromhex("89504e470d0a1a0a") + b"png-body"


def make_hub(session: aiohttp.ClientSession, url: str, client_id: str = "hubclient01", **kwargs: Any) -> ComfyHub:
    client = make_client(session, url, token=kwargs.pop("token", None))
    kwargs.setdefault("reconnect_min", 0.02)
    kwargs.setdefault("reconnect_max", 0.1)
    return ComfyHub(client, session, client_id, **kwargs)


async def drain(sub: Subscription, until: type, timeout: float = 3.0) -> list[Any]:
    got: list[Any] = []
    while True:
        event = await sub.get(timeout=timeout)
        got.append(event)
        if isinstance(event, until):
            return got


async def run_job(fake: MiniComfy, cid: str, pid: str, node: str = "9") -> None:
    await fake.send(cid, "execution_start", {"prompt_id": pid, "timestamp": 1})
    await fake.send(cid, "executing", {"node": node, "display_node": node, "prompt_id": pid})


async def test_feature_flags_first_client_id_and_auth_on_handshake(session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]) -> None:
    fake, url = mini
    async with make_hub(session, url, token="tok-123") as hub:
        assert await hub.wait_connected(3)
        assert hub.connected and fake.connects == ["hubclient01"]
        await fake.wait_for(lambda: fake.received["hubclient01"], "first frame from the hub")
        assert fake.received["hubclient01"][0] == FEATURE_FLAGS
        assert fake.handshake_headers[0]["Authorization"] == "Bearer tok-123"
    assert not hub.connected


async def test_two_overlapping_jobs_get_only_their_own_events(session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]) -> None:
    fake, url = mini
    async with make_hub(session, url) as hub:
        assert await hub.wait_connected(3)
        a, b = hub.subscribe("A"), hub.subscribe("B")
        await run_job(fake, hub.client_id, "A", "3")
        await fake.send_bytes(hub.client_id, ev.encode_preview(PNG))  # type 1: goes to the running prompt (A)
        await fake.send(hub.client_id, "progress", {"value": 1, "max": 2, "prompt_id": "A", "node": "3"})
        await fake.send_bytes(hub.client_id, ev.encode_preview_with_metadata(PNG, {"node_id": "5", "prompt_id": "B", "image_type": "image/png"}))
        await fake.send(hub.client_id, "execution_success", {"prompt_id": "A", "timestamp": 2})
        await fake.send(hub.client_id, "executing", {"node": None, "prompt_id": "A"})
        await run_job(fake, hub.client_id, "B", "7")
        await fake.send_bytes(hub.client_id, ev.encode_preview(b"\xff\xd8jpg", "image/jpeg"))  # now B runs
        await fake.send(hub.client_id, "execution_error", {"prompt_id": "B", "node_id": "7", "node_type": "KSampler", "exception_type": "RuntimeError", "exception_message": "boom", "traceback": []})
        got_a = await drain(a, ev.ExecutionSuccess)
        got_b = await drain(b, ev.ExecutionError)
        assert all(getattr(e, "prompt_id", None) == "A" for e in got_a)
        assert all(getattr(e, "prompt_id", None) == "B" for e in got_b)
        previews_a = [e for e in got_a if isinstance(e, ev.PreviewImage)]
        previews_b = [e for e in got_b if isinstance(e, ev.PreviewImage)]
        assert [(p.image, p.image_type) for p in previews_a] == [(PNG, "image/png")]
        assert [(p.image_type, p.node_id) for p in previews_b] == [("image/png", "5"), ("image/jpeg", None)]
        final = await a.get(timeout=2)
        assert isinstance(final, ev.Executing) and final.node is None and ev.is_terminal(final)
        assert a.pending() == 0 and b.pending() == 0


async def test_events_before_subscribe_are_buffered_briefly(session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]) -> None:
    fake, url = mini
    now = [1000.0]
    async with make_hub(session, url, clock=lambda: now[0], buffer_seconds=10) as hub:
        assert await hub.wait_connected(3)
        probe = hub.subscribe("probe")
        await run_job(fake, hub.client_id, "early")
        preview = ev.encode_preview_with_metadata(PNG, {"prompt_id": "early", "node_id": "3", "image_type": "image/png"})
        await fake.send_bytes(hub.client_id, preview)  # not kept: previews are big and stale later
        await fake.send(hub.client_id, "execution_start", {"prompt_id": "stale"})
        await fake.send(hub.client_id, "execution_start", {"prompt_id": "probe"})
        await probe.get(timeout=2)  # everything before it has been dispatched
        sub = hub.subscribe("early")  # the caller subscribed only after POST /prompt
        assert isinstance(await sub.get(timeout=1), ev.ExecutionStart)
        assert isinstance(await sub.get(timeout=1), ev.Executing)
        assert sub.pending() == 0
        now[0] += 11  # the buffer of a prompt nobody claimed expires
        late = hub.subscribe("stale")
        with pytest.raises(TimeoutError):
            await late.get(timeout=0.05)


async def test_status_updates_queue_remaining_and_callbacks(session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]) -> None:
    fake, url = mini
    seen: list[ev.StatusEvent] = []
    got = asyncio.Event()

    async def on_status(event: ev.StatusEvent) -> None:
        seen.append(event)
        if event.queue_remaining == 3:
            got.set()

    hub = make_hub(session, url)
    hub.on_status(on_status)
    await hub.start()
    try:
        assert await hub.wait_connected(3)
        await fake.send(hub.client_id, "status", {"status": {"exec_info": {"queue_remaining": 3}}})
        await asyncio.wait_for(got.wait(), 2)
        assert hub.queue_remaining == 3 and seen[0].sid == hub.client_id
    finally:
        await hub.close()


async def test_socket_drop_mid_run_reconnects_and_job_learns_outcome_from_history(
    session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]
) -> None:
    fake, url = mini
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    async with make_hub(session, url) as hub:
        hub.on_reconnect(on_reconnect)
        assert await hub.wait_connected(3)
        sub = hub.subscribe("P")
        await hub.client.queue_prompt({"1": {}}, client_id=hub.client_id, prompt_id="P")
        await run_job(fake, hub.client_id, "P")
        await drain(sub, ev.Executing)
        await fake.drop(hub.client_id)
        # the job finishes while the socket is away: its events are lost
        fake.history["P"] = {
            "prompt": [1, "P", {}, {}, ["9"]],
            "outputs": {"9": {"gifs": [{"filename": "x_00001.gif", "subfolder": "", "type": "output", "format": "image/gif"}]}},
            "status": {"status_str": "success", "completed": True, "messages": [["execution_success", {"prompt_id": "P"}]]},
        }
        event = await sub.get(timeout=3)
        assert event == ev.Reconnected("P")
        await asyncio.wait_for(reconnected.wait(), 2)
        assert fake.connects == [hub.client_id, hub.client_id]  # same clientId after the reconnect
        entry = await hub.client.get_history_entry("P")
        assert entry is not None and entry.succeeded and entry.output_files()[0].filename == "x_00001.gif"
        assert hub.connected


async def test_replayed_executing_after_reconnect_goes_to_the_prompt_that_was_running(
    session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]
) -> None:
    fake, url = mini
    async with make_hub(session, url) as hub:
        assert await hub.wait_connected(3)
        running, waiting = hub.subscribe("R"), hub.subscribe("W")
        await run_job(fake, hub.client_id, "R", node="5")
        assert [type(e) for e in await drain(running, ev.Executing)] == [ev.ExecutionStart, ev.Executing]
        await fake.drop(hub.client_id)
        assert await running.get(timeout=3) == ev.Reconnected("R")
        assert await waiting.get(timeout=3) == ev.Reconnected("W")
        await fake.send(hub.client_id, "executing", {"node": "9"})  # as recorded: no prompt_id
        await fake.send(hub.client_id, "execution_success", {"prompt_id": "R"})
        assert await running.get(timeout=2) == ev.Executing("R", "9")  # the follower sees the node
        assert isinstance(await running.get(timeout=2), ev.ExecutionSuccess)
        assert waiting.pending() == 0  # nothing leaked to the other prompt


async def test_replay_is_dropped_when_no_followed_prompt_was_running(
    session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]
) -> None:
    fake, url = mini
    async with make_hub(session, url) as hub:
        assert await hub.wait_connected(3)
        waiting = hub.subscribe("W")
        await fake.drop(hub.client_id)  # nothing was executing for this hub
        assert await waiting.get(timeout=3) == ev.Reconnected("W")
        await fake.send(hub.client_id, "executing", {"node": "9"})
        await fake.send(hub.client_id, "execution_start", {"prompt_id": "W"})
        assert isinstance(await waiting.get(timeout=2), ev.ExecutionStart)
        # a later prompt-less executing (not the replay) is not guessed either
        await run_job(fake, hub.client_id, "W")
        await fake.send(hub.client_id, "executing", {"node": "4"})
        await fake.send(hub.client_id, "execution_success", {"prompt_id": "W"})
        got = await drain(waiting, ev.ExecutionSuccess)
        assert [e for e in got if isinstance(e, ev.Executing)] == [ev.Executing("W", "9", "9")]


async def test_restarted_hub_with_same_data_dir_gets_events_of_earlier_prompt(
    session: aiohttp.ClientSession, mini: tuple[MiniComfy, str], tmp_path: Path
) -> None:
    fake, url = mini
    cid = load_or_create_client_id(tmp_path, "gpu-box")
    first = make_hub(session, url, cid)
    await first.start()
    assert await first.wait_connected(3)
    queued = await first.client.queue_prompt({"1": {}}, client_id=first.client_id, prompt_id="OLD")
    assert fake.posted[0]["client_id"] == cid and queued.prompt_id == "OLD"
    await first.close()

    second = make_hub(session, url, load_or_create_client_id(tmp_path, "gpu-box"))
    async with second:
        assert second.client_id == cid
        sub = second.subscribe("OLD")
        assert await second.wait_connected(3)
        await fake.wait_connects(2)
        await fake.send(cid, "executed", {"node": "9", "prompt_id": "OLD", "output": {"gifs": []}})
        await fake.send(cid, "execution_success", {"prompt_id": "OLD"})
        got = await drain(sub, ev.ExecutionSuccess)
        assert any(isinstance(e, ev.Executed) for e in got)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_server_down_at_start_then_comes_up(session: aiohttp.ClientSession) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    hub = make_hub(session, url)
    await hub.start()  # must not fail
    try:
        assert not hub.connected
        assert not await hub.wait_connected(0.1)
        fake = MiniComfy()
        runner = web.AppRunner(fake.app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            assert await hub.wait_connected(3)
            assert fake.connects == [hub.client_id]
        finally:
            await hub.close()
            await runner.cleanup()
    finally:
        await hub.close()


async def test_refused_handshake_is_retried(session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]) -> None:
    fake, url = mini
    fake.refuse_ws = True
    async with make_hub(session, url) as hub:
        await fake.wait_for(lambda: fake.count("GET", "/ws") >= 2, "second handshake")  # retried with backoff
        assert not hub.connected
        fake.refuse_ws = False
        assert await hub.wait_connected(3)


async def test_close_cancels_reader_and_ends_subscriptions(session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]) -> None:
    fake, url = mini
    hub = make_hub(session, url)
    await hub.start()
    assert await hub.wait_connected(3)
    sub = hub.subscribe("X")
    waiter = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)  # one turn of the loop: the waiter is now blocked inside the subscription
    await hub.close()
    with pytest.raises(StopAsyncIteration):
        await waiter
    assert [e async for e in sub] == []
    assert hub.subscribe("Y").closed


async def test_cancelling_the_closer_is_not_swallowed(session: aiohttp.ClientSession, closed_port_url: str) -> None:
    hub = make_hub(session, closed_port_url)
    failed = asyncio.Event()
    backoff = hub._backoff

    def spy(attempt: int) -> float:  # asked right after a connection attempt failed
        failed.set()
        return backoff(attempt)

    hub._backoff = spy  # type: ignore[method-assign]
    await hub.start()
    await asyncio.wait_for(failed.wait(), 5)  # the reader is retrying the closed port
    task = asyncio.create_task(hub.close())
    await asyncio.sleep(0)  # one turn of the loop: close() runs up to awaiting the cancelled reader
    assert hub._task is None and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await hub.close()


def test_client_id_persisted_per_server(tmp_path: Path) -> None:
    a = load_or_create_client_id(tmp_path / "data", "gpu-box")
    assert load_or_create_client_id(tmp_path / "data", "gpu-box") == a
    b = load_or_create_client_id(tmp_path / "data", "other")
    weird = load_or_create_client_id(tmp_path / "data", "../gpu box")
    assert len({a, b, weird}) == 3
    files = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert len(files) == 3 and all(f.startswith("comfy-client-") and f.endswith(".txt") for f in files)
    assert client_id_path(tmp_path / "data", "../gpu box").parent == tmp_path / "data"
    client_id_path(tmp_path / "data", "gpu-box").write_text("garbage!!\n")
    assert load_or_create_client_id(tmp_path / "data", "gpu-box") not in (a, "garbage!!")


# ---------------------------------------------------------------- follow_prompt


def _entry(pid: str, status: str, messages: list[Any]) -> dict[str, Any]:
    return {"prompt": [1, pid, {}, {}, ["9"]], "outputs": {}, "status": {"status_str": status, "completed": status == "success", "messages": messages}}


async def test_follow_prompt_success_waits_for_history(session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]) -> None:
    from bot.comfy.follow import follow_prompt

    fake, url = mini
    async with make_hub(session, url) as hub:
        assert await hub.wait_connected(3)
        sub = hub.subscribe("S")
        seen: list[Any] = []

        async def on_event(event: Any) -> None:
            seen.append(event)

        # history_attempts: it must not give up on its own while the test holds the history back
        task = asyncio.create_task(follow_prompt(hub.client, sub, on_event=on_event, history_delay=0.02,
                                                 history_attempts=500))
        await run_job(fake, hub.client_id, "S")
        await fake.send(hub.client_id, "execution_success", {"prompt_id": "S"})
        # history shows up a little after execution_success: it asked, found nothing, and asks again
        await fake.wait_for(lambda: fake.count("GET", "/history/S") >= 2, "second GET /history/S")
        assert not task.done()
        fake.history["S"] = _entry("S", "success", [["execution_success", {"prompt_id": "S"}]])
        outcome = await asyncio.wait_for(task, 3)
        assert outcome.status == "success" and outcome.entry is not None and outcome.message is None
        assert isinstance(seen[-1], ev.ExecutionSuccess)


async def test_follow_prompt_error_event(session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]) -> None:
    from bot.comfy.follow import follow_prompt

    fake, url = mini
    async with make_hub(session, url) as hub:
        assert await hub.wait_connected(3)
        sub = hub.subscribe("E")
        fake.history["E"] = _entry("E", "error", [])
        await fake.send(hub.client_id, "execution_error", {"prompt_id": "E", "node_id": "5", "node_type": "KSampler", "exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory\n"})
        outcome = await asyncio.wait_for(follow_prompt(hub.client, sub), 3)
        assert outcome.status == "error" and outcome.message == "KSampler #5: torch.OutOfMemoryError: CUDA out of memory"


async def test_follow_prompt_after_reconnect_uses_queue_then_history_or_reports_lost(
    session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]
) -> None:
    from bot.comfy.follow import follow_prompt

    fake, url = mini
    async with make_hub(session, url) as hub:
        assert await hub.wait_connected(3)
        running, gone = hub.subscribe("RUN"), hub.subscribe("GONE")
        fake.queue = {"queue_running": [[1, "RUN", {}, {}, ["9"]]], "queue_pending": []}
        t_run = asyncio.create_task(follow_prompt(hub.client, running, history_delay=0.01))
        t_gone = asyncio.create_task(follow_prompt(hub.client, gone, history_delay=0.01))
        await fake.drop(hub.client_id)
        lost = await asyncio.wait_for(t_gone, 3)
        assert lost.status == "lost" and lost.entry is None and lost.message
        await fake.wait_connects(2)
        # both followers reconciled (each asks /history, then /queue): RUN is in the queue
        await fake.wait_for(lambda: fake.count("GET", "/queue") >= 2, "both followers to ask /queue")
        assert not t_run.done()  # still running on the server: keep following the socket
        fake.history["RUN"] = _entry("RUN", "error", [["execution_interrupted", {"prompt_id": "RUN", "node_id": "9", "node_type": "VHS_VideoCombine"}]])
        await fake.send(hub.client_id, "execution_interrupted", {"prompt_id": "RUN", "node_id": "9", "node_type": "VHS_VideoCombine"})
        outcome = await asyncio.wait_for(t_run, 3)
        assert outcome.status == "interrupted" and "interrupted" in (outcome.message or "")


async def test_unknown_and_odd_messages_from_a_real_server_are_ignored_quietly(
    session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]
) -> None:
    """Custom nodes and newer servers send types we do not know; the socket must survive them."""
    fake, url = mini
    async with make_hub(session, url) as hub:
        assert await hub.wait_connected(3)
        sub = hub.subscribe("P")
        ws = fake.sockets[hub.client_id]
        await ws.send_json({"type": "crystools.monitor", "data": {"cpu_utilization": 3.5, "gpus": [{"vram_used": 1}]}})
        await ws.send_json({"type": "logs", "data": {"entries": [{"t": "now", "m": "loading"}], "size": None}})
        await ws.send_json({"type": "notification", "data": {"value": "update available", "id": None}})
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": "odd"}}})
        await ws.send_json({"type": "some.list", "data": [1, 2]})
        await ws.send_json(["not", "an", "object"])
        await ws.send_str("not json")
        await ws.send_bytes((3).to_bytes(4, "big") + b'\x00\x00\x00\x04{"x"text')  # progress_text frame
        await ws.send_bytes((2).to_bytes(4, "big") + b"\x00")  # unencoded preview, unsupported
        await ws.send_bytes(b"\x00")
        await fake.send(hub.client_id, "execution_success", {"prompt_id": "P"})
        assert isinstance(await sub.get(timeout=2), ev.ExecutionSuccess)
        assert hub.connected and hub.connections == 1 and fake.connects == [hub.client_id]


async def test_a_socket_that_closes_at_once_backs_off_instead_of_looping(
    session: aiohttp.ClientSession, serve: Any
) -> None:
    connects = 0

    async def slam(request: web.Request) -> web.StreamResponse:
        nonlocal connects
        connects += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()  # e.g. a proxy or a crashing server: handshake OK, then gone
        return ws

    app = web.Application()
    app.router.add_get("/ws", slam)
    hub = make_hub(session, await serve(app), reconnect_min=0.01, reconnect_max=0.04)
    attempts: list[int] = []
    four = asyncio.Event()
    backoff = hub._backoff

    def spy(attempt: int) -> float:
        attempts.append(attempt)
        if len(attempts) >= 4:
            four.set()
        return backoff(attempt)

    hub._backoff = spy  # type: ignore[method-assign]
    async with hub:
        await asyncio.wait_for(four.wait(), 5)
    assert attempts[:4] == [1, 2, 3, 4] and connects >= 4  # growing, capped by reconnect_max


async def test_a_silent_dead_socket_is_noticed_by_the_heartbeat_and_replaced(
    session: aiohttp.ClientSession, serve: Any
) -> None:
    connects: list[str] = []

    async def deaf(request: web.Request) -> web.StreamResponse:
        connects.append(request.query["clientId"])
        ws = web.WebSocketResponse(autoping=False)  # a hung server or proxy: never answers pings
        await ws.prepare(request)
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": request.query["clientId"]}})
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", deaf)
    hub = make_hub(session, await serve(app), heartbeat=0.1)
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    hub.on_reconnect(on_reconnect)
    async with hub:
        await asyncio.wait_for(reconnected.wait(), 3)
    assert connects[:2] == [hub.client_id, hub.client_id]


async def test_a_preview_bigger_than_aiohttp_default_message_limit_arrives(
    session: aiohttp.ClientSession, mini: tuple[MiniComfy, str]
) -> None:
    fake, url = mini
    async with make_hub(session, url) as hub:
        assert await hub.wait_connected(3)
        sub = hub.subscribe("big")
        image = PNG + bytes(5 * 1024 * 1024)  # over aiohttp's default max_msg_size of 4 MiB
        meta = {"prompt_id": "big", "node_id": "3", "image_type": "image/png"}
        await fake.send_bytes(hub.client_id, ev.encode_preview_with_metadata(image, meta))
        preview = await sub.get(timeout=3)
        assert isinstance(preview, ev.PreviewImage) and len(preview.image) == len(image)
        assert hub.connections == 1
