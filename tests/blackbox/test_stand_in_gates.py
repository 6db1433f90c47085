"""The gates the SIGKILL suite relies on hold what they say, and release it as they say.

The ComfyUI test server runs in this process here (its test control is the same HTTP either way);
the suite itself drives a server in its own process.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from standins.comfy_server.control import ComfyControl
from standins.comfy_server.server import ComfyTestServer
from standins.discord_server import DiscordStandIn

SEED = Path(__file__).resolve().parent.parent / "fixtures" / "svd_seed_prompt.json"

pytestmark = pytest.mark.timeout(20)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 90)).save(buf, format="PNG")
    return buf.getvalue()


def _graph(image: str) -> dict[str, Any]:
    graph = json.loads(SEED.read_text(encoding="utf-8"))
    graph["23"]["inputs"]["image"] = image
    graph["3"]["inputs"].update(steps=3, seed=7)
    graph["12"]["inputs"]["video_frames"] = 2
    return graph


async def _upload(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("image", _png(), filename="gate.png", content_type="image/png")
    return await session.post(url + "/upload/image", data=form)


async def _json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        return await resp.json()


async def test_comfy_request_gates_hold_after_the_effect_or_drop_before_it(comfy_server: ComfyTestServer) -> None:
    async with aiohttp.ClientSession() as session:
        control = ComfyControl(session, comfy_server.url)
        upload_gate = await control.hold_request("POST", "/upload/image", stage="after")
        upload = asyncio.ensure_future(_upload(session, comfy_server.url))
        held = await upload_gate.wait_held()
        assert held["path"] == "/upload/image" and held["status"] == 200
        assert (comfy_server.input_dir / "gate.png").is_file() and not upload.done()  # saved, not answered
        await upload_gate.release()
        async with await upload as resp:
            name = (await resp.json())["name"]

        post_gate = await control.hold_request("POST", "/prompt", stage="before")
        post = asyncio.ensure_future(session.post(comfy_server.url + "/api/prompt", json={"prompt": _graph(name)}))
        await post_gate.wait_held()
        await post_gate.release(drop=True)
        with pytest.raises(aiohttp.ClientError):
            await post  # the connection was closed: never handled
        assert (await _json(session, comfy_server.url + "/queue"))["queue_pending"] == []
        assert await control.runs() == {}
        state = await post_gate.state()
        assert state["hits"] == 1 and state["released"] and state["drop"]


async def test_comfy_engine_gates_hold_queued_running_and_unseen_end(comfy_server: ComfyTestServer) -> None:
    async with aiohttp.ClientSession() as session:
        control = ComfyControl(session, comfy_server.url)
        async with await _upload(session, comfy_server.url) as resp:
            name = (await resp.json())["name"]
        queued = await control.hold_start()
        step = await control.hold_step(2)
        unseen = await control.hold_websocket("execution_success")
        client_id = uuid.uuid4().hex
        ws = await session.ws_connect(comfy_server.url.replace("http", "ws") + f"/ws?clientId={client_id}")
        async with session.post(comfy_server.url + "/prompt", json={"prompt": _graph(name), "client_id": client_id}) as r:
            prompt_id = (await r.json())["prompt_id"]

        assert (await queued.wait_held())["prompt_id"] == prompt_id
        queue = await _json(session, comfy_server.url + "/queue")
        assert [i[1] for i in queue["queue_pending"]] == [prompt_id] and queue["queue_running"] == []
        await queued.release()

        assert await step.wait_held() == {"prompt_id": prompt_id, "step": 2}
        queue = await _json(session, comfy_server.url + "/queue")
        assert [i[1] for i in queue["queue_running"]] == [prompt_id]
        await step.release()

        assert (await unseen.wait_held())["prompt_id"] == prompt_id
        for _ in range(200):  # the engine is not held: the history entry is written
            if prompt_id in await _json(session, f"{comfy_server.url}/history/{prompt_id}"):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("no history entry while the end was held back")
        state = await unseen.state()
        assert state["withheld"] >= 1  # execution_success at least (the end goes on being held)
        seen: list[dict[str, Any]] = []
        await unseen.release()
        while not seen or seen[-1]["type"] != "execution_success":
            msg = await ws.receive(timeout=5)
            if msg.type == aiohttp.WSMsgType.TEXT:
                seen.append(json.loads(msg.data))
        assert seen[-1]["data"]["prompt_id"] == prompt_id
        await ws.close()
        assert await control.runs() == {prompt_id: 1}


async def test_discord_hold_before_drops_the_request_and_after_holds_the_answer() -> None:
    stand_in = DiscordStandIn()
    await stand_in.start()
    url = f"{stand_in.api_base}/channels/{stand_in.channel.id}/messages"
    headers = {"Authorization": f"Bot {stand_in.token}"}

    def form(text: str) -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("payload_json", json.dumps({"content": text}), content_type="application/json")
        data.add_field("files[0]", b"GIF89a", filename="clip.gif", content_type="image/gif")
        return data

    try:
        async with aiohttp.ClientSession() as session:
            before = stand_in.hold("POST", "/channels/*/messages", with_files=True, stage="before")
            sent = asyncio.ensure_future(session.post(url, data=form("first"), headers=headers))
            await before.wait_held()
            assert stand_in.channel_messages() == []
            before.release(drop=True)
            with pytest.raises(aiohttp.ClientError):
                await sent
            assert stand_in.channel_messages() == [] and before.held[0].route == "dropped"

            after = stand_in.hold("POST", "/channels/*/messages", with_files=True, stage="after")
            async with session.post(url, json={"content": "no file: not held"}, headers=headers) as resp:
                assert resp.status == 200
            sent = asyncio.ensure_future(session.post(url, data=form("second"), headers=headers))
            await after.wait_held()
            assert [m["content"] for m in stand_in.channel_messages()][-1] == "second" and not sent.done()
            after.release()
            async with await sent as resp:
                assert resp.status == 200
        assert not stand_in.unhandled_requests() and not stand_in.unexpected_violations()
    finally:
        await stand_in.stop()
