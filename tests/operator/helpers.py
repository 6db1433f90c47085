"""Shared helpers for the operator tests: settings from an environment, free ports, safetensors files."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from bot.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
# Three base64url parts; the first encodes an application id ("123456789012345678").
GOOD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
COMFY_TOKEN = "comfy-secret-token-6f1d"


def env_for(tmp_path: Path, servers: list[tuple[str, str]], **extra: str) -> dict[str, str]:
    env = {
        "COMFYUI_URLS": ",".join(f"{name}={url}" for name, url in servers),
        "DISCORD_TOKEN": GOOD_TOKEN,
        "WORKFLOWS_DIR": str(WORKFLOWS),
        "DATA_DIR": str(tmp_path / "data"),
        "COMFYUI_TIMEOUT": "3",
        "LOG_LEVEL": "WARNING",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def settings_for(tmp_path: Path, servers: list[tuple[str, str]], **extra: str) -> Settings:
    return load_settings(env_for(tmp_path, servers, **extra))


def process_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a ``python -m bot`` child: ours minus bot settings, plus ``env``."""
    keep = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "COMFYUI_URLS", "COMFYUI_TOKEN", "LOG_LEVEL")}
    keep["PYTHONPATH"] = str(REPO)
    keep.update(env)
    return keep


def bot_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot", "--env-file", os.devnull, *args]


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_safetensors(path: Path, metadata: dict[str, str]) -> None:
    """A minimal .safetensors file: header with ``__metadata__`` and no tensors."""
    header: dict[str, Any] = {"__metadata__": metadata}
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
