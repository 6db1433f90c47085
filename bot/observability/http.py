"""The observability web server: ``/metrics``, ``/healthz`` and ``/readyz`` on one aiohttp site.

- ``/metrics``: the bot's own registry through prometheus-client's aiohttp handler
  (``prometheus_client.aiohttp.make_aiohttp_handler``, prometheus-client 0.24 and later), which
  also answers OpenMetrics when the scraper asks for it and compresses when asked. An optional
  ``before_scrape`` coroutine runs first (the bot refreshes its gauges there: jobs by state,
  each server's health and queue); if it fails or takes too long the registry is served as it is.
- ``/healthz``: liveness only. The handler runs on the bot's event loop, so an answer at all
  proves the process and its loop are alive: ``200 {"status": "ok"}``.
- ``/readyz``: whether the bot can do its work: logged in to Discord, the job store open, and at
  least one ComfyUI server up and able to run the default workflow. ``200 {"ready": true, ...}``
  or ``503 {"ready": false, "reasons": [...]}``. The reasons name servers by their configured
  name only, never an address.

:func:`readiness_from` builds the :class:`Readiness` verdict from plain facts, so the bot's
probe is a few lines and the verdict is tested without a bot.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.registry import Collector

from bot.logs import log_failure
from bot.observability.metrics import label_value

__all__ = ["BeforeScrape", "ObservabilityServer", "Readiness", "ReadinessProbe", "ServerHealth", "make_app", "readiness_from"]

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class ServerHealth:
    """What readiness needs to know about one ComfyUI server (by its configured name)."""

    name: str
    up: bool
    runs_default_workflow: bool


@dataclass(frozen=True)
class Readiness:
    """The three readiness checks and, when one fails, why (member-safe sentences)."""

    discord_logged_in: bool
    store_open: bool
    servers_up_running_default: bool
    reasons: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.discord_logged_in and self.store_open and self.servers_up_running_default

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ready": self.ready,
            "checks": {
                "discord_logged_in": self.discord_logged_in,
                "store_open": self.store_open,
                "servers_up_running_default": self.servers_up_running_default,
            },
        }
        if not self.ready:
            body["reasons"] = list(self.reasons)
        return body


#: What the server calls for ``/readyz``: a plain or an async function returning :class:`Readiness`.
ReadinessProbe = Callable[[], Awaitable[Readiness]] | Callable[[], Readiness]


def readiness_from(
    *,
    discord_logged_in: bool,
    store_open: bool,
    servers: Iterable[ServerHealth],
    default_workflow: str,
    discord_detail: str | None = None,
) -> Readiness:
    """The readiness verdict from plain facts. Server and workflow names are reduced to
    ``[A-Za-z0-9_.-]``; pass configured names only (``ServerConfig.name``), never URLs.
    ``discord_detail`` says more when not logged in (e.g. which gateway shards are down)."""
    reasons: list[str] = []
    if not discord_logged_in:
        reasons.append("not logged in to Discord" + (f" ({discord_detail})" if discord_detail else ""))
    if not store_open:
        reasons.append("the job store is not open")
    listed = list(servers)
    workflow = label_value(default_workflow)
    able = any(s.up and s.runs_default_workflow for s in listed)
    if not able:
        if not listed:
            reasons.append("no ComfyUI server is configured")
        for server in listed:
            name = label_value(server.name)
            if not server.up:
                reasons.append(f"ComfyUI server {name} is down")
            else:
                reasons.append(f"ComfyUI server {name} is up but cannot run the default workflow {workflow}")
    return Readiness(
        discord_logged_in=discord_logged_in,
        store_open=store_open,
        servers_up_running_default=able,
        reasons=tuple(reasons),
    )


#: What ``/metrics`` awaits before serving the registry (refreshing gauges read at scrape time).
BeforeScrape = Callable[[], Awaitable[None]]


def make_app(registry: Collector, readiness: ReadinessProbe, *, readiness_timeout: float = 5.0,
             before_scrape: BeforeScrape | None = None) -> web.Application:
    """An aiohttp application with the three routes (to run alone, or to add as a sub-application)."""
    exposition = make_aiohttp_handler(registry)

    async def metrics(request: web.Request) -> web.StreamResponse:
        if before_scrape is not None:
            try:
                async with asyncio.timeout(readiness_timeout):
                    await before_scrape()
            except TimeoutError:
                log.warning("refreshing the metrics took longer than %g s", readiness_timeout)
            except Exception:
                log_failure(log, logging.WARNING, "refreshing the metrics failed")
        return await exposition(request)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers=_NO_STORE)

    async def readyz(request: web.Request) -> web.Response:
        verdict = await _probe(readiness, readiness_timeout)
        return web.json_response(verdict.to_json(), status=200 if verdict.ready else 503, headers=_NO_STORE)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _probe(readiness: ReadinessProbe, timeout: float) -> Readiness:
    """Run the probe; a probe that fails or takes too long means not ready (with that reason)."""
    try:
        result = readiness()
        if inspect.isawaitable(result):
            async with asyncio.timeout(timeout):
                return await result
        return result
    except TimeoutError:
        log.warning("the readiness probe took longer than %g s", timeout)
        return _not_ready("the readiness check timed out")
    except Exception:
        log_failure(log, logging.WARNING, "the readiness probe failed")
        return _not_ready("the readiness check failed")


def _not_ready(reason: str) -> Readiness:
    return Readiness(discord_logged_in=False, store_open=False, servers_up_running_default=False, reasons=(reason,))


class ObservabilityServer:
    """Serves :func:`make_app` on ``address`` (``(host, port)``; port 0 picks a free port, see
    :attr:`bound_address`). ``start()`` once, ``stop()`` once at shutdown."""

    def __init__(
        self,
        address: tuple[str, int],
        registry: Collector,
        readiness: ReadinessProbe,
        *,
        readiness_timeout: float = 5.0,
        before_scrape: BeforeScrape | None = None,
    ) -> None:
        self.address = address
        self.app = make_app(registry, readiness, readiness_timeout=readiness_timeout, before_scrape=before_scrape)
        self._runner: web.AppRunner | None = None
        self._bound: tuple[str, int] | None = None

    @property
    def bound_address(self) -> tuple[str, int]:
        """The host and port the server listens on (raises before :meth:`start`)."""
        if self._bound is None:
            raise RuntimeError("the observability server is not started")
        return self._bound

    async def start(self) -> None:
        """Bind and start serving (``OSError`` when the address cannot be bound)."""
        if self._runner is not None:
            raise RuntimeError("the observability server is already started")
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self.address
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockname = runner.addresses[0]
        self._bound = (str(sockname[0]), int(sockname[1]))
        log.info("metrics and health endpoints listening on port %d", self._bound[1])

    async def stop(self) -> None:
        """Stop serving (does nothing when not started)."""
        runner, self._runner = self._runner, None
        self._bound = None
        if runner is not None:
            await runner.cleanup()
