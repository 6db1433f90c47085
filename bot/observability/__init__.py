"""Observability for the bot: Prometheus metrics, health endpoints, event-loop lag and JSON logs (issue 19).

This package owns the library parts only, each module discord-free and usable on its own:

- :mod:`bot.observability.metrics`: :class:`~bot.observability.metrics.BotMetrics`, one
  ``CollectorRegistry`` per bot with every metric and small methods to feed them;
- :mod:`bot.observability.loop_lag`: the event-loop lag monitor task;
- :mod:`bot.observability.http`: the aiohttp server answering ``/metrics``, ``/healthz`` and
  ``/readyz``, and the :class:`~bot.observability.http.Readiness` verdict;
- :mod:`bot.observability.discord_trace`: the aiohttp ``TraceConfig`` that counts Discord's 429s
  (passed to discord.py as ``http_trace=``);
- :mod:`bot.observability.json_logs`: the one-JSON-object-per-line log formatter;
- :mod:`bot.observability.config`: parsing ``METRICS_ADDRESS`` and ``LOG_FORMAT``.

Nothing happens on import; nothing here is imported by this ``__init__``.
"""
