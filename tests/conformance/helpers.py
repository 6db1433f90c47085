"""Shared helpers for replaying recorded ComfyUI exchanges against the test server."""

from __future__ import annotations

import io
import json
import re
import struct
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "comfyui"
PROGRESS_TYPES = {"progress", "progress_state", "binary"}
_ID_RE = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+)$")


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def png_bytes(variant: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small RGBA PNG; different variants give different bytes."""
    img = Image.new("RGBA", size, (40 + variant * 7 % 200, 120, 200, 255))
    for x in range(size[0]):
        img.putpixel((x, size[1] // 2), (255, 255, 255, 128))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    return "dict"


def _id_keyed(d: dict[str, Any]) -> bool:
    return bool(d) and all(_ID_RE.match(k) for k in d)


def assert_same_shape(expected: Any, actual: Any, path: str = "$") -> None:
    """Same keys and value types, recursively; ids, timestamps and paths may differ.

    Dicts keyed by ids (prompt ids, node ids) are compared value by value in order.
    """
    ek, ak = _kind(expected), _kind(actual)
    assert ek == ak, f"{path}: expected {ek}, got {ak} ({actual!r:.200})"
    if ek == "dict":
        if _id_keyed(expected) or _id_keyed(actual):
            if _id_keyed(expected) and _id_keyed(actual) and set(expected) == set(actual):
                for key in expected:
                    assert_same_shape(expected[key], actual[key], f"{path}.{key}")
                return
            assert bool(expected) == bool(actual), f"{path}: emptiness differs"
            for (k1, v1), (_, v2) in zip(expected.items(), actual.items()):
                assert_same_shape(v1, v2, f"{path}.<{k1}>")
            return
        assert set(expected) == set(actual), f"{path}: keys {sorted(expected)} != {sorted(actual)}"
        for key in expected:
            assert_same_shape(expected[key], actual[key], f"{path}.{key}")
    elif ek == "list":
        if expected and actual:
            if len(expected) == len(actual):
                for i, (a, b) in enumerate(zip(expected, actual)):
                    assert_same_shape(a, b, f"{path}[{i}]")
            else:
                assert_same_shape(expected[0], actual[0], f"{path}[0]")


async def upload(
    session: aiohttp.ClientSession, url: str, data: bytes, filename: str, **fields: str
) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    async with session.post(url + "/upload/image", data=form) as resp:
        assert resp.status == 200
        return await resp.json()


# ------------------------------------------------------------------ websocket recordings


def recorded_messages(ws: dict[str, Any]) -> list[dict[str, Any]]:
    """Recorded messages as {type, data} (binary frames as type 'binary' with details)."""
    out = []
    for m in ws["messages"]:
        if m["kind"] == "text":
            out.append({"type": m["data"]["type"], "data": m["data"]["data"]})
        else:
            out.append({"type": "binary", "data": m})
    return out


def decode_binary(data: bytes) -> dict[str, Any]:
    event = struct.unpack(">I", data[:4])[0]
    info: dict[str, Any] = {"event_type_u32be": event}
    if event == 4:
        length = struct.unpack(">I", data[4:8])[0]
        info["metadata_json"] = json.loads(data[8 : 8 + length])
        info["payload_first8_hex"] = data[8 + length : 16 + length].hex()
    else:
        info["image_type_u32be"] = struct.unpack(">I", data[4:8])[0]
        info["payload_first8_hex"] = data[8:16].hex()
    return info


def tokens(messages: list[dict[str, Any]], *, drop: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Message types with runs of progress/progress_state/binary collapsed to one 'P'."""
    out: list[str] = []
    for m in messages:
        t = m["type"]
        if t in drop:
            continue
        if t in PROGRESS_TYPES:
            t = "P"
            if out and out[-1] == "P":
                continue
        out.append(t)
    return out


def assert_messages_conform(
    recorded: list[dict[str, Any]], actual: list[dict[str, Any]], *, drop: set[str] = frozenset()  # type: ignore[assignment]
) -> None:
    """Same collapsed type sequence, and each message shaped like a recorded one of its type."""
    assert tokens(actual, drop=drop) == tokens(recorded, drop=drop)
    exemplars: dict[tuple[str, bool], dict[str, Any]] = {}
    for m in recorded:
        exemplars.setdefault(_exemplar_key(m), m)
    for m in actual:
        ex = exemplars.get(_exemplar_key(m))
        if ex is None:
            continue
        if m["type"] == "binary":
            for field in ("event_type_u32be", "image_type_u32be"):
                if field in ex["data"]:
                    assert m["data"][field] == ex["data"][field]
            if "metadata_json" in ex["data"]:
                assert set(m["data"]["metadata_json"]) == set(ex["data"]["metadata_json"])
            continue
        if m["type"] == "progress_state":
            _assert_progress_state(ex["data"], m["data"])
            continue
        if m["type"] in ("executed",):
            assert set(m["data"]) == set(ex["data"])
            continue
        assert_same_shape(ex["data"], m["data"], m["type"])


def _exemplar_key(m: dict[str, Any]) -> tuple[str, bool, frozenset[str]]:
    data = m["data"]
    keys = frozenset(data) if m["type"] in ("status", "feature_flags") else frozenset()
    return (m["type"], m["type"] == "executing" and data.get("node") is None, keys)


def _assert_progress_state(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    assert set(actual) == set(expected)
    node_shape = next(iter(expected["nodes"].values()))
    for node in actual["nodes"].values():
        assert set(node) == set(node_shape)
        assert node["state"] in ("running", "finished")


class WsClient:
    """A raw websocket client that records every message it gets."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []

    @classmethod
    async def connect(
        cls, session: aiohttp.ClientSession, url: str, client_id: str | None, *, path: str = "/ws"
    ) -> WsClient:
        ws_url = url.replace("http://", "ws://") + path + (f"?clientId={client_id}" if client_id else "")
        return cls(await session.ws_connect(ws_url))

    async def next(self, timeout: float = 10.0) -> dict[str, Any] | None:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            parsed = json.loads(msg.data)
            item = {"type": parsed["type"], "data": parsed["data"]}
        elif msg.type == aiohttp.WSMsgType.BINARY:
            item = {"type": "binary", "data": decode_binary(msg.data)}
        else:
            return None
        self.messages.append(item)
        return item

    async def until(self, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
        while True:
            item = await self.next(timeout)
            if item is None:
                raise AssertionError(f"socket closed; got {tokens(self.messages)}")
            if predicate(item):
                return item

    async def until_done(self, prompt_id: str | None = None) -> None:
        await self.until(lambda m: m["type"] == "executing" and m["data"].get("node") is None)

    async def close(self) -> None:
        await self.ws.close()
