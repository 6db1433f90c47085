"""Helpers for the job-service tests: a recording delivery, job requests and waits."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bot.jobs.models import Job, JobState
from bot.jobs.service import JobRequest, JobService
from standins.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
FAST = {"frames": 4, "steps": 3}


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (320, 180)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class RecordingDelivery:
    """Stands in for the Discord layer: records what would be posted."""

    delivered: list[tuple[str, Path]] = field(default_factory=list)
    ended: list[Job] = field(default_factory=list)
    followed: list[str] = field(default_factory=list)
    fail_times: int = 0
    gate: asyncio.Event | None = None

    async def deliver(self, job: Job, result: Path, attempt: int = 1) -> int | None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("Discord is down")
        assert result.exists()
        self.delivered.append((job.id, result))
        return 1000 + len(self.delivered)

    async def job_ended(self, job: Job) -> None:
        self.ended.append(job)

    def follow(self, job: Job) -> None:
        self.followed.append(job.id)


ServiceFactory = Callable[..., Awaitable[JobService]]


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Wait until ``predicate()`` holds (the job store lives behind a thread: poll it)."""
    name = getattr(predicate, "__name__", "<lambda>")
    await wait_until(predicate, timeout=timeout, what="the condition" if name == "<lambda>" else name, interval=0.05)


async def all_ended(service: JobService, job_ids: list[str]) -> bool:
    for job_id in job_ids:
        job = await service.get(job_id)
        if job is None or not job.is_terminal:
            return False
    return True


async def wait_state(service: JobService, job_id: str, state: JobState, timeout: float = 30.0) -> None:
    async def reached() -> bool:
        job = await service.get(job_id)
        return job is not None and job.state is state

    await wait_for(reached, timeout)


def request(user: int, **options: Any) -> JobRequest:
    return JobRequest(user_id=user, channel_id=1, guild_id=2, image=png_bytes(), options={**FAST, **options})
