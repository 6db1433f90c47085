"""Fixtures of the job-service tests: one aiohttp session, and a factory of started job
services over ComfyUI test servers (``gpu1``, ``gpu2``, ... in the order given), built by the
production wiring (:func:`bot.services.build_services`, with the deterministic safety detector) and
connected to a recording delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.comfy.client import ComfyClient
from bot.jobs.service import JobService
from bot.services import Overrides, build_services
from bot.settings import ServerConfig, Settings
from standins.comfy_server import ComfyTestServer
from standins.fake_safety import FakeSafetyDetector
from tests.jobs.helpers import ROOT, RecordingDelivery, ServiceFactory


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def make_service(tmp_path: Path, session: aiohttp.ClientSession) -> AsyncIterator[ServiceFactory]:
    services: list[JobService] = []

    async def factory(
        servers: list[ComfyTestServer], *, delivery: RecordingDelivery | None = None, start: bool = True, **settings: Any
    ) -> JobService:
        configs = tuple(ServerConfig(name=f"gpu{i + 1}", url=s.url) for i, s in enumerate(servers))
        base = Settings(
            comfyui_servers=configs,
            workflows_dir=ROOT / "workflows",
            data_dir=tmp_path / "data",
            max_jobs_per_member=settings.pop("max_jobs_per_member", 2),
            max_waiting_jobs=settings.pop("max_waiting_jobs", 100),
            job_timeout=settings.pop("job_timeout", 120.0),
        )
        clients = {c.name: ComfyClient(session, c, timeout=5.0, retries=1, backoff=0.05) for c in configs}
        settings.setdefault("safety_detector", FakeSafetyDetector.with_markers())
        built = await build_services(base, session, Overrides(comfy=clients, health_interval=0.5, **settings))
        service = built.jobs
        service.connect(delivery or RecordingDelivery())
        for hub in service.hubs.values():
            hub.reconnect_min, hub.reconnect_max = 0.05, 0.2
        if start:
            await service.start()
        services.append(service)
        return service

    yield factory
    for service in services:
        if not service.closing:
            await service.close()
