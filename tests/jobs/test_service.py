"""The job service against real ComfyUI test servers: fairness, recovery, cancel, time limits."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.errors import BackendUnavailable
from bot.jobs.models import Job, JobState
from standins.comfy_server import ComfyTestServer
from tests.jobs.helpers import (
    RecordingDelivery,
    ServiceFactory,
    all_ended,
    request,
    wait_for,
    wait_state,
)

pytestmark = pytest.mark.timeout(90)


async def test_one_job_is_delivered_with_a_video_of_the_input(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    delivery = RecordingDelivery()
    service = await make_service([comfy_server], delivery=delivery)
    try:
        job = await service.submit(request(7, seed=42))
        await wait_for(lambda: all_ended(service, [job.id]))
        done = await service.get(job.id)
        assert done is not None and done.state is JobState.DELIVERED, done
        assert done.options["seed"] == 42 and done.delivered_message_id == 1001
        [(job_id, path)] = delivery.delivered
        with Image.open(path) as im:
            assert im.n_frames >= 2  # identical neighbour frames may be merged by the GIF writer
            r, g, b = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
            assert r > 150 and g < 80  # the red input
        # ComfyUI's history entry of a delivered job is removed
        assert await comfy_server_history(comfy_server, done.prompt_id) == {}
    finally:
        await service.close()


async def comfy_server_history(server: ComfyTestServer, prompt_id: str | None) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/history/{prompt_id}") as resp:
        return await resp.json()


async def test_fifty_jobs_ten_members_three_servers(
    comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]], make_service: ServiceFactory
) -> None:
    servers = [await comfy_server_factory() for _ in range(3)]
    delivery = RecordingDelivery()
    service = await make_service(servers, delivery=delivery, max_jobs_per_member=5)
    try:
        jobs: list[Job] = []
        order: list[int] = []
        original = service.queue.take

        def spy(job_id: str) -> Any:
            entry = original(job_id)
            order.append(int(entry.member))  # type: ignore[call-overload]
            return entry

        service.queue.take = spy  # type: ignore[method-assign]
        for server in servers:
            server.step_time = 0.05
        for member in range(10):
            for _ in range(5):
                jobs.append(await service.submit(request(member)))
            if member == 0:  # the sixth job of a member is refused while five are in flight
                with pytest.raises(Exception) as refused:
                    await service.submit(request(0))
                assert "5 jobs" in getattr(refused.value, "user_message", "")
        for server in servers:
            server.step_time = 0.0
        await wait_for(lambda: all_ended(service, [j.id for j in jobs]), timeout=80)
        states = Counter([(await service.get(j.id)).state for j in jobs])  # type: ignore[union-attr]
        assert states == {JobState.DELIVERED: 50}
        delivered_ids = [job_id for job_id, _ in delivery.delivered]
        assert len(delivered_ids) == 50 and len(set(delivered_ids)) == 50
        # members were interleaved: in the first ten dispatches no member came twice
        # (the first few were dispatched while others were still being submitted)
        late = order[10:30]
        assert len(set(late[:10])) >= 8
        used = {(await service.get(j.id)).server for j in jobs}  # type: ignore[union-attr]
        assert used == {"gpu1", "gpu2", "gpu3"}
    finally:
        await service.close()


async def test_cancel_waiting_submitted_and_running(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    comfy_server.step_time = 0.2
    service = await make_service([comfy_server], max_jobs_per_member=5)
    try:
        running = await service.submit(request(1, steps=40))
        pending = await service.submit(request(2, steps=40))
        waiting = await service.submit(request(3, steps=40))

        await wait_state(service, running.id, JobState.RUNNING)
        await wait_state(service, pending.id, JobState.SUBMITTED)  # one prompt pending besides the running one
        assert (await service.get(waiting.id)).state is JobState.WAITING  # type: ignore[union-attr]

        # another member may not cancel it
        with pytest.raises(Exception) as refused:
            await service.cancel(running.id, by_user=99)
        assert "Only the member" in refused.value.user_message  # type: ignore[attr-defined]

        ended = await service.cancel(waiting.id, by_user=3)
        assert ended.state is JobState.CANCELLED
        ended = await service.cancel(pending.id, by_user=2)
        assert ended.state is JobState.CANCELLED
        # cancelling another member's queued prompt never touches the running job
        assert (await service.get(running.id)).state is JobState.RUNNING  # type: ignore[union-attr]
        assert service.latest_progress(running.id) is not None
        ended = await service.cancel(running.id, by_user=1)
        assert ended.state is JobState.CANCELLED

        async with aiohttp.ClientSession() as s:
            async with s.get(f"{comfy_server.url}/queue") as resp:
                queue = await resp.json()
            assert queue["queue_running"] == [] and queue["queue_pending"] == []
            async with s.get(f"{comfy_server.url}/history") as resp:
                history = await resp.json()
        pending_job = await service.get(pending.id)
        running_job = await service.get(running.id)
        assert pending_job.prompt_id not in history  # type: ignore[union-attr]
        messages = history[running_job.prompt_id]["status"]["messages"]  # type: ignore[union-attr]
        assert any(m[0] == "execution_interrupted" for m in messages)
    finally:
        await service.close()


async def test_time_limit_interrupts_and_ends_timed_out(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    from standins.fake_clock import FakeClock

    clock = FakeClock()
    comfy_server.step_time = 0.1
    delivery = RecordingDelivery()
    service = await make_service([comfy_server], delivery=delivery, clock=clock, job_timeout=60.0)
    try:
        job = await service.submit(request(1, steps=40))

        await wait_state(service, job.id, JobState.RUNNING)
        clock.advance(61)
        await wait_for(lambda: all_ended(service, [job.id]))
        ended = await service.get(job.id)
        assert ended.state is JobState.TIMED_OUT and "limit" in (ended.error or "")  # type: ignore[union-attr]
        assert [j.id for j in delivery.ended] == [job.id]
        history = await comfy_server_history(comfy_server, ended.prompt_id)  # type: ignore[union-attr]
        assert any(m[0] == "execution_interrupted" for m in history[ended.prompt_id]["status"]["messages"])  # type: ignore[index,union-attr]
    finally:
        await service.close()


async def test_failure_inside_comfyui_gives_a_reason(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    comfy_server.fail_at = "VAEDecode"
    delivery = RecordingDelivery()
    service = await make_service([comfy_server], delivery=delivery)
    try:
        job = await service.submit(request(1))
        await wait_for(lambda: all_ended(service, [job.id]))
        ended = await service.get(job.id)
        assert ended.state is JobState.FAILED  # type: ignore[union-attr]
        assert "VAEDecode" in (ended.error or "") and "127.0.0.1" not in (ended.error or "")  # type: ignore[union-attr]
        assert delivery.ended and not delivery.delivered
    finally:
        await service.close()


async def test_missing_checkpoint_is_refused_at_once_and_the_admin_log_names_it(
    comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]],
    make_service: ServiceFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await comfy_server_factory(checkpoints=[])
    service = await make_service([server])
    try:
        with caplog.at_level(logging.WARNING, logger="bot.workflows.support"):
            with pytest.raises(BackendUnavailable) as refused:
                await service.submit(request(1))
        assert "can't run the **svd_img2vid** workflow" in refused.value.user_message
        assert "ckpt_name" in caplog.text and "no checkpoints installed" in caplog.text
        assert "No checked server can run any workflow (gpu1)" in caplog.text  # the operator sees it at start
        assert not [p for p in server.requests if p[1].endswith("/prompt") and p[0] == "POST"]
    finally:
        await service.close()


async def test_checkpoint_removed_after_the_check_fails_the_job_with_admin_hint(
    comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]], make_service: ServiceFactory
) -> None:
    server = await comfy_server_factory()
    service = await make_service([server])
    try:
        server.checkpoints = []  # the server changed after the bot checked it
        job = await service.submit(request(1))
        await wait_for(lambda: all_ended(service, [job.id]))
        ended = await service.get(job.id)
        assert ended.state is JobState.FAILED and "model is missing" in (ended.error or "")  # type: ignore[union-attr]
        assert "ckpt_name" in (ended.error_detail or "")  # type: ignore[union-attr]
    finally:
        await service.close()


async def test_restart_of_the_service_mid_run_delivers_once(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    comfy_server.step_time = 0.05
    first = await make_service([comfy_server])
    running = await first.submit(request(1, steps=20))
    pending = await first.submit(request(2, steps=20))

    await wait_state(first, running.id, JobState.RUNNING)
    await first.close()

    delivery = RecordingDelivery()
    second = await make_service([comfy_server], delivery=delivery)
    try:
        await wait_for(lambda: all_ended(second, [running.id, pending.id]))
        assert {(await second.get(j)).state for j in (running.id, pending.id)} == {JobState.DELIVERED}  # type: ignore[union-attr]
        assert sorted(j for j, _ in delivery.delivered) == sorted([running.id, pending.id])
        assert (await second.get(running.id)).submit_attempts == 1  # type: ignore[union-attr]
    finally:
        await second.close()


async def test_stopped_while_delivering_is_delivered_once_after_restart(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    gate = asyncio.Event()
    first = await make_service([comfy_server], delivery=RecordingDelivery(gate=gate))
    job = await first.submit(request(1))

    await wait_state(first, job.id, JobState.DELIVERING)
    await first.close()
    prompts_before = [r for r in comfy_server.requests if r == ("POST", "/prompt")]

    delivery = RecordingDelivery()
    second = await make_service([comfy_server], delivery=delivery)
    try:
        await wait_for(lambda: all_ended(second, [job.id]))
        assert [j for j, _ in delivery.delivered] == [job.id]
        assert [r for r in comfy_server.requests if r == ("POST", "/prompt")] == prompts_before  # not run again
    finally:
        await second.close()


async def test_server_restart_that_loses_the_queue_resubmits_once(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    comfy_server.step_time = 0.05
    delivery = RecordingDelivery()
    service = await make_service([comfy_server], delivery=delivery)
    try:
        job = await service.submit(request(1, steps=20))

        await wait_state(service, job.id, JobState.RUNNING)
        await comfy_server.restart(lose_state=True)
        await wait_for(lambda: all_ended(service, [job.id]))
        done = await service.get(job.id)
        assert done.state is JobState.DELIVERED and done.submit_attempts == 2  # type: ignore[union-attr]
        assert len(delivery.delivered) == 1
    finally:
        await service.close()


async def test_killed_server_moves_its_jobs_elsewhere(
    comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]], make_service: ServiceFactory
) -> None:
    doomed = await comfy_server_factory(step_time=0.05)
    healthy = await comfy_server_factory(step_time=0.01)
    delivery = RecordingDelivery()
    service = await make_service([doomed, healthy], delivery=delivery, max_jobs_per_member=10)
    try:
        jobs = [await service.submit(request(u, steps=20)) for u in range(6)]

        async def one_running_on_doomed() -> bool:
            for j in jobs:
                job = await service.get(j.id)
                if job is not None and job.server == "gpu1" and job.state is JobState.RUNNING:
                    return True
            return False

        await wait_for(one_running_on_doomed)
        await doomed.stop()
        await wait_for(lambda: all_ended(service, [j.id for j in jobs]), timeout=60)
        final = [await service.get(j.id) for j in jobs]
        assert all(j.state is JobState.DELIVERED for j in final), [(j.id, j.state, j.error) for j in final]  # type: ignore[union-attr]
        assert len({j for j, _ in delivery.delivered}) == 6 == len(delivery.delivered)
    finally:
        await service.close()


async def test_all_servers_down_refuses_at_once(tmp_path: Path, make_service: ServiceFactory) -> None:
    server = ComfyTestServer(tmp_path / "down")
    await server.start()
    url = server.url
    await server.stop()
    service = await make_service([server])
    try:
        with pytest.raises(Exception) as refused:
            await service.submit(request(1))
        assert "offline" in refused.value.user_message  # type: ignore[attr-defined]
        assert url not in refused.value.user_message  # type: ignore[attr-defined]
    finally:
        await service.close()


async def test_reroll_reuses_the_input_with_a_new_seed(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    delivery = RecordingDelivery()
    service = await make_service([comfy_server], delivery=delivery)
    try:
        first = await service.submit(request(1, seed=5, motion=40))
        await wait_for(lambda: all_ended(service, [first.id]))
        again = await service.reroll(first.id, user_id=1, channel_id=1, guild_id=2, overrides={"motion": 80})
        await wait_for(lambda: all_ended(service, [again.id]))
        done = await service.get(again.id)
        assert done.state is JobState.DELIVERED and done.parent_job_id == first.id  # type: ignore[union-attr]
        assert done.options["motion"] == 80 and done.options["seed"] != 5  # type: ignore[union-attr]
        assert done.input_path == (await service.get(first.id)).input_path  # type: ignore[union-attr]
        # ComfyUI keeps one copy of the image: the re-roll used the file the first job uploaded
        assert len([p for p in comfy_server.input_dir.iterdir() if p.name.startswith("animate_")]) == 1
    finally:
        await service.close()


async def test_retention_removes_old_inputs_and_results(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    from standins.fake_clock import FakeClock

    clock = FakeClock()
    delivery = RecordingDelivery()
    service = await make_service([comfy_server], delivery=delivery, clock=clock)
    try:
        job = await service.submit(request(1))
        await wait_for(lambda: all_ended(service, [job.id]))
        done = await service.get(job.id)
        assert done is not None and done.input_path and done.result_path
        assert Path(done.input_path).exists() and Path(done.result_path).exists()
        clock.advance(6 * 86400)
        assert await service.apply_retention() == 0  # still inside RETENTION_DAYS (7)
        clock.advance(2 * 86400)
        assert await service.apply_retention() == 2
        assert not Path(done.input_path).exists() and not Path(done.result_path).exists()
        with pytest.raises(Exception) as refused:
            await service.reroll(job.id, user_id=1, channel_id=1, guild_id=2)
        assert "no longer kept" in refused.value.user_message  # type: ignore[attr-defined]
    finally:
        await service.close()


async def test_waiting_jobs_time_out_only_while_every_server_is_down(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    from standins.fake_clock import FakeClock

    class SweepClock(FakeClock):
        """Knows until when the service's housekeeping sweep sleeps on it."""

        sweep_wakes_at = float("-inf")

        async def sleep(self, seconds: float) -> None:
            task = asyncio.current_task()
            if task is not None and task.get_name() == "jobs-sweep":
                self.sweep_wakes_at = self.monotonic() + seconds
            await super().sleep(seconds)

    clock = SweepClock()
    comfy_server.step_time = 0.2
    delivery = RecordingDelivery()
    service = await make_service([comfy_server], delivery=delivery, clock=clock, job_timeout=60.0, max_jobs_per_member=5)
    try:
        first = await service.submit(request(1, steps=40))
        second = await service.submit(request(2))
        third = await service.submit(request(3))
        await wait_state(service, first.id, JobState.RUNNING)
        assert (await service.get(third.id)).state is JobState.WAITING  # type: ignore[union-attr]
        await clock.tick(30)  # the line is long but the server is up: nobody times out for waiting
        assert (await service.get(third.id)).state is JobState.WAITING  # type: ignore[union-attr]
        await service.cancel(first.id, by_user=1)
        await service.cancel(second.id, by_user=2)
        await comfy_server.stop()
        service.pool.mark_down(service.pool.get("gpu1"), "test: stopped")

        async def back_in_line() -> bool:  # if it was being run, losing its server puts it back
            return service.position(third.id) is not None and not service.is_dispatched(third.id)

        await wait_for(back_in_line)
        await clock.tick(61)

        # The sweep reads the store in a thread, so a sweep woken early in that span may still
        # be at work (with the time it woke at). Wait until it sleeps again past the new time,
        # then wake it once more: that sweep sees the job waiting for over 60 s with no server.
        async def sweep_asleep() -> bool:
            return clock.sweep_wakes_at > clock.monotonic()

        await wait_for(sweep_asleep)
        await clock.tick(clock.sweep_wakes_at - clock.monotonic())
        await wait_for(lambda: all_ended(service, [third.id]))
        ended = await service.get(third.id)
        assert ended.state is JobState.TIMED_OUT and "No image server" in (ended.error or "")  # type: ignore[union-attr]
    finally:
        await service.close()


async def test_progress_reads_encoding_as_soon_as_sampling_is_done(
    comfy_server: ComfyTestServer, make_service: ServiceFactory
) -> None:
    """After the last sampling step the status turns to "encoding" while frames are decoded,
    instead of sitting at 100% until the video node starts."""
    service = await make_service([comfy_server])
    published: list[tuple[str, str | None, int | None]] = []
    original = service.streams.publish

    def spy(update: Any) -> None:
        published.append((update.phase, update.node, update.step))
        original(update)

    service.streams.publish = spy  # type: ignore[method-assign]
    try:
        job = await service.submit(request(1, steps=3))
        await wait_for(lambda: all_ended(service, [job.id]))
        workflow = service.workflows.get("svd_img2vid")
        assert workflow is not None
        decode = next(n for n, node in workflow.template.items() if node["class_type"] == "VAEDecode")
        phases = [p for p, _, _ in published]
        last_step = max(i for i, (p, _, step) in enumerate(published) if p == "running" and step == 3)
        assert ("encoding", decode) == published[last_step + 1][:2]
        assert "running" not in phases[last_step + 1:]
    finally:
        await service.close()
