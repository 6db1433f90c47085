"""Issue 13 through the job service and the ComfyUI test server: the upload name the server
answers is the one a job uses (defect 1), per-job memory returns to idle (defect 2), and a
history entry written seconds after ``execution_success`` is waited for (defect 5)."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import pytest
from PIL import Image

from bot.jobs.models import JobState
from bot.jobs.service import JobRequest, JobService
from standins.comfy_server import ComfyTestServer
from standins.wait import wait_until
from tests.jobs.helpers import FAST, RecordingDelivery, ServiceFactory, all_ended, png_bytes, request

pytestmark = pytest.mark.timeout(90)


async def _ended(service: JobService, *job_ids: str) -> None:
    await wait_until(lambda: all_ended(service, list(job_ids)), timeout=60, what=f"jobs {job_ids} to end")


def _red_first_frame(path: object) -> bool:
    with Image.open(str(path)) as im:
        r, g, b = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
    return r > 150 and g < 80 and b < 80


async def test_a_job_uses_the_name_the_server_answers_and_never_rewrites_its_file(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    delivery = RecordingDelivery()
    service = await make_service([comfy_server], delivery=delivery)
    first = await service.submit(request(7))
    await _ended(service, first.id)
    done = await service.get(first.id)
    assert done is not None and done.state is JobState.DELIVERED and done.uploaded_name
    name = done.uploaded_name
    # Another file now holds that name on the server (say, another bot's upload): a re-roll
    # of the same input must neither overwrite it nor use it, but use the name it is given.
    foreign = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 20, 220)).save(foreign, format="PNG")
    (comfy_server.input_dir / name).write_bytes(foreign.getvalue())

    again = await service.reroll(first.id, user_id=7, channel_id=1, guild_id=2)
    await _ended(service, again.id)
    redone = await service.get(again.id)
    assert redone is not None and redone.state is JobState.DELIVERED, redone
    stem = name.removesuffix(".png")
    assert redone.uploaded_name == f"{stem} (1).png"
    assert (comfy_server.input_dir / name).read_bytes() == foreign.getvalue()  # untouched
    assert _red_first_frame(delivery.delivered[-1][1])  # made from the job's own image

    third = await service.reroll(first.id, user_id=7, channel_id=1, guild_id=2)
    await _ended(service, third.id)
    reused = await service.get(third.id)
    assert reused is not None and reused.uploaded_name == f"{stem} (1).png"  # found again, not copied
    assert sorted(p.name for p in comfy_server.input_dir.iterdir()) == sorted([name, f"{stem} (1).png"])


async def test_history_written_seconds_after_success_is_waited_for(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    # ComfyUI sends execution_success, then (models unloaded with --disable-smart-memory)
    # writes history and sends executing/null. The old follower gave up after 20 x 50 ms.
    comfy_server.history_delay = 1.5
    delivery = RecordingDelivery()
    service = await make_service([comfy_server], delivery=delivery)
    job = await service.submit(request(7))
    await _ended(service, job.id)
    done = await service.get(job.id)
    assert done is not None and done.state is JobState.DELIVERED, (done.state if done else None, done and done.error)
    assert [job_id for job_id, _ in delivery.delivered] == [job.id]
    assert _red_first_frame(delivery.delivered[0][1])


async def test_every_per_job_record_is_dropped_when_the_jobs_end(
    comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]], make_service: ServiceFactory
) -> None:
    good = await comfy_server_factory(step_time=0.01)
    failing = await comfy_server_factory()
    failing.fail_at = "VAEDecode"
    service = await make_service([good, failing], delivery=RecordingDelivery(), max_jobs_per_member=3)
    idle = service.memory_counts()
    assert idle and set(idle.values()) == {0}, idle
    jobs = []
    for member in (1, 2, 3):
        for colour in ((200, 30, 30), (30, 200, 30)):
            jobs.append(await service.submit(
                JobRequest(user_id=member, channel_id=1, guild_id=2, image=png_bytes(colour), options=FAST)))
    cancelled = await service.cancel(jobs[-1].id, by_user=3)
    assert cancelled.state is JobState.CANCELLED
    await _ended(service, *(j.id for j in jobs))
    states = {(await service.get(j.id)).state for j in jobs}  # type: ignore[union-attr]
    assert {JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED} <= states, states
    await wait_until(lambda: service.memory_counts() == idle, timeout=10, what="every per-job count back to idle",
                     describe=lambda: {k: v for k, v in service.memory_counts().items() if v != idle[k]})
    assert len(service.streams) == 0
