"""The wait each job not started yet is told (bot.jobs.waits), over two ComfyUI test servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bot.jobs.estimate import RunRecord, Work
from bot.jobs.models import JobState
from bot.jobs.service import JobService
from standins.comfy_server import ComfyTestServer
from tests.jobs.helpers import ServiceFactory, request, wait_for

pytestmark = pytest.mark.timeout(60)

PIXELS = 1024 * 576  # the test image is prepared to 1024x576
STEPS = 40
RUN = 2.0 * STEPS / 3 + 1.0 + 0.5  # seconds the seeded medians give a job of 40 steps and 4 frames


def seed(service: JobService, server: str) -> None:
    """Three warm runs of the default workflow on ``server`` (after a cold one)."""
    work = Work("svd_img2vid", 3, 4, PIXELS)
    for _ in range(4):
        service.estimator.record(RunRecord(server, work, sampling_seconds=2.0, encode_seconds=1.0, overhead_seconds=0.5))


async def test_waits_follow_the_line_and_the_servers(
    make_service: ServiceFactory, comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]]
) -> None:
    servers = [await comfy_server_factory(step_time=0.5) for _ in range(2)]
    service = await make_service(servers, max_jobs_per_member=10)
    jobs = [await service.submit(request(1, steps=STEPS)) for _ in range(7)]

    async def two_running_two_queued() -> bool:
        states = [(await service.get(j.id)).state for j in jobs[:4]]  # type: ignore[union-attr]
        return states.count(JobState.RUNNING) == 2 and states.count(JobState.SUBMITTED) == 2

    await wait_for(two_running_two_queued, timeout=20)
    stored = [await service.get(j.id) for j in jobs]
    running = [j for j in stored if j is not None and j.state is JobState.RUNNING]
    queued = [j for j in stored if j is not None and j.state is JobState.SUBMITTED]
    line = jobs[4:]
    assert all(service.wait_estimate(j.id) is None for j in running)

    # No server has warm runs yet: the jobs ahead are counted, the wait is being estimated.
    for job in queued:
        assert service.wait_estimate(job.id) == service.waits.estimate(job.id)
        found = service.wait_estimate(job.id)
        assert found is not None and (found.ahead, found.seconds, found.words) == (1, None, "estimating...")
    for n, job in enumerate(line):
        found = service.wait_estimate(job.id)
        assert found is not None and (found.ahead, found.seconds) == (4 + n, None)
        latest = service.latest_progress(job.id)
        assert latest is not None and (latest.phase, latest.ahead, latest.wait) == ("waiting", 4 + n, None)

    seed(service, "gpu1")
    seed(service, "gpu2")
    assert service.waits.refresh() == 5  # every waiting status changes from "estimating..."
    assert service.waits.refresh() == 0  # and nothing more while nothing changed
    for job in queued:
        found = service.wait_estimate(job.id)
        assert found is not None and found.seconds is not None and 0 <= found.seconds < RUN
        latest = service.latest_progress(job.id)
        assert latest is not None and (latest.phase, latest.ahead, latest.wait is not None) == ("queued", 1, True)
    waits = [service.wait_estimate(j.id) for j in line]
    seconds = [w.seconds for w in waits if w is not None and w.seconds is not None]
    assert len(seconds) == 3 and [w.ahead for w in waits if w is not None] == [4, 5, 6]
    # what is left of the two running jobs, one full run behind each, then a second round
    assert RUN <= seconds[0] <= seconds[1] < 2 * RUN and seconds[2] == pytest.approx(seconds[0] + RUN)
    latest = service.latest_progress(line[2].id)
    assert latest is not None and latest.wait == pytest.approx(seconds[2], abs=0.5)

    # A server that stops answering no longer counts for the line.
    service.pool.get("gpu2").healthy = False
    await asyncio.sleep(0)  # the estimates are computed once for what runs until the code yields
    waits = [service.wait_estimate(j.id) for j in line]
    assert [w.ahead for w in waits if w is not None] == [2, 3, 4]
