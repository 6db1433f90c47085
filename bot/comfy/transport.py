"""The HTTP transport of the ComfyUI client: sending one request to one server, safely.

:class:`ComfyTransport` holds the shared ``aiohttp.ClientSession`` (never created here), the
server's address and credentials, and the rules every request follows:

- every request has its own timeout (a streamed file bounds each wait instead of the total);
- GETs are retried with exponential backoff and jitter on connection errors, timeouts and 5xx
  answers, and when an answer breaks off while being read. No POST is ever retried
  (:data:`RETRYABLE_METHODS`): ``POST /prompt`` would queue the job twice, an upload or an
  interrupt could hit what came after, and a late repeat of a global ``{"clear": true}`` on
  ``/queue`` or ``/history`` would wipe prompts queued (or entries written) after the first one
  took effect. A caller that needs to know whether a POST got through asks with a GET;
- HTTP statuses map to exceptions in one table (:data:`STATUS_ERRORS`, :func:`error_for_status`);
  errors name the server by its configured name only, never by URL, and never carry credentials;
- a body that is not what was expected is a :class:`~bot.comfy.errors.ComfyBadResponse`.

:class:`~bot.comfy.client.ComfyClient` builds ComfyUI's endpoints on it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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

log = logging.getLogger(__name__)

__all__ = ["RETRYABLE_METHODS", "STATUS_ERRORS", "ComfyTransport", "ServerConfig", "error_for_status"]


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

CHUNK = 64 * 1024
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




class ComfyTransport:
    """Sends requests to one ComfyUI server (see the module docstring).

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
        return f"{type(self).__name__}(name={self.name!r})"

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

    # ----------------------------------------------------------------- streamed answers

    def _stream_timeout(self) -> aiohttp.ClientTimeout:
        # A big file may take longer than ``timeout`` in total; bound each wait instead.
        return aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)

    async def _chunks(self, resp: aiohttp.ClientResponse, max_bytes: int) -> AsyncIterator[bytes]:
        announced = resp.content_length
        if announced is not None and announced > max_bytes:
            raise ComfyTooLarge(self.name, max_bytes, announced)
        total = 0
        async for chunk in resp.content.iter_chunked(CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise ComfyTooLarge(self.name, max_bytes)
            yield chunk
