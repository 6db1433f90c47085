"""The bot's Prometheus metrics: :class:`BotMetrics` owns one ``CollectorRegistry`` and every metric.

Each bot gets its own registry (tests build many bots in one process, and prometheus-client's
default registry refuses a second metric of the same name). The rest of the bot never touches
a metric object: it calls the small methods here (``job_ended``, ``refused``, ``server_status``,
...), which also decide what a label may say:

- fixed vocabularies (a job's final state, a refusal reason, a rate-limit scope) come from enums
  and a wrong value is a programming error (``ValueError``);
- names from configuration (ComfyUI servers, workflows) are cut down to ``[A-Za-z0-9_.-]`` and
  must be among the names given to :class:`BotMetrics`, so an address, a user id, a guild id or a
  token passed here by mistake never becomes a label: an unknown server is dropped, an unknown
  workflow counts as ``other``. Workflows and Discord route templates are also capped in number
  (32 and 64; more count as ``other``).

Serving the registry is :mod:`bot.observability.http`'s job.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from bot.errors import BackendUnavailable, InvalidInput, LimitReached, MissingPermissions, NotAllowed
from bot.jobs.models import ACTIVE_STATES, TERMINAL_STATES, JobState
from bot.safety.gate import SafetyRefused

__all__ = [
    "BotMetrics",
    "JOB_TIME_BUCKETS",
    "LEG_BUCKETS",
    "LOOP_LAG_BUCKETS",
    "NAMESPACE",
    "OTHER",
    "RATE_LIMIT_SCOPES",
    "RefusalReason",
    "label_value",
    "refusal_reason_for",
]

log = logging.getLogger(__name__)

NAMESPACE: Final = "animate_bot"
OTHER: Final = "other"

#: Seconds, for waiting, running and end-to-end job times (jobs take seconds to many minutes).
JOB_TIME_BUCKETS: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0)
#: Seconds, for the submit leg (upload + ``POST /prompt``) and the deliver leg (upload to Discord).
LEG_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds an event-loop wake-up came late.
LOOP_LAG_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: The ``X-RateLimit-Scope`` values Discord sends with a 429; anything else is counted as ``unknown``.
RATE_LIMIT_SCOPES: Final = frozenset({"user", "global", "shared"})

_MAX_WORKFLOWS: Final = 32
_MAX_ROUTES: Final = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# what discord_trace.route_template produces: a method and lower-case path words, ids replaced by ":id"
_ROUTE = re.compile(r"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (?:/(?:@?[a-z]+(?:[-_][a-z]+)*|:id)){0,10}")


class RefusalReason(StrEnum):
    """Why a request was refused before it became a job (the ``reason`` label of ``refusals_total``)."""

    MODERATION = "moderation"  # a moderator's setting: channel, role, ban, paused guild
    SAFETY = "safety"  # the content-safety check refused the image or the result
    BAD_INPUT = "bad_input"  # not an image, too large, an option out of range
    LIMIT = "limit"  # queue full, cooldown, quota, too many jobs in flight
    UNAVAILABLE = "unavailable"  # no ComfyUI server can take the job
    BOT_PERMISSIONS = "bot_permissions"  # the bot lacks a Discord permission in the channel


def refusal_reason_for(exc: BaseException) -> RefusalReason | None:
    """The refusal reason for one of the bot's member-facing exceptions, or None when it is not a refusal."""
    if isinstance(exc, SafetyRefused):
        return RefusalReason.SAFETY
    if isinstance(exc, MissingPermissions):
        return RefusalReason.BOT_PERMISSIONS
    if isinstance(exc, InvalidInput):
        return RefusalReason.BAD_INPUT
    if isinstance(exc, NotAllowed):
        return RefusalReason.MODERATION
    if isinstance(exc, LimitReached):
        return RefusalReason.LIMIT
    if isinstance(exc, BackendUnavailable):
        return RefusalReason.UNAVAILABLE
    return None


def label_value(raw: str, *, max_length: int = 48) -> str:
    """``raw`` cut down to a safe label value: ``[A-Za-z0-9_.-]`` only, at most ``max_length``
    characters, ``unknown`` when nothing is left."""
    value = _UNSAFE.sub("_", raw.strip())[:max_length]
    return value or "unknown"


