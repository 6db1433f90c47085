"""Client of the ComfyUI test server's test control (``/_standin/``, see :mod:`.gates`).

Works the same whether the server runs in the test's process or in its own::

    control = ComfyControl(session, server_url)
    gate = await control.hold_request("POST", "/upload/image")   # answer held, image saved
    held = await gate.wait_held()                                 # the bot got that far
    ...
    await gate.release()                # or release(drop=True): close the connection instead
    runs = await control.runs()         # {prompt id: times the engine started it}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from .gates import CONTROL_PREFIX

__all__ = ["ComfyControl", "RemoteGate"]


@dataclass
class RemoteGate:
    """A gate armed on the server."""

    control: ComfyControl
    id: str
    spec: dict[str, Any]

    async def wait_held(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until something is held at the gate; returns what (e.g. its ``prompt_id``).
        AssertionError naming the gate when nothing arrives within ``timeout``."""
        state = await self.control._get(f"/gates/{self.id}", wait=timeout)
        if not state["held"]:
            raise AssertionError(f"nothing reached the ComfyUI gate {self.spec} within {timeout:g} s")
        return dict(state["held"][0])

    async def state(self) -> dict[str, Any]:
        return dict(await self.control._get(f"/gates/{self.id}"))

    async def release(self, *, drop: bool = False) -> None:
        """Let what is held go on; ``drop``: close its connection instead (a request is then
        never handled, an answer never sent, held websocket messages are lost)."""
        await self.control._post(f"/gates/{self.id}/release", {"drop": drop})


class ComfyControl:
    """Arms gates on one ComfyUI test server and reads what it ran."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.base = url.rstrip("/") + CONTROL_PREFIX

    async def _get(self, path: str, **query: Any) -> Any:
        async with self.session.get(self.base + path, params={k: str(v) for k, v in query.items()}) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.post(self.base + path, json=body or {}) as resp:
            if resp.status >= 400:
                raise AssertionError(f"ComfyUI test control {path}: {resp.status} {await resp.text()}")
            return await resp.json()

    async def _gate(self, point: str, **spec: Any) -> RemoteGate:
        state = await self._post("/gates", {"point": point, **spec})
        return RemoteGate(self, state["id"], {"point": point, **spec})

    async def hold_request(self, method: str, path: str, *, stage: str = "after", times: int = 1) -> RemoteGate:
        """Hold the next ``method path`` request (fnmatch on the path without ``/api``):
        ``stage="before"`` before it is handled, ``"after"`` handled but not answered."""
        return await self._gate("request", method=method, path=path, stage=stage, times=times)

    async def hold_start(self) -> RemoteGate:
        """Keep the next prompt in ComfyUI's queue (the engine does not take it)."""
        return await self._gate("start")

    async def hold_step(self, step: int) -> RemoteGate:
        """Stop the next run after its ``step``-th progress step."""
        return await self._gate("step", step=step)

    async def hold_websocket(self, event: str) -> RemoteGate:
        """Hold back everything sent to a client from its next websocket message of type ``event`` on."""
        return await self._gate("ws", event=event)

    async def release_all(self) -> None:
        await self._post("/release-all")

    async def timeline(self, since: float | None = None) -> list[dict[str, Any]]:
        """What the server did and when (``time.monotonic()``), when it records a timeline
        (``--timeline``); events at or after ``since``."""
        answer = await self._get("/timeline", **({} if since is None else {"since": since}))
        return list(answer["events"])

    async def runs(self) -> dict[str, int]:
        """How many times the engine started each prompt id."""
        return dict((await self._get("/runs"))["runs"])
