"""A prompt's history entry written seconds after ``execution_success`` (issue 13, defect 5).

ComfyUI 0.8.0 sends ``execution_success`` from inside ``PromptExecutor.execute``; its worker
writes the history entry (``task_done``) and sends ``executing`` with ``node: null`` only after
``execute`` returned, which with ``--disable-smart-memory`` first unloads every model. The test
server's ``history_delay`` knob puts that gap in; the follower must wait it out (it used to ask
``/history`` 20 times 50 ms apart and then conclude "success" without an entry).
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.comfy.client import ComfyClient
from bot.comfy.events import Event, Executing, ExecutionSuccess
from bot.comfy.follow import follow_prompt
from bot.comfy.hub import ComfyHub
from bot.settings import ServerConfig
from standins.comfy_server import ComfyTestServer

pytestmark = pytest.mark.timeout(30)

GAP = 1.3  # longer than the old budget of 20 x 50 ms


@pytest.fixture
async def hub(comfy_server: ComfyTestServer) -> AsyncIterator[ComfyHub]:
    async with aiohttp.ClientSession() as session:
        client = ComfyClient(session, ServerConfig(name="gpu", url=comfy_server.url), timeout=5.0, retries=1)
        async with ComfyHub(client, session, uuid.uuid4().hex) as hub:
            assert await hub.wait_connected(5)
            yield hub


async def _post_small_prompt(hub: ComfyHub, prompt_id: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="PNG")
    ref = await hub.client.upload_image(buf.getvalue(), "gap.png")
    graph: dict[str, Any] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": ref.filename}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "gap"}},
    }
    await hub.client.queue_prompt(graph, client_id=hub.client_id, prompt_id=prompt_id)


async def test_success_waits_for_the_entry_written_after_the_gap(comfy_server: ComfyTestServer, hub: ComfyHub) -> None:
    comfy_server.history_delay = GAP
    prompt_id = str(uuid.uuid4())
    seen: list[tuple[float, Event]] = []

    async def on_event(event: Event) -> None:
        seen.append((time.monotonic(), event))

    sub = hub.subscribe(prompt_id)
    await _post_small_prompt(hub, prompt_id)
    outcome = await follow_prompt(hub.client, sub, on_event=on_event)
    concluded_at = time.monotonic()
    sub.close()
    assert outcome.status == "success"
    assert outcome.entry is not None and outcome.entry.outputs.get("2"), outcome  # where the result is
    success_at = next(t for t, e in seen if isinstance(e, ExecutionSuccess))
    assert concluded_at - success_at >= GAP * 0.9  # it waited the gap out
    assert hub.per_prompt_counts() == {"hub_subscriptions": 0, "hub_buffered_prompts": 0}


async def test_reconcile_while_in_the_gap_keeps_waiting(comfy_server: ComfyTestServer, hub: ComfyHub) -> None:
    """In the gap the prompt is still running in /queue and has no entry: it is not lost."""
    from bot.comfy.follow import reconcile

    comfy_server.history_delay = GAP
    prompt_id = str(uuid.uuid4())
    sub = hub.subscribe(prompt_id)
    await _post_small_prompt(hub, prompt_id)
    async for event in sub:
        if isinstance(event, ExecutionSuccess):
            break
    assert await hub.client.get_history_entry(prompt_id) is None
    assert await reconcile(hub.client, prompt_id) is None  # still running: keep following
    outcome = await follow_prompt(hub.client, sub)
    sub.close()
    assert outcome.status == "success" and outcome.entry is not None


async def test_the_last_message_of_a_prompt_already_concluded_is_not_kept(
    comfy_server: ComfyTestServer, hub: ComfyHub
) -> None:
    """Without a gap the follower concludes on ``execution_success`` and leaves; the prompt's
    ``executing``/``null`` that follows must not stay in the hub's buffer."""
    prompt_id = str(uuid.uuid4())
    sub = hub.subscribe(prompt_id)
    watcher = hub.subscribe(prompt_id)  # sees the stream to its very end
    await _post_small_prompt(hub, prompt_id)
    outcome = await follow_prompt(hub.client, sub)
    sub.close()
    assert outcome.status == "success" and outcome.entry is not None
    async for event in watcher:
        if isinstance(event, Executing) and event.node is None:
            break
    watcher.close()
    # a later last message of another, already concluded prompt: nobody follows it any more
    await hub._dispatch(Executing(prompt_id, None))
    assert hub.per_prompt_counts() == {"hub_subscriptions": 0, "hub_buffered_prompts": 0}
