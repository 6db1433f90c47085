"""Observability for the bot: Prometheus metrics, health endpoints, event-loop lag and JSON logs (issue 19).

Every module is discord-free and usable on its own (the wiring in :mod:`bot.app` assembles them):

- :mod:`bot.observability.metrics`: :class:`~bot.observability.metrics.BotMetrics`, one
  ``CollectorRegistry`` per bot with every metric and small methods to feed them;
- :mod:`bot.observability.loop_lag`: the event-loop lag monitor task;
- :mod:`bot.observability.http`: the aiohttp server answering ``/metrics``, ``/healthz`` and
  ``/readyz``, and the :class:`~bot.observability.http.Readiness` verdict;
- :mod:`bot.observability.discord_trace`: the aiohttp ``TraceConfig`` that counts Discord's 429s and failed edits
  (passed to discord.py as ``http_trace=``);
- :mod:`bot.observability.json_logs`: the one-JSON-object-per-line log formatter;
- :mod:`bot.observability.config`: parsing ``METRICS_ADDRESS`` and ``LOG_FORMAT``;
- :mod:`bot.observability.legs`: timing each job's submit leg (a ComfyUI client that reports its
  uploads and prompt posts) and deliver leg (a wrapper of the delivery);
- :mod:`bot.observability.feed`: :class:`~bot.observability.feed.MetricsFeed`, which moves the
  metrics from the job service's existing signals (job events, server health, websocket
  reconnects) and refreshes the gauges before each scrape;
- :mod:`bot.observability.wiring`: :class:`~bot.observability.wiring.Observability`, the feed, the
  lag monitor and the web server of one bot, with its readiness verdict (built by
  :mod:`bot.app` only when ``METRICS_ADDRESS`` is set);
- :mod:`bot.observability.diagnostics`: the SIGUSR1 diagnostics line.

Nothing happens on import; nothing here is imported by this ``__init__``.
"""
