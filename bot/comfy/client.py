"""An async client for ComfyUI's HTTP API on one shared ``aiohttp.ClientSession``.

Every request has its own timeout. GETs are retried with exponential backoff on connection
errors, timeouts and 5xx answers. No POST is ever retried: ``POST /prompt`` would queue the job
twice, an upload or an interrupt could hit what came after, and a late repeat of a global
``{"clear": true}`` on ``/queue`` or ``/history`` would wipe prompts queued (or entries written)
after the first one took effect. A caller that needs to know whether a POST got through asks
with a GET.
HTTP statuses map to exceptions in one table (:data:`STATUS_ERRORS`). Errors name the server by
its configured name only, never by URL, and never carry credentials.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import mimetypes
import os
import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from bot.comfy.errors import (
    ComfyAuthError,
    ComfyBadRequest,
    ComfyBadResponse,
    ComfyError,
    ComfyNotFound,
    ComfyServerError,
    ComfyTimeout,
    ComfyTooLarge,
    ComfyUnreachable,
    ComfyValidationError,
)
from bot.comfy.models import FileRef, HistoryEntry, QueuedPrompt, QueueState, SystemStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """Where one ComfyUI server is and how to log in. Errors and logs name it by ``name`` only:
    ``url`` (which carries no credentials) may reveal internal hosts, so ``repr`` leaves it out."""

    name: str
    url: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"ServerConfig(name={self.name!r})"

_T = TypeVar("_T")

#: HTTP status -> exception class. 400 is special-cased: with ``error``/``node_errors`` in the
#: body it is a :class:`ComfyValidationError`. Any other 4xx is :class:`ComfyBadRequest`, any
#: 5xx :class:`ComfyServerError`.
STATUS_ERRORS: dict[int, type[ComfyError]] = {
    400: ComfyBadRequest,
    401: ComfyAuthError,
    403: ComfyAuthError,
    404: ComfyNotFound,
}

#: The only methods ever sent twice (see the module docstring); ``retry=True`` on anything else is ignored.
RETRYABLE_METHODS = frozenset({"GET"})

_CHUNK = 64 * 1024
_WRITE_BATCH = 1024 * 1024
_ERROR_BODY_CAP = 256 * 1024


def error_for_status(server: str, status: int, body: bytes) -> ComfyError:
    """Map an HTTP error answer to our exception (the one status table lives here)."""
    if status == 400:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and ("error" in parsed or "node_errors" in parsed):
            error = parsed.get("error")
            if isinstance(error, str):
                error = {"type": "error", "message": error}
            node_errors = parsed.get("node_errors")
            return ComfyValidationError(
                server,
                error if isinstance(error, dict) else {},
                node_errors if isinstance(node_errors, dict) else {},
            )
    if status >= 500:
        return ComfyServerError(server, status)
    cls = STATUS_ERRORS.get(status, ComfyBadRequest)
    texts = {
        ComfyAuthError: f"access refused (HTTP {status}); check the token or username/password",
        ComfyNotFound: "not found (HTTP 404)",
    }
    return cls(server, texts.get(cls, f"request refused (HTTP {status})"), status=status)


class ComfyClient:
    """Typed access to one ComfyUI server's HTTP API.

    ``session`` is the process's shared session (never created here). ``server.url`` may carry a
    path prefix (reverse proxy); ``api_prefix=True`` uses the ``/api/...`` routes. Credentials:
    ``token`` is sent as ``Authorization: Bearer``; otherwise ``server.username/password`` as
    basic auth. They go on every request and on the websocket handshake (:meth:`auth_headers`).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        server: ServerConfig,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        api_prefix: bool = False,
    ) -> None:
        self._session = session
        self._server = server
        self._token = token
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.api_prefix = api_prefix
        self._base = server.url.rstrip("/") + ("/api" if api_prefix else "")

    def __repr__(self) -> str:
        return f"ComfyClient(name={self.name!r})"

    @property
    def name(self) -> str:
        return self._server.name

    @property
    def server(self) -> ServerConfig:
        return self._server

    # ----------------------------------------------------------------- plumbing

    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header for HTTP requests and the websocket handshake."""
        if self._token:
            return {"Authorization": f"Bearer {self._token}"}
        if self._server.username is not None:
            raw = f"{self._server.username}:{self._server.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
        return {}

    def url(self, path: str) -> str:
        return self._base + path

    def ws_url(self, client_id: str) -> str:
        """The websocket URL for ``client_id`` (``/ws`` or ``/api/ws``, prefix kept)."""
        base = self._base
        if base.startswith("https://"):
            base = "wss://" + base[len("https://"):]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://"):]
        return f"{base}/ws?clientId={quote(client_id, safe='')}"

    def _delay(self, attempt: int) -> float:
        return self.backoff * float(2**attempt) * (0.8 + 0.4 * random.random())

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request (retried if ``retry`` and a GET) and yield the successful (< 400) response."""
        retry = retry and method in RETRYABLE_METHODS
        attempts = self.retries + 1 if retry else 1
        request_timeout = timeout or aiohttp.ClientTimeout(total=self.timeout)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                resp = await self._session.request(
                    method,
                    self.url(path),
                    params=params,
                    json=json_body,
                    data=data() if callable(data) else data,
                    headers=self.auth_headers(),
                    timeout=request_timeout,
                    allow_redirects=False,
                )
            except TimeoutError as exc:  # before OSError: TimeoutError is an OSError
                err: ComfyError = ComfyTimeout(self.name, f"no answer within {self.timeout:g} s ({method} {path})")
                cause: BaseException = exc
            except (aiohttp.ClientError, OSError) as exc:
                err = ComfyUnreachable(self.name, f"cannot connect ({type(exc).__name__})")
                cause = exc
            else:
                try:
                    if resp.status >= 400:
                        body = await resp.content.read(_ERROR_BODY_CAP)
                        err = error_for_status(self.name, resp.status, body)
                        if not (isinstance(err, ComfyServerError) and retry and not last):
                            raise err
                        cause = err
                    else:
                        yield resp
                        return
                except TimeoutError as exc:
                    raise ComfyTimeout(self.name, f"answer not complete within the timeout ({method} {path})") from exc
                except aiohttp.ClientPayloadError as exc:
                    raise ComfyUnreachable(self.name, f"connection lost while reading ({type(exc).__name__})") from exc
                except aiohttp.ClientConnectionError as exc:
                    raise ComfyUnreachable(self.name, f"connection lost ({type(exc).__name__})") from exc
                finally:
                    resp.release()
            if last:
                raise err from cause
            delay = self._delay(attempt)
            log.debug("%s %s on %s failed (%s); retry %d in %.2fs", method, path, self.name, err.message, attempt + 1, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _json(self, method: str, path: str, *, retry: bool, **kwargs: Any) -> Any:
        retry = retry and method in RETRYABLE_METHODS
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            reading = False
            try:
                async with self._open(method, path, retry=retry, **kwargs) as resp:
                    reading = True
                    body = await resp.read()
                break
            except (ComfyTimeout, ComfyUnreachable) as exc:
                # the answer broke off while being read: a retryable GET is asked again
                if not (reading and attempt < attempts - 1):
                    raise
                delay = self._delay(attempt)
                log.debug("%s %s on %s: %s; retry %d in %.2fs", method, path, self.name, exc.message, attempt + 1, delay)
                await asyncio.sleep(delay)
        try:
            return json.loads(body)
        except ValueError:
            raise ComfyBadResponse(self.name, f"{method} {path}: answer is not JSON") from None

    async def _no_body(self, method: str, path: str, *, retry: bool, **kwargs: Any) -> None:
        async with self._open(method, path, retry=retry, **kwargs) as resp:
            await resp.read()

    def _parse(self, what: str, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ComfyBadResponse(self.name, f"{what}: unexpected answer ({exc})") from None

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

    def _stream_timeout(self) -> aiohttp.ClientTimeout:
        # A big file may take longer than ``timeout`` in total; bound each wait instead.
        return aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)

    async def _chunks(self, resp: aiohttp.ClientResponse, max_bytes: int) -> AsyncIterator[bytes]:
        announced = resp.content_length
        if announced is not None and announced > max_bytes:
            raise ComfyTooLarge(self.name, max_bytes, announced)
        total = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise ComfyTooLarge(self.name, max_bytes)
            yield chunk

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
