"""The submit leg is paired by task (upload start -> POST /prompt answered); the deliver leg is
each deliver() call; nothing is kept once a job is done."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from bot.jobs.models import Job
from bot.observability.legs import SubmitLegTimer, TimedDelivery


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_each_task_pairs_its_own_upload_with_its_own_post() -> None:
    seen: list[float] = []
    ticks = Ticks()
    timer = SubmitLegTimer(seen.append, monotonic=ticks)
    go = asyncio.Event()

    async def job(start: float, posted_after: float, ok: bool = True) -> None:
        ticks.now = start
        timer.upload_started()
        await go.wait()
        ticks.now = start + posted_after
        timer.prompt_posted(ok)

    first = asyncio.create_task(job(1.0, 0.25))
    second = asyncio.create_task(job(2.0, 0.5))
    failed = asyncio.create_task(job(3.0, 9.0, ok=False))
    await asyncio.sleep(0)
    assert len(timer) == 3
    go.set()
    await asyncio.gather(first, second, failed)
    assert sorted(seen) == [0.25, 0.5]  # the failed POST observes nothing
    assert len(timer) == 0


async def test_an_upload_without_a_post_is_forgotten_with_its_task() -> None:
    timer = SubmitLegTimer(lambda s: None)

    async def upload_only() -> None:
        timer.upload_started()

    await asyncio.create_task(upload_only())
    await asyncio.sleep(0)  # the finished task's done callbacks run, then nothing holds it
    gc.collect()
    assert len(timer) == 0
    timer.prompt_posted(True)  # a POST without an upload in this task observes nothing


class Recording:
    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.ended: list[str] = []
        self.followed: list[str] = []

    async def deliver(self, job: Job, result: Path, attempt: int) -> int | None:
        self.delivered.append(job.id)
        return 42

    async def job_ended(self, job: Job) -> None:
        self.ended.append(job.id)

    def follow(self, job: Job) -> None:
        self.followed.append(job.id)

    def per_job_counts(self) -> dict[str, int]:
        return {"followers": len(self.followed)}


async def test_timed_delivery_times_each_call_and_keeps_the_first_start_until_taken() -> None:
    inner, legs, ticks = Recording(), [], Ticks()
    timed = TimedDelivery(inner, legs.append, monotonic=ticks, now=lambda: 1000.0)
    job = Job.new(user_id=1, channel_id=2, workflow="w", created_at=990.0)
    assert await timed.deliver(job, Path("x"), 1) == 42
    timed.follow(job)
    await timed.job_ended(job)
    assert inner.delivered == inner.followed == inner.ended == [job.id]
    assert legs == [0.0]
    assert timed.per_job_counts() == {"followers": 1, "timed_deliveries": 1}
    assert timed.take_delivery_start(job.id) == 1000.0
    assert timed.take_delivery_start(job.id) is None
    assert timed.per_job_counts()["timed_deliveries"] == 0
