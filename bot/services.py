"""The bot's services that do not speak Discord, built once, in one function: :func:`build_services`.

Order (each step uses only what was built before it):

1. the clock;
2. one ComfyUI client per configured server, all on the one ``aiohttp.ClientSession`` the
   caller owns (:func:`build_comfy_clients`);
3. the job store (SQLite in ``DATA_DIR``);
4. the workflows of ``WORKFLOWS_DIR`` (a file that does not load is logged; the others load);
5. one websocket hub per server, its client id kept in ``DATA_DIR``;
6. the server pool (health, least-loaded choice);
7. the content-safety gate around its detector (:class:`~bot.safety.gate.SafetyGate`; NudeNet unless
   :class:`Overrides` gives another; loaded later, when the bot starts);
8. the queue-wait estimator (:class:`~bot.jobs.estimate.WaitEstimator`, learning run times per
   server and workflow) and the job service over all of the above (the gate checks every input,
   the estimator gives each waiting job its wait); it closes the hubs and the store when it closes;
9. the status-edit scheduler and the moderation admission policy;
10. with ``METRICS_ADDRESS`` set, the :class:`~bot.observability.metrics.BotMetrics` (its own
    registry, labelled with the configured server names and the loaded workflows); the ComfyUI
   clients of step 2 are then :class:`~bot.observability.legs.TimedComfyClient`, which time each
   job's submit leg (upload to ``POST /prompt`` answered) into it.

They come back as one typed :class:`Services`. Nothing is started here: the job service needs
its delivery first (:meth:`~bot.jobs.service.JobService.connect`), and the Discord side of the
bot (:mod:`bot.app`) starts everything in one order once logged in. Tests and benchmarks build
the same way, changing only what :class:`Overrides` offers. Nothing here imports discord.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from bot.clock import Clock, SystemClock
from bot.comfy.client import ComfyClient
from bot.comfy.client_id import load_or_create_client_id
from bot.comfy.hub import ComfyHub
from bot.discord.edit_scheduler import EditPacing, EditScheduler
from bot.jobs.backends import Backend, BackendPool
from bot.jobs.estimate import WaitEstimator
from bot.jobs.service import JobService, ServiceLimits
from bot.moderation.policy import AdmissionPolicy
from bot.observability.legs import SubmitLegTimer, TimedComfyClient
from bot.observability.metrics import BotMetrics
from bot.safety.detector import SafetyDetector
from bot.safety.gate import SafetyGate, default_detector
from bot.settings import Settings
from bot.storage import Storage
from bot.workflows import WorkflowRegistry, load_registry

log = logging.getLogger(__name__)

__all__ = ["Overrides", "Services", "build_comfy_clients", "build_services"]

FAILURE_THRESHOLD = 3  # failed health checks in a row before a server counts as down


@dataclass(frozen=True)
class Overrides:
    """What tests and benchmarks may change in the wiring; ``python -m bot run`` uses the defaults."""

    clock: Clock | None = None  #: a fake clock (default: the real one)
    comfy: Mapping[str, ComfyClient] | None = None  #: ready-made clients (e.g. fewer retries), by server name
    health_interval: float = 5.0  #: seconds between server health checks
    sweep_interval: float = 5.0  #: seconds between time-out and retention sweeps
    edit_pacing: EditPacing | None = None  #: status-edit pacing (default: Discord's real limits)
    safety_detector: SafetyDetector | None = None  #: e.g. ``standins.fake_safety`` (default: NudeNet)


@dataclass(frozen=True)
class Services:
    """Every service the bot and its cogs are given, typed (see the module docstring)."""

    settings: Settings
    session: aiohttp.ClientSession
    clock: Clock
    comfy: Mapping[str, ComfyClient]  #: by server name (``/status`` asks them directly)
    store: Storage
    jobs: JobService
    edit_scheduler: EditScheduler
    policy: AdmissionPolicy
    safety: SafetyGate
    metrics: BotMetrics | None = None  #: None unless ``METRICS_ADDRESS`` is set


def build_comfy_clients(settings: Settings, session: aiohttp.ClientSession,
                        submit_timer: SubmitLegTimer | None = None) -> dict[str, ComfyClient]:
    """One client per ``COMFYUI_URLS`` entry, by name, on the shared session (timing each job's
    submit leg into ``submit_timer`` when given)."""
    if submit_timer is not None:
        return {
            server.name: TimedComfyClient(session, server, token=settings.comfyui_token, timeout=settings.comfyui_timeout,
                                          submit_timer=submit_timer)
            for server in settings.comfyui_servers
        }
    return {
        server.name: ComfyClient(session, server, token=settings.comfyui_token, timeout=settings.comfyui_timeout)
        for server in settings.comfyui_servers
    }


async def build_services(settings: Settings, session: aiohttp.ClientSession,
                         overrides: Overrides | None = None) -> Services:
    """Build every discord-free service, in the order of the module docstring (nothing started)."""
    overrides = overrides or Overrides()
    clock = overrides.clock or SystemClock()
    metrics = None
    if settings.metrics_address is not None:
        metrics = BotMetrics(server_names=[s.name for s in settings.comfyui_servers])
    submit_timer = SubmitLegTimer(lambda seconds: metrics.legs(submit_s=seconds)) if metrics is not None else None
    comfy = (dict(overrides.comfy) if overrides.comfy is not None
             else build_comfy_clients(settings, session, submit_timer))
    store = await Storage.open(settings.store_path, clock=clock)
    try:
        workflows = await _load_workflows(settings)
        if metrics is not None:
            metrics.add_workflows(workflows.names())
        hubs = {name: ComfyHub(client, session, await asyncio.to_thread(load_or_create_client_id, settings.data_dir, name))
                for name, client in comfy.items()}
    except BaseException:
        await store.close()
        raise
    pool = BackendPool(
        [Backend(name=name, client=client, max_pending=settings.comfyui_max_pending) for name, client in comfy.items()],
        clock=clock,
        failure_threshold=FAILURE_THRESHOLD,
    )
    safety = SafetyGate(overrides.safety_detector or default_detector(), guilds=store.guilds,
                        withheld=store.withheld, clock=clock)
    jobs = JobService(
        store=store,
        pool=pool,
        hubs=hubs,
        workflows=workflows,
        data_dir=settings.data_dir,
        limits=ServiceLimits(
            job_timeout=settings.job_timeout,
            max_waiting=settings.max_waiting_jobs,
            max_in_flight=settings.max_jobs_per_member,
            max_input_pixels=settings.max_input_pixels,
            retention_days=settings.retention_days,
        ),
        clock=clock,
        health_interval=overrides.health_interval,
        sweep_interval=overrides.sweep_interval,
        input_check=safety,
        estimator=WaitEstimator(),
    )
    return Services(
        settings=settings,
        session=session,
        clock=clock,
        comfy=comfy,
        store=store,
        jobs=jobs,
        edit_scheduler=EditScheduler(clock=clock, pacing=overrides.edit_pacing),
        policy=AdmissionPolicy(store.guilds, clock=clock, allow_dms=settings.allow_dms,
                               default_max_in_flight=settings.max_jobs_per_member),
        metrics=metrics,
        safety=safety,
    )


async def _load_workflows(settings: Settings) -> WorkflowRegistry:
    registry = (await asyncio.to_thread(load_registry, settings.workflows_dir)).registry
    if not len(registry):
        log.error("No usable workflow in %s: /animate will refuse every job", settings.workflows_dir)
    return registry
