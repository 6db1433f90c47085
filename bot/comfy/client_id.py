"""The websocket clientId of each ComfyUI server, kept in a file so it survives restarts.

ComfyUI sends a prompt's execution events only to the websocket whose clientId posted it, so
after a restart the bot must reconnect with the same id to hear about the prompts it left running.
One small file per server in the data directory, its name made safe from the server's name.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["client_id_path", "load_or_create_client_id"]


def _safe_name(server_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", server_name).strip("._") or "server"
    if safe != server_name:  # keep distinct names distinct after sanitizing
        safe += "-" + uuid.uuid5(uuid.NAMESPACE_URL, server_name).hex[:8]
    return safe


def client_id_path(data_dir: Path, server_name: str) -> Path:
    return Path(data_dir) / f"comfy-client-{_safe_name(server_name)}.txt"


def load_or_create_client_id(data_dir: Path, server_name: str) -> str:
    """The persisted websocket clientId for ``server_name``, created (atomically) on first use.

    Small synchronous file I/O: call it at start-up, or through ``asyncio.to_thread``.
    """
    path = client_id_path(data_dir, server_name)
    try:
        value = path.read_text(encoding="utf-8").strip()
        if re.fullmatch(r"[A-Za-z0-9_-]{8,64}", value):
            return value
        log.warning("client id file for %s is unreadable; creating a new id", server_name)
    except FileNotFoundError:
        pass
    value = uuid.uuid4().hex
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(value + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return value
