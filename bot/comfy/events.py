"""Typed ComfyUI websocket events and their parsers (pure functions, no I/O).

Text frames are ``{"type": ..., "data": {...}}``; :func:`parse_text` turns one into an event
dataclass. Binary frames start with a 4-byte big-endian event type: 1 is a preview image
(4-byte image type, 1 JPEG / 2 PNG, then the bytes), 4 a preview with JSON metadata (4-byte
length, the JSON, then the bytes); :func:`parse_binary` decodes both into :class:`PreviewImage`.
Unknown types give ``None``. :class:`Reconnected` is not sent by ComfyUI: the hub delivers it
to every open subscription after its socket came back, since events sent meanwhile are lost.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any, Union

log = logging.getLogger(__name__)

BINARY_PREVIEW_IMAGE = 1
BINARY_PREVIEW_WITH_METADATA = 4
_IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}


@dataclass(frozen=True)
class StatusEvent:
    """Broadcast queue status; ``sid`` is set only in the first message after connecting."""

    queue_remaining: int | None
    sid: str | None = None


@dataclass(frozen=True)
class FeatureFlags:
    """The server's answer to our ``feature_flags`` handshake."""

    flags: dict[str, Any]


@dataclass(frozen=True)
class ExecutionStart:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionCached:
    prompt_id: str
    nodes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Executing:
    """A node started; ``node`` is ``None`` in the very last message of a run.

    ``prompt_id`` is ``None`` only in the replay of the current node that ComfyUI 0.8.0 sends
    right after a socket reconnects with the same clientId (recorded); the hub gives that one
    to the prompt it saw executing before the drop, and drops it if there is none.
    """

    prompt_id: str | None
    node: str | None
    display_node: str | None = None


@dataclass(frozen=True)
class Progress:
    prompt_id: str
    value: int
    max: int
    node: str | None = None


@dataclass(frozen=True)
class ProgressState:
    prompt_id: str
    nodes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Executed:
    prompt_id: str
    node: str
    output: dict[str, Any] = field(default_factory=dict)
    display_node: str | None = None


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_type: str | None
    exception_message: str
    traceback: list[str] = field(default_factory=list, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None


@dataclass(frozen=True)
class PreviewImage:
    """A preview frame. ``prompt_id`` comes from type-4 metadata, or (type 1, which carries
    none) from the prompt executing on that socket, filled in by the hub."""

    image: bytes = field(repr=False)
    image_type: str
    node_id: str | None = None
    prompt_id: str | None = None


@dataclass(frozen=True)
class Reconnected:
    """Pseudo-event: the socket came back; events sent while it was away are lost, so
    reconcile through ``/history`` and ``/queue``."""

    prompt_id: str | None = None


Event = Union[
    StatusEvent,
    FeatureFlags,
    ExecutionStart,
    ExecutionCached,
    Executing,
    Progress,
    ProgressState,
    Executed,
    ExecutionSuccess,
    ExecutionError,
    ExecutionInterrupted,
    PreviewImage,
    Reconnected,
]


def is_terminal(event: object) -> bool:
    """True for any signal that ends a run: success, error, interrupted, or ``executing`` with
    ``node: None``. A run sends two of them; the first one counts, the second is normal."""
    if isinstance(event, (ExecutionSuccess, ExecutionError, ExecutionInterrupted)):
        return True
    return isinstance(event, Executing) and event.node is None


def event_prompt_id(event: object) -> str | None:
    return getattr(event, "prompt_id", None)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_message(message: Any) -> Event | None:
    """Turn one decoded text frame (``{"type", "data"}``) into an event, or ``None``."""
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    data = message.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict):
        return None
    try:
        if kind == "status":
            status = data.get("status")
            exec_info = status.get("exec_info") if isinstance(status, dict) else None
            remaining = exec_info.get("queue_remaining") if isinstance(exec_info, dict) else None
            return StatusEvent(queue_remaining=_int_or_none(remaining), sid=_str_or_none(data.get("sid")))
        if kind == "feature_flags":
            return FeatureFlags(flags=dict(data))
        prompt_id = data.get("prompt_id")
        if kind == "executing" and prompt_id is None and data.get("node") is not None:
            return Executing(None, str(data["node"]), _str_or_none(data.get("display_node")))
        if not isinstance(prompt_id, str):
            log.debug("websocket %s message without prompt_id ignored", kind)
            return None
        if kind == "execution_start":
            return ExecutionStart(prompt_id, _int_or_none(data.get("timestamp")))
        if kind == "execution_cached":
            return ExecutionCached(prompt_id, [str(n) for n in data.get("nodes") or []])
        if kind == "executing":
            return Executing(prompt_id, _str_or_none(data.get("node")), _str_or_none(data.get("display_node")))
        if kind == "progress":
            return Progress(prompt_id, int(data.get("value") or 0), int(data.get("max") or 0), _str_or_none(data.get("node")))
        if kind == "progress_state":
            nodes = data.get("nodes")
            return ProgressState(prompt_id, nodes if isinstance(nodes, dict) else {})
        if kind == "executed":
            output = data.get("output")
            return Executed(prompt_id, str(data.get("node")), output if isinstance(output, dict) else {}, _str_or_none(data.get("display_node")))
        if kind == "execution_success":
            return ExecutionSuccess(prompt_id, _int_or_none(data.get("timestamp")))
        if kind == "execution_error":
            tb = data.get("traceback")
            return ExecutionError(
                prompt_id=prompt_id,
                node_id=_str_or_none(data.get("node_id")),
                node_type=_str_or_none(data.get("node_type")),
                exception_type=_str_or_none(data.get("exception_type")),
                exception_message=str(data.get("exception_message") or ""),
                traceback=[str(t) for t in tb] if isinstance(tb, list) else [],
                raw=data,
            )
        if kind == "execution_interrupted":
            return ExecutionInterrupted(prompt_id, _str_or_none(data.get("node_id")), _str_or_none(data.get("node_type")))
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        log.debug("malformed websocket %s message ignored: %s", kind, exc)
        return None
    log.debug("unknown websocket message type %r ignored", kind)
    return None