class _Capped:
    """Label values seen so far, at most ``limit`` of them; later new ones become ``other``."""

    def __init__(self, limit: int, initial: Iterable[str] = ()) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        for value in initial:
            self.admit(value)

    def admit(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value

    def __contains__(self, value: str) -> bool:
        return value in self._seen

    def values(self) -> list[str]:
        return sorted(self._seen)


class BotMetrics:
    """Every metric of one bot, in a registry of its own.

    ``server_names`` are the configured ComfyUI servers' names (``ServerConfig.name``) and
    ``workflows`` the loaded workflows' names; only those ever appear as a ``server`` or
    ``workflow`` label (more workflows: :meth:`add_workflows`). Their series exist from the start,
    so rates start at zero. With
    ``process_metrics`` the registry also carries prometheus-client's process, platform and GC
    collectors (CPU, memory, open files, Python version, collections).
    """

    def __init__(
        self,
        *,
        server_names: Iterable[str] = (),
        workflows: Iterable[str] = (),
        process_metrics: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self._servers: frozenset[str] = frozenset(label_value(n) for n in server_names)
        self._workflows = _Capped(_MAX_WORKFLOWS, (label_value(w) for w in workflows))
        self._routes = _Capped(_MAX_ROUTES)
        r, ns = self.registry, NAMESPACE

        # jobs
        self.jobs_ended = Counter("jobs_ended", "Jobs that reached a final state, by state and workflow.",
                                  ["state", "workflow"], namespace=ns, registry=r)
        self.jobs_active = Gauge("jobs_active", "Jobs not yet ended, by state (waiting, submitted, running, delivering).",
                                 ["state"], namespace=ns, registry=r)
        self.job_wait_seconds = Histogram("job_wait_seconds", "Time a job waited in the bot's queue and a server's queue before it ran.",
                                          ["workflow"], namespace=ns, registry=r, buckets=JOB_TIME_BUCKETS)
        self.job_run_seconds = Histogram("job_run_seconds", "Time a job ran on a ComfyUI server.",
                                         ["workflow"], namespace=ns, registry=r, buckets=JOB_TIME_BUCKETS)
        self.job_total_seconds = Histogram("job_total_seconds", "Time from a job's acceptance to its end (end to end).",
                                           ["workflow"], namespace=ns, registry=r, buckets=JOB_TIME_BUCKETS)
        self.submit_seconds = Histogram("submit_seconds", "Time to hand a job to ComfyUI (input upload and POST /prompt).",
                                        namespace=ns, registry=r, buckets=LEG_BUCKETS)
        self.deliver_seconds = Histogram("deliver_seconds", "Time to deliver a result to Discord.",
                                         namespace=ns, registry=r, buckets=LEG_BUCKETS)
        self.refusals = Counter("refusals", "Requests refused before they became a job, by reason.",
                                ["reason"], namespace=ns, registry=r)

        # ComfyUI servers, by configured name only
        self.server_up = Gauge("server_up", "1 when the ComfyUI server answers, 0 when it does not.",
                               ["server"], namespace=ns, registry=r)
        self.server_queue_depth = Gauge("server_queue_depth", "Prompts running or pending on the ComfyUI server (NaN when unknown).",
                                        ["server"], namespace=ns, registry=r)
        self.server_ws_reconnects = Counter("server_ws_reconnects", "Times the websocket to the ComfyUI server was opened again.",
                                            ["server"], namespace=ns, registry=r)

        # Discord
        self.discord_rate_limited = Counter("discord_rate_limited", "HTTP 429 answers from Discord, by route template and scope.",
                                            ["route", "scope"], namespace=ns, registry=r)
        self.discord_edit_failures = Counter("discord_edit_failures", "Status-message edits that failed for good.",
                                             namespace=ns, registry=r)

        # event loop
        self.loop_lag_seconds = Gauge("event_loop_lag_seconds", "How late the last event-loop lag probe woke up.",
                                      namespace=ns, registry=r)
        self.loop_lag = Histogram("event_loop_lag", "How late event-loop lag probes woke up, in seconds.",
                                  namespace=ns, registry=r, buckets=LOOP_LAG_BUCKETS)

        for state in ACTIVE_STATES:
            self.jobs_active.labels(state=state.value)
        for reason in RefusalReason:
            self.refusals.labels(reason=reason.value)
        for workflow in self._workflows.values():
            self._init_workflow(workflow)
        self._init_workflow(OTHER)
        for server in self._servers:
            self.server_up.labels(server=server).set(0)
            self.server_queue_depth.labels(server=server).set(math.nan)
            self.server_ws_reconnects.labels(server=server)

    def add_workflows(self, names: Iterable[str]) -> None:
        """Allow more workflow names as labels (workflows loaded after the metrics were built)."""
        for name in names:
            flow = label_value(name)
            if flow not in self._workflows and self._workflows.admit(flow) == flow:
                self._init_workflow(flow)

    # ---- jobs -------------------------------------------------------------------------

    def job_ended(
        self,
        state: JobState | str,
        workflow: str,
        *,
        waited_s: float | None = None,
        ran_s: float | None = None,
        total_s: float | None = None,
    ) -> None:
        """Count a job that reached ``state`` (delivered, failed, cancelled, timed_out) and observe
        its times; leave a time out (None) when the job never had that phase."""
        final = JobState(state)
        if final not in TERMINAL_STATES:
            raise ValueError(f"job_ended needs a final state, got {final.value!r}")
        flow = self._workflow(workflow)
        self.jobs_ended.labels(state=final.value, workflow=flow).inc()
        for histogram, seconds in ((self.job_wait_seconds, waited_s), (self.job_run_seconds, ran_s),
                                   (self.job_total_seconds, total_s)):
            if seconds is not None:
                histogram.labels(workflow=flow).observe(max(0.0, seconds))

    def job_counts(self, counts: Mapping[JobState | str, int]) -> None:
        """Set the number of jobs in each not-yet-ended state; a state left out counts 0."""
        given = {JobState(state): n for state, n in counts.items()}
        ended = sorted(s.value for s in given if s not in ACTIVE_STATES)
        if ended:
            raise ValueError(f"job_counts takes not-yet-ended states only, got {', '.join(ended)}")
        for state in ACTIVE_STATES:
            self.jobs_active.labels(state=state.value).set(given.get(state, 0))

    def legs(self, *, submit_s: float | None = None, deliver_s: float | None = None) -> None:
        """Observe the time of a submit leg and/or a deliver leg."""
        if submit_s is not None:
            self.submit_seconds.observe(max(0.0, submit_s))
        if deliver_s is not None:
            self.deliver_seconds.observe(max(0.0, deliver_s))

    def refused(self, reason: RefusalReason | str) -> None:
        """Count one refused request (``ValueError`` for a reason outside :class:`RefusalReason`)."""
        self.refusals.labels(reason=RefusalReason(reason).value).inc()

    # ---- servers ----------------------------------------------------------------------

    def server_status(self, name: str, *, up: bool, queue_depth: int | None = None) -> None:
        """Record a health check of the server configured as ``name``; ``queue_depth`` None means
        unknown. Names that are not configured are ignored."""
        server = self._server(name)
        if server is None:
            return
        self.server_up.labels(server=server).set(1 if up else 0)
        self.server_queue_depth.labels(server=server).set(math.nan if queue_depth is None else max(0, queue_depth))

    def ws_reconnected(self, name: str) -> None:
        """Count one websocket reconnection to the server configured as ``name``."""
        server = self._server(name)
        if server is not None:
            self.server_ws_reconnects.labels(server=server).inc()

    # ---- Discord ----------------------------------------------------------------------

    def discord_429(self, route: str = "unknown", scope: str = "unknown") -> None:
        """Count one 429 from Discord. ``route`` is a template such as ``PATCH /channels/:id/messages/:id``
        (see :func:`bot.observability.discord_trace.route_template`); anything else counts as ``other``."""
        if route == "unknown":
            route_label = route
        else:
            route_label = self._routes.admit(route) if _ROUTE.fullmatch(route) else OTHER
        scope_label = scope if scope in RATE_LIMIT_SCOPES else "unknown"
        self.discord_rate_limited.labels(route=route_label, scope=scope_label).inc()

    def edit_failed(self) -> None:
        """Count one status-message edit that failed for good."""
        self.discord_edit_failures.inc()

    # ---- event loop -------------------------------------------------------------------

    def loop_lag_observed(self, seconds: float) -> None:
        """Record how late an event-loop probe woke (the ``record`` of :class:`~bot.observability.loop_lag.LoopLagMonitor`)."""
        lag = max(0.0, seconds)
        self.loop_lag_seconds.set(lag)
        self.loop_lag.observe(lag)

    # ---- exposition -------------------------------------------------------------------

    def exposition(self) -> str:
        """The registry in Prometheus' text format (what ``/metrics`` serves by default)."""
        return generate_latest(self.registry).decode("utf-8")

    # ---- labels -----------------------------------------------------------------------

    def _server(self, name: str) -> str | None:
        server = label_value(name)
        if server in self._servers:
            return server
        log.debug("metrics: ignoring a server name that is not configured")
        return None

    def _workflow(self, workflow: str) -> str:
        flow = label_value(workflow)
        return flow if flow in self._workflows else OTHER

    def _init_workflow(self, workflow: str) -> None:
        for state in TERMINAL_STATES:
            self.jobs_ended.labels(state=state.value, workflow=workflow)
        for histogram in (self.job_wait_seconds, self.job_run_seconds, self.job_total_seconds):
            histogram.labels(workflow=workflow)
