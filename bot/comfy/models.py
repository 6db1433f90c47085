"""Typed results of the ComfyUI HTTP API (dataclasses), parsed from the server's JSON.

Parsing is tolerant of extra keys and strict about the shapes we depend on: a body that does
not fit raises ``ValueError`` (the client turns it into :class:`~bot.comfy.errors.ComfyBadResponse`).
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from typing import Any

_VIDEO_EXTENSIONS = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".mkv": "video/x-matroska"}
_IMAGE_EXTENSIONS = {".gif": "image/gif", ".png": "image/png", ".webp": "image/webp", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass(frozen=True)
class FileRef:
    """A file on the server as ``/view`` and LoadImage address it."""

    filename: str
    subfolder: str = ""
    type: str = "output"

    def as_dict(self) -> dict[str, str]:
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


@dataclass(frozen=True)
class QueuedPrompt:
    """The answer to ``POST /prompt``: the prompt id, its queue number, and any per-node errors."""

    prompt_id: str
    number: int
    node_errors: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Any) -> QueuedPrompt:
        if not isinstance(body, dict) or not isinstance(body.get("prompt_id"), str):
            raise ValueError("POST /prompt answer has no prompt_id")
        number = body.get("number")
        return cls(
            prompt_id=body["prompt_id"],
            number=int(number) if isinstance(number, (int, float)) else 0,
            node_errors=body.get("node_errors") or {},
        )


@dataclass(frozen=True)
class QueueItem:
    """One entry of ``GET /queue``: ``[number, prompt_id, graph, extra_data, output_ids]``."""

    number: int
    prompt_id: str
    extra_data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, item: Any) -> QueueItem:
        if not isinstance(item, list) or len(item) < 2:
            raise ValueError("queue item is not a list [number, prompt_id, ...]")
        extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
        return cls(number=int(item[0]), prompt_id=str(item[1]), extra_data=extra)


@dataclass(frozen=True)
class QueueState:
    """``GET /queue``: the running and pending prompts; ``pending`` is sorted by run order."""

    running: list[QueueItem]
    pending: list[QueueItem]

    @classmethod
    def from_json(cls, body: Any) -> QueueState:
        if not isinstance(body, dict):
            raise ValueError("GET /queue answer is not an object")
        running = [QueueItem.from_json(i) for i in body.get("queue_running") or []]
        # The server keeps pending jobs in heap order; they run in ascending ``number``.
        pending = sorted((QueueItem.from_json(i) for i in body.get("queue_pending") or []), key=lambda i: i.number)
        return cls(running=running, pending=pending)

    def contains(self, prompt_id: str) -> bool:
        return self.position(prompt_id) is not None

    def position(self, prompt_id: str) -> int | None:
        """0 when running, 1 for the next pending job, ...; ``None`` when not queued."""
        if any(i.prompt_id == prompt_id for i in self.running):
            return 0
        for index, item in enumerate(self.pending):
            if item.prompt_id == prompt_id:
                return index + 1
        return None

    @property
    def size(self) -> int:
        return len(self.running) + len(self.pending)


@dataclass(frozen=True)
class OutputFile:
    """One file a prompt produced, whatever output key the node used (``gifs``, ``images``, ...)."""

    node_id: str
    key: str
    filename: str
    subfolder: str
    type: str
    format: str | None
    animated: bool

    @property
    def ref(self) -> FileRef:
        return FileRef(self.filename, self.subfolder, self.type)

    @property
    def extension(self) -> str:
        dot = self.filename.rfind(".")
        return self.filename[dot:].lower() if dot >= 0 else ""


def _guess_format(filename: str) -> str | None:
    dot = filename.rfind(".")
    ext = filename[dot:].lower() if dot >= 0 else ""
    if ext in _VIDEO_EXTENSIONS:
        return _VIDEO_EXTENSIONS[ext]
    if ext in _IMAGE_EXTENSIONS:
        return _IMAGE_EXTENSIONS[ext]
    return mimetypes.guess_type(filename)[0]


@dataclass(frozen=True)
class HistoryEntry:
    """One ``/history`` entry: status, the node messages, outputs and the raw dict."""

    prompt_id: str
    status_str: str | None
    completed: bool
    messages: list[tuple[str, dict[str, Any]]]
    outputs: dict[str, dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def from_json(cls, prompt_id: str, body: Any) -> HistoryEntry:
        if not isinstance(body, dict):
            raise ValueError("history entry is not an object")
        status = _object(body.get("status"))
        messages: list[tuple[str, dict[str, Any]]] = []
        for item in status.get("messages") or []:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):
                messages.append((item[0], item[1] if isinstance(item[1], dict) else {}))
        outputs = _object(body.get("outputs"))
        return cls(
            prompt_id=prompt_id,
            status_str=status.get("status_str") if isinstance(status.get("status_str"), str) else None,
            completed=bool(status.get("completed")),
            messages=messages,
            outputs=outputs,
            raw=body,
        )

    @property
    def succeeded(self) -> bool:
        return self.status_str == "success" and self.completed

    @property
    def failed(self) -> bool:
        return self.status_str == "error"

    @property
    def interrupted(self) -> bool:
        return any(name == "execution_interrupted" for name, _ in self.messages)

    @property
    def number(self) -> int | None:
        prompt = self.raw.get("prompt")
        return int(prompt[0]) if isinstance(prompt, list) and prompt and isinstance(prompt[0], (int, float)) else None

    @property
    def extra_data(self) -> dict[str, Any]:
        prompt = self.raw.get("prompt")
        return prompt[3] if isinstance(prompt, list) and len(prompt) > 3 and isinstance(prompt[3], dict) else {}

    def error_details(self) -> dict[str, Any] | None:
        """The ``execution_error`` message data, if the run failed with one."""
        for name, data in self.messages:
            if name == "execution_error":
                return data
        return None

    def error_message(self) -> str | None:
        """A short technical description of why the run failed, or ``None`` if it did not."""
        data = self.error_details()
        if data is not None:
            node = f"{data.get('node_type') or 'node'} #{data.get('node_id')}"
            exc_type = data.get("exception_type") or "error"
            exc_message = str(data.get("exception_message") or "").strip()
            return f"{node}: {exc_type}: {exc_message}" if exc_message else f"{node}: {exc_type}"
        if self.interrupted:
            for name, item in self.messages:
                if name == "execution_interrupted":
                    return f"interrupted at {item.get('node_type') or 'node'} #{item.get('node_id')}"
        if self.failed:
            return "the run failed"
        return None

    def output_files(self) -> list[OutputFile]:
        """Every file in ``outputs``, under any key (``gifs``, ``images``, ``videos``, ...).

        ``animated`` comes from the node's ``animated`` list (core nodes), or from the format
        (VHS's ``format``, else guessed from the extension): GIF and video count as animated.
        """
        files: list[OutputFile] = []
        for node_id, node_out in self.outputs.items():
            if not isinstance(node_out, dict):
                continue
            animated_flags = node_out.get("animated")
            flags = animated_flags if isinstance(animated_flags, list) else []
            for key, items in node_out.items():
                if not isinstance(items, list):
                    continue
                for index, item in enumerate(items):
                    if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
                        continue
                    fmt = item["format"] if isinstance(item.get("format"), str) else _guess_format(item["filename"])
                    if index < len(flags):
                        animated = bool(flags[index])
                    elif len(flags) == 1:
                        animated = bool(flags[0])
                    else:
                        animated = fmt is not None and (fmt == "image/gif" or fmt.startswith("video/"))
                    files.append(
                        OutputFile(
                            node_id=str(node_id),
                            key=key,
                            filename=item["filename"],
                            subfolder=str(item.get("subfolder") or ""),
                            type=str(item.get("type") or "output"),
                            format=fmt,
                            animated=animated,
                        )
                    )
        return files


@dataclass(frozen=True)
class Device:
    name: str
    type: str
    vram_total: int | None
    vram_free: int | None


@dataclass(frozen=True)
class SystemStats:
    """``GET /system_stats``: versions and devices."""

    comfyui_version: str | None
    python_version: str | None
    devices: list[Device]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def from_json(cls, body: Any) -> SystemStats:
        if not isinstance(body, dict) or not isinstance(body.get("system"), dict):
            raise ValueError("GET /system_stats answer has no system object")
        system = body["system"]
        devices = [
            Device(
                name=str(d.get("name")),
                type=str(d.get("type")),
                vram_total=d.get("vram_total") if isinstance(d.get("vram_total"), int) else None,
                vram_free=d.get("vram_free") if isinstance(d.get("vram_free"), int) else None,
            )
            for d in body.get("devices") or []
            if isinstance(d, dict)
        ]
        return cls(
            comfyui_version=system.get("comfyui_version"),
            python_version=system.get("python_version"),
            devices=devices,
            raw=body,
        )


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}
