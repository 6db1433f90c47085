"""Build the job service from the settings: store, workflows, one hub per server, the pool.

Used by ``python -m bot run`` (and by tests that want the whole thing). The aiohttp session
and the ComfyUI clients are passed in: the bot owns them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from bot.clock import Clock, SystemClock
from bot.comfy.client import ComfyClient
from bot.comfy.hub import ComfyHub, load_or_create_client_id
from bot.jobs.backends import Backend, BackendPool
from bot.jobs.service import Delivery, JobService, ServiceLimits
from bot.settings import Settings
from bot.storage import Storage
from bot.workflows import WorkflowRegistry, load_workflows

log = logging.getLogger(__name__)


async def load_registry(settings: Settings) -> WorkflowRegistry:
    """Load ``WORKFLOWS_DIR``; a bad file is logged and skipped, the others still load."""
    result = await asyncio.to_thread(load_workflows, settings.workflows_dir)
    for error in result.errors:
        log.error("Workflow %s was not loaded: %s", error.path.name, error.message)
    if not len(result.registry):
        log.error("No usable workflow in %s: /animate will refuse every job", settings.workflows_dir)
    return result.registry


async def open_job_service(
    settings: Settings,
    session: aiohttp.ClientSession,
    clients: Mapping[str, ComfyClient],
    *,
    clock: Clock | None = None,
    delivery: Delivery | None = None,
    **options: Any,
) -> JobService:
    """Open the store and build the service (not started: call ``start()`` once delivery is set)."""
    clock = clock or SystemClock()
    store = await Storage.open(settings.store_path, clock=clock)
    registry = await load_registry(settings)
    hubs: dict[str, ComfyHub] = {}
    for name, client in clients.items():
        client_id = await asyncio.to_thread(load_or_create_client_id, settings.data_dir, name)
        hubs[name] = ComfyHub(client, session, client_id)
    pool = BackendPool(
        [Backend(name=name, client=client, max_pending=settings.comfyui_max_pending) for name, client in clients.items()],
        clock=clock,
        failure_threshold=options.pop("failure_threshold", 3),
    )
    limits = ServiceLimits(
        job_timeout=settings.job_timeout,
        max_waiting=settings.max_waiting_jobs,
        max_in_flight=settings.max_jobs_per_member,
        max_input_pixels=settings.max_input_pixels,
        retention_days=settings.retention_days,
    )
    return JobService(
        store=store,
        pool=pool,
        hubs=hubs,
        workflows=registry,
        data_dir=settings.data_dir,
        limits=limits,
        clock=clock,
        delivery=delivery,
        **options,
    )
