"""The observability of one running bot, assembled: :class:`Observability`.

Built by the wiring (:mod:`bot.app`) only when ``METRICS_ADDRESS`` is set, from the
:class:`~bot.observability.metrics.BotMetrics` that :func:`bot.services.build_services` made. It
holds:

- the :class:`~bot.observability.feed.MetricsFeed` (job events, server health, websocket
  reconnects, refusals; gauges refreshed before each scrape);
- the :class:`~bot.observability.loop_lag.LoopLagMonitor` feeding ``event_loop_lag``;
- the :class:`~bot.observability.http.ObservabilityServer` on ``METRICS_ADDRESS``: ``/metrics``,
  ``/healthz`` and ``/readyz``, whose verdict :meth:`readiness` gives.

The Discord side is one callable, ``discord_state``, returning whether the bot is logged in
and, when not, why (which shards are down), so this module stays discord-free.
``start()`` once (:meth:`bot.app.AnimateBot.start_observability`), ``stop()`` once at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.jobs.service import JobService
from bot.logs import log_failure
from bot.observability.feed import MetricsFeed, answering
from bot.observability.http import ObservabilityServer, Readiness, ServerHealth, readiness_from
from bot.observability.legs import TimedDelivery
from bot.observability.loop_lag import LoopLagMonitor
from bot.observability.metrics import BotMetrics
from bot.storage import Storage

__all__ = ["DiscordState", "Observability"]

log = logging.getLogger(__name__)

#: ``(logged in, why not)``: the Discord side of readiness.
DiscordState = Callable[[], tuple[bool, str | None]]

LAG_INTERVAL = 0.25  # seconds between event-loop lag probes
STORE_TIMEOUT = 2.0  # seconds the job store may take to answer the readiness check


class Observability:
    """Metrics feed, loop-lag monitor and the web server of one bot (see the module docstring)."""

    def __init__(
        self,
        metrics: BotMetrics,
        address: tuple[str, int],
        *,
        jobs: JobService,
        store: Storage,
        discord_state: DiscordState,
        delivery: TimedDelivery | None = None,
        lag_interval: float = LAG_INTERVAL,
    ) -> None:
        self.metrics = metrics
        self.jobs = jobs
        self.store = store
        self.discord_state = discord_state
        self.feed = MetricsFeed(metrics, jobs=jobs, store=store, delivery=delivery)
        # real time always: event-loop lag is about the real loop, whatever clock the jobs use
        self.lag = LoopLagMonitor(record=metrics.loop_lag_observed, interval=lag_interval)
        self.server = ObservabilityServer(address, metrics.registry, self.readiness, before_scrape=self.feed.refresh)
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    def connect(self) -> None:
        """Start listening to the job service (before it starts, so no event is missed)."""
        self.feed.connect()

    async def start(self) -> None:
        """Serve the endpoints and start the lag monitor (``OSError`` when the address cannot be bound)."""
        if self._started:
            return
        await self.server.start()
        self.lag.start()
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.lag.stop()
        await self.server.stop()

    async def readiness(self) -> Readiness:
        """Logged in to Discord, the job store answering, and a server up that can run the default workflow."""
        logged_in, why = self.discord_state()
        default = self.jobs.workflows.default
        default_name = default.name if default is not None else "(none loaded)"
        servers = [
            ServerHealth(
                view.status.name,
                up=answering(view),
                runs_default_workflow=default is not None and not any(
                    p.workflow == default.name and p.blocking for p in view.workflow_problems),
            )
            for view in self.jobs.server_views()
        ]
        return readiness_from(discord_logged_in=logged_in, store_open=await self._store_open(), servers=servers,
                              default_workflow=default_name, discord_detail=why)

    async def _store_open(self) -> bool:
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                await self.store.schema_version()
        except asyncio.CancelledError:
            raise
        except Exception:
            log_failure(log, logging.DEBUG, "the job store did not answer the readiness check")
            return False
        return True