def parse_text(text: str) -> Event | None:
    try:
        return parse_message(json.loads(text))
    except ValueError:
        log.debug("websocket text frame is not JSON; ignored")
        return None


def parse_binary(frame: bytes) -> PreviewImage | None:
    """Decode a binary frame (types 1 and 4); anything else gives ``None``."""
    if len(frame) < 8:
        log.debug("short binary frame (%d bytes) ignored", len(frame))
        return None
    (event_type,) = struct.unpack(">I", frame[:4])
    if event_type == BINARY_PREVIEW_IMAGE:
        (image_type,) = struct.unpack(">I", frame[4:8])
        return PreviewImage(image=bytes(frame[8:]), image_type=_IMAGE_TYPES.get(image_type, "application/octet-stream"))
    if event_type == BINARY_PREVIEW_WITH_METADATA:
        (length,) = struct.unpack(">I", frame[4:8])
        if 8 + length > len(frame):
            log.debug("binary preview metadata longer than the frame; ignored")
            return None
        try:
            meta = json.loads(frame[8 : 8 + length])
        except ValueError:
            log.debug("binary preview metadata is not JSON; ignored")
            return None
        if not isinstance(meta, dict):
            return None
        return PreviewImage(
            image=bytes(frame[8 + length :]),
            image_type=str(meta.get("image_type") or "application/octet-stream"),
            node_id=_str_or_none(meta.get("node_id")),
            prompt_id=_str_or_none(meta.get("prompt_id")),
        )
    log.debug("binary frame of unknown type %d ignored", event_type)
    return None


def encode_preview(image: bytes, image_type: str = "image/png") -> bytes:
    """Build a type-1 frame (the inverse of :func:`parse_binary`; used by tests and stand-ins)."""
    code = {v: k for k, v in _IMAGE_TYPES.items()}.get(image_type, 2)
    return struct.pack(">II", BINARY_PREVIEW_IMAGE, code) + image


def encode_preview_with_metadata(image: bytes, metadata: dict[str, Any]) -> bytes:
    """Build a type-4 frame (metadata JSON must include ``prompt_id`` and ``image_type``)."""
    meta = json.dumps(metadata).encode()
    return struct.pack(">II", BINARY_PREVIEW_WITH_METADATA, len(meta)) + meta + image
