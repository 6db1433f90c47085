"""Parsing of the recorded websocket frames into typed events, and binary previews."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.comfy import events as ev

from .conftest import FIXTURES, load_fixture

KNOWN = {
    "status": ev.StatusEvent,
    "feature_flags": ev.FeatureFlags,
    "execution_start": ev.ExecutionStart,
    "execution_cached": ev.ExecutionCached,
    "executing": ev.Executing,
    "progress": ev.Progress,
    "progress_state": ev.ProgressState,
    "executed": ev.Executed,
    "execution_success": ev.ExecutionSuccess,
    "execution_error": ev.ExecutionError,
    "execution_interrupted": ev.ExecutionInterrupted,
}


def _sockets(obj: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        msgs = obj.get("messages")
        if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) and "kind" in msgs[0]:
            return [obj]
        for value in obj.values():
            found += _sockets(value)
    elif isinstance(obj, list):
        for value in obj:
            found += _sockets(value)
    return found


WS_FILES = sorted(p.name for p in FIXTURES.glob("ws-*.json"))


@pytest.mark.parametrize("name", WS_FILES)
def test_every_recorded_text_frame_parses_to_its_type(name: str) -> None:
    for sock in _sockets(load_fixture(name)):
        for msg in sock["messages"]:
            if msg["kind"] != "text" or msg.get("dir") == "client->server":
                continue
            event = ev.parse_text(json.dumps(msg["data"]))
            assert isinstance(event, KNOWN[msg["data"]["type"]]), msg
            if msg["data"]["type"] not in ("status", "feature_flags"):
                # the replay of the current node after a reconnect carries no prompt_id
                assert event.prompt_id == msg["data"]["data"].get("prompt_id")


def _run_events(name: str) -> list[Any]:
    (sock,) = _sockets(load_fixture(name))
    return [ev.parse_text(json.dumps(m["data"])) for m in sock["messages"] if m["kind"] == "text" and m.get("dir") != "client->server"]


@pytest.mark.parametrize(
    ("name", "first_terminal"),
    [
        ("ws-success-vhs_gif.json", ev.ExecutionSuccess),
        ("ws-execution_error.json", ev.ExecutionError),
        ("ws-interrupted-global.json", ev.ExecutionInterrupted),
        ("ws-cached_rerun.json", None),
    ],
)
def test_terminal_signals(name: str, first_terminal: type | None) -> None:
    if first_terminal is None:
        data = load_fixture(name)["second_run"]["websocket"]["messages"]
        events = [ev.parse_text(json.dumps(m["data"])) for m in data if m["kind"] == "text"]
        first_terminal = ev.ExecutionSuccess
    else:
        events = _run_events(name)
    terminals = [e for e in events if ev.is_terminal(e)]
    assert len(terminals) == 2  # both signals arrive: the first one counts
    assert isinstance(terminals[0], first_terminal)
    assert isinstance(terminals[1], ev.Executing) and terminals[1].node is None
    assert not any(ev.is_terminal(e) for e in events[: events.index(terminals[0])])


def test_execution_error_fields() -> None:
    (error,) = [e for e in _run_events("ws-execution_error.json") if isinstance(e, ev.ExecutionError)]
    assert (error.node_id, error.node_type, error.exception_type) == ("1", "LoadImage", "PIL.UnidentifiedImageError")
    assert "cannot identify image file" in error.exception_message and error.traceback


def test_status_sid_and_queue_remaining() -> None:
    events = _run_events("ws-connect_without_clientId.json")
    assert isinstance(events[0], ev.StatusEvent) and events[0].sid and events[0].queue_remaining == 0


PNG = bytes.fromhex("89504e470d0a1a0a") + b"rest-of-png"


def test_binary_type1_from_recording_shape() -> None:
    rec = [m for m in load_fixture("ws-binary_frames-SaveImageWebsocket.json")["websocket"]["messages"] if m["kind"] == "binary"]
    assert rec
    for m in rec:
        frame = bytes.fromhex(m["first8_hex"]) + PNG
        preview = ev.parse_binary(frame)
        assert preview is not None and preview.image == PNG and preview.image_type == "image/png"
        assert preview.prompt_id is None  # type 1 carries none; the hub fills it in
    jpeg = ev.parse_binary(ev.encode_preview(b"\xff\xd8jpeg", "image/jpeg"))
    assert jpeg is not None and jpeg.image_type == "image/jpeg" and jpeg.image == b"\xff\xd8jpeg"


def test_binary_type4_with_metadata_from_recording() -> None:
    rec = [m for m in load_fixture("ws-feature_flags-and-binary.json")["websocket"]["messages"] if m["kind"] == "binary"]
    for m in rec:
        meta = json.dumps(m["metadata_json"]).encode()
        assert len(meta) == m["metadata_len"]  # same serialization as the server's
        frame = bytes.fromhex(m["first8_hex"]) + meta + PNG
        preview = ev.parse_binary(frame)
        assert preview is not None
        assert preview.prompt_id == m["metadata_json"]["prompt_id"] and preview.node_id == "20"
        assert preview.image == PNG and preview.image_type == "image/png"


def test_unknown_and_malformed_frames_are_ignored() -> None:
    assert ev.parse_binary(b"\x00\x00\x00\x07\x00\x00\x00\x01xx") is None
    assert ev.parse_binary(b"\x00\x00") is None
    assert ev.parse_binary(b"\x00\x00\x00\x04\x00\x00\x10\x00{}") is None  # metadata length beyond frame
    assert ev.parse_text("not json") is None
    assert ev.parse_text(json.dumps({"type": "crystools.monitor", "data": {}})) is None
    assert ev.parse_text(json.dumps({"type": "progress", "data": {"value": 1, "max": 2}})) is None  # no prompt_id
    replay = ev.parse_text(json.dumps({"type": "executing", "data": {"node": "9"}}))  # recorded after a reconnect
    assert isinstance(replay, ev.Executing) and replay.prompt_id is None and not ev.is_terminal(replay)
