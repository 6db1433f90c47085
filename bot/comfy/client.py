"""An async client for ComfyUI's HTTP API on one shared ``aiohttp.ClientSession``: :class:`ComfyClient`.

One typed method per endpoint (prompt and queue, history, files, server info), built on
:class:`~bot.comfy.transport.ComfyTransport`, which owns how a request is sent: its timeout,
which requests are retried (GETs only: no POST is ever retried, see there), and the one table
mapping HTTP statuses to exceptions. Errors name the server by its configured name only, never
by URL, and never carry credentials.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.comfy.errors import ComfyBadResponse, ComfyError, ComfyNotFound
from bot.comfy.models import FileRef, HistoryEntry, QueuedPrompt, QueueState, SystemStats
from bot.comfy.transport import RETRYABLE_METHODS, STATUS_ERRORS, ComfyTransport, ServerConfig, error_for_status

__all__ = ["RETRYABLE_METHODS", "STATUS_ERRORS", "ComfyClient", "ServerConfig", "error_for_status"]

_WRITE_BATCH = 1024 * 1024


class ComfyClient(ComfyTransport):
    """Typed access to one ComfyUI server's HTTP API (the transport's constructor: ``session``,
    ``server``, ``token``, ``timeout``, ``retries``, ``backoff``, ``api_prefix``)."""

    # ----------------------------------------------------------------- prompt and queue

    async def queue_prompt(
        self,
        graph: dict[str, Any],
        *,
        client_id: str,
        prompt_id: str | None = None,
        extra_data: dict[str, Any] | None = None,
        front: bool = False,
    ) -> QueuedPrompt:
        """``POST /prompt``. Never retried: on a timeout or lost connection the prompt may or may
        not be queued; choose ``prompt_id`` yourself and look it up in ``/queue``/``/history``."""
        body: dict[str, Any] = {"prompt": graph, "client_id": client_id}
        if prompt_id is not None:
            body["prompt_id"] = prompt_id
        if extra_data is not None:
            body["extra_data"] = extra_data
        if front:
            body["front"] = True
        answer = await self._json("POST", "/prompt", retry=False, json_body=body)
        return self._parse("POST /prompt", QueuedPrompt.from_json, answer)

    async def queue_remaining(self) -> int:
        """``GET /prompt``: jobs left, counting the running one."""
        answer = await self._json("GET", "/prompt", retry=True)
        return self._parse("GET /prompt", lambda a: int(a["exec_info"]["queue_remaining"]), answer)

    async def get_queue(self) -> QueueState:
        answer = await self._json("GET", "/queue", retry=True)
        return self._parse("GET /queue", QueueState.from_json, answer)

    async def delete_queued(self, ids: Iterable[str]) -> None:
        """Remove pending prompts (a running one is not affected; use :meth:`interrupt`). Not retried."""
        await self._no_body("POST", "/queue", retry=False, json_body={"delete": list(ids)})

    async def clear_queue(self) -> None:
        """Remove *every* pending prompt, anyone's. Sent once, never retried: a repeat arriving
        late would also remove prompts queued after the first one took effect."""
        await self._no_body("POST", "/queue", retry=False, json_body={"clear": True})

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt``: only ``prompt_id`` if given (no effect if it is not running),
        else whatever runs. Not retried: a late global retry could hit the next job."""
        body = {"prompt_id": prompt_id} if prompt_id is not None else None
        await self._no_body("POST", "/interrupt", retry=False, json_body=body)

    async def stop_prompt(self, prompt_id: str) -> None:
        """Stop one prompt wherever it is: drop it from the queue, then interrupt it if it runs
        (never a bare interrupt). In this order a prompt that starts between the two requests is
        still interrupted. The interrupt is sent even when the delete failed; the first failure
        is raised afterwards."""
        failure: ComfyError | None = None
        try:
            await self.delete_queued([prompt_id])
        except ComfyError as exc:
            failure = exc
        try:
            await self.interrupt(prompt_id)
        except ComfyError as exc:
            failure = failure or exc
        if failure is not None:
            raise failure

    # ----------------------------------------------------------------- history

    async def get_history(self, max_items: int | None = None, offset: int | None = None) -> dict[str, HistoryEntry]:
        """``GET /history`` (oldest first; ``max_items`` alone gives the newest N)."""
        params: dict[str, str] = {}
        if max_items is not None:
            params["max_items"] = str(int(max_items))
        if offset is not None:
            params["offset"] = str(int(offset))
        answer = await self._json("GET", "/history", retry=True, params=params or None)
        if not isinstance(answer, dict):
            raise ComfyBadResponse(self.name, "GET /history: answer is not an object")
        return {pid: self._parse("GET /history", HistoryEntry.from_json, pid, e) for pid, e in answer.items()}

    async def get_history_entry(self, prompt_id: str) -> HistoryEntry | None:
        """``GET /history/{id}``; ``None`` for an unknown or deleted id (the server answers ``{}``)."""
        answer = await self._json("GET", f"/history/{quote(prompt_id, safe='')}", retry=True)
        if not isinstance(answer, dict):
            raise ComfyBadResponse(self.name, "GET /history/{id}: answer is not an object")
        entry = answer.get(prompt_id)
        return None if entry is None else self._parse("GET /history/{id}", HistoryEntry.from_json, prompt_id, entry)

    async def delete_history(self, ids: Iterable[str]) -> None:
        """Remove these history entries. Not retried."""
        await self._no_body("POST", "/history", retry=False, json_body={"delete": list(ids)})

    async def clear_history(self) -> None:
        """Remove *every* history entry, anyone's. Sent once, never retried: a repeat arriving
        late would also remove entries written after the first one took effect."""
        await self._no_body("POST", "/history", retry=False, json_body={"clear": True})

    # ----------------------------------------------------------------- files

    def _view_params(self, ref: FileRef) -> dict[str, str]:
        return {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}

    async def view(self, ref: FileRef, *, max_bytes: int) -> bytes:
        """``GET /view`` into memory, refusing more than ``max_bytes`` (:class:`ComfyTooLarge`)."""
        parts: list[bytes] = []
        async with self._open("GET", "/view", retry=True, params=self._view_params(ref), timeout=self._stream_timeout()) as resp:
            async for chunk in self._chunks(resp, max_bytes):
                parts.append(chunk)
        return b"".join(parts)

    async def download(self, ref: FileRef, dest: Path, *, max_bytes: int) -> int:
        """``GET /view`` streamed to ``dest`` (written in a thread, via a temporary file renamed
        at the end); returns the byte count. Nothing is left behind on failure."""
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.part")
        total = 0
        handle = await asyncio.to_thread(open, tmp, "wb")
        try:
            async with self._open("GET", "/view", retry=True, params=self._view_params(ref), timeout=self._stream_timeout()) as resp:
                pending: list[bytes] = []
                size = 0
                async for chunk in self._chunks(resp, max_bytes):
                    pending.append(chunk)
                    size += len(chunk)
                    if size >= _WRITE_BATCH:
                        await asyncio.to_thread(handle.write, b"".join(pending))
                        total += size
                        pending, size = [], 0
                if pending:
                    await asyncio.to_thread(handle.write, b"".join(pending))
                    total += size
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, tmp, dest)
        except BaseException:
            handle.close()
            await asyncio.to_thread(_unlink_quietly, tmp)
            raise
        return total

    async def upload_image(
        self, data: bytes, filename: str, *, subfolder: str = "", type: str = "input", overwrite: bool = False
    ) -> FileRef:
        """``POST /upload/image``. Use the returned name: the server may rename the file."""
        return await self._upload("/upload/image", data, filename, subfolder=subfolder, type=type, overwrite=overwrite)

    async def upload_mask(
        self,
        data: bytes,
        filename: str,
        *,
        original_ref: FileRef,
        subfolder: str = "",
        type: str = "input",
        overwrite: bool = False,
    ) -> FileRef:
        """``POST /upload/mask``: the mask's alpha applied onto ``original_ref``."""
        return await self._upload(
            "/upload/mask", data, filename, subfolder=subfolder, type=type, overwrite=overwrite, original_ref=original_ref
        )

    async def _upload(
        self,
        path: str,
        data: bytes,
        filename: str,
        *,
        subfolder: str,
        type: str,
        overwrite: bool,
        original_ref: FileRef | None = None,
    ) -> FileRef:
        def form() -> aiohttp.FormData:
            fd = aiohttp.FormData()
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            fd.add_field("image", data, filename=filename, content_type=content_type)
            fd.add_field("overwrite", "true" if overwrite else "false")
            fd.add_field("type", type)
            if subfolder:
                fd.add_field("subfolder", subfolder)
            if original_ref is not None:
                fd.add_field("original_ref", json.dumps(original_ref.as_dict()))
            return fd

        answer = await self._json("POST", path, retry=False, data=form)
        return self._parse(
            f"POST {path}",
            lambda a: FileRef(filename=str(a["name"]), subfolder=str(a.get("subfolder") or ""), type=str(a.get("type") or type)),
            answer,
        )

    # ----------------------------------------------------------------- server info

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """``GET /object_info`` or ``/object_info/{class}`` (an unknown class gives ``{}``)."""
        path = "/object_info" if node_class is None else f"/object_info/{quote(node_class, safe='')}"
        answer = await self._json("GET", path, retry=True)
        if not isinstance(answer, dict):
            raise ComfyBadResponse(self.name, f"GET {path}: answer is not an object")
        return answer

    async def system_stats(self) -> SystemStats:
        answer = await self._json("GET", "/system_stats", retry=True)
        return self._parse("GET /system_stats", SystemStats.from_json, answer)

    async def features(self) -> dict[str, Any]:
        answer = await self._json("GET", "/features", retry=True)
        if not isinstance(answer, dict):
            raise ComfyBadResponse(self.name, "GET /features: answer is not an object")
        return answer

    async def view_metadata(self, folder: str, filename: str) -> dict[str, Any] | None:
        """``GET /view_metadata/{folder}?filename=``: a safetensors ``__metadata__``, or ``None``
        when the file, folder or metadata does not exist."""
        try:
            answer = await self._json(
                "GET", f"/view_metadata/{quote(folder, safe='')}", retry=True, params={"filename": filename}
            )
        except ComfyNotFound:
            return None
        return answer if isinstance(answer, dict) else None


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
