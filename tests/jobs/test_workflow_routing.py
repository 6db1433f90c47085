"""Jobs go only to servers that can run their workflow (one server may lack VideoHelperSuite)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest

from bot.errors import BackendUnavailable
from bot.jobs.models import JobState
from bot.jobs.service import JobRequest
from standins.comfy_server import ComfyTestServer
from tests.jobs.helpers import (
    FAST,
    RecordingDelivery,
    ServiceFactory,
    all_ended,
    png_bytes,
    request,
    wait_for,
    wait_state,
)

pytestmark = pytest.mark.timeout(90)

ServerFactory = Callable[..., Awaitable[ComfyTestServer]]


def prompts_posted(server: ComfyTestServer) -> int:
    return sum(1 for method, path in server.requests if method == "POST" and path.endswith("/prompt"))


async def test_vhs_jobs_go_only_to_the_server_with_the_node_pack(
    comfy_server_factory: ServerFactory, make_service: ServiceFactory
) -> None:
    bare = await comfy_server_factory(without_nodes=["VHS_VideoCombine"])
    full = await comfy_server_factory()
    service = await make_service([bare, full], max_jobs_per_member=10)  # gpu1 = bare, gpu2 = full
    try:
        assert not service.support.can_run("gpu1", "svd_img2vid")
        assert service.support.can_run("gpu1", "svd_img2vid_core")
        assert service.support.can_run("gpu2", "svd_img2vid")
        vhs = [await service.submit(JobRequest(user_id=u, channel_id=1, guild_id=2, image=png_bytes(),
                                               workflow="svd_img2vid", options=FAST)) for u in range(4)]
        core = [await service.submit(JobRequest(user_id=10 + u, channel_id=1, guild_id=2, image=png_bytes(),
                                                workflow="svd_img2vid_core", options=FAST)) for u in range(4)]
        ids = [j.id for j in vhs + core]
        await wait_for(lambda: all_ended(service, ids), timeout=60)
        ended = {j.id: await service.get(j.id) for j in vhs + core}
        assert {e.state for e in ended.values()} == {JobState.DELIVERED}  # type: ignore[union-attr]
        assert {ended[j.id].server for j in vhs} == {"gpu2"}  # type: ignore[union-attr]
        # the core jobs were not held back behind the VHS ones: the bare server took some
        assert "gpu1" in {ended[j.id].server for j in core}  # type: ignore[union-attr]
        # the bare server was never sent a graph it would refuse
        assert prompts_posted(bare) == sum(1 for j in core if ended[j.id].server == "gpu1")  # type: ignore[union-attr]
    finally:
        await service.close()


async def test_without_vhs_anywhere_the_default_falls_back_to_the_core_workflow(
    comfy_server_factory: ServerFactory, make_service: ServiceFactory
) -> None:
    bare = await comfy_server_factory(without_nodes=["VHS_VideoCombine"])
    delivery = RecordingDelivery()
    service = await make_service([bare], delivery=delivery)
    try:
        job = await service.submit(request(1))  # no workflow named: the default (VHS) cannot run
        assert job.workflow == "svd_img2vid_core"
        await wait_for(lambda: all_ended(service, [job.id]))
        done = await service.get(job.id)
        assert done is not None and done.state is JobState.DELIVERED
        assert delivery.delivered[0][1].suffix == ".mp4"  # the core workflow's default format
        # naming the VHS workflow explicitly is refused at once, pointing to the one that works
        with pytest.raises(BackendUnavailable) as refused:
            await service.submit(JobRequest(user_id=2, channel_id=1, guild_id=2, image=png_bytes(),
                                            workflow="svd_img2vid", options=FAST))
        message = refused.value.user_message
        assert "svd_img2vid" in message and "Try workflow **svd_img2vid_core**" in message
        assert "http" not in message
    finally:
        await service.close()


async def test_a_waiting_job_fails_with_a_reason_when_its_server_loses_the_node_pack(
    comfy_server_factory: ServerFactory, make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await comfy_server_factory()
    service = await make_service([server], max_jobs_per_member=5)
    try:
        server.step_time = 0.05
        running = await service.submit(request(1, steps=20))
        waiting = await service.submit(request(2))
        extra = await service.submit(request(3))
        await wait_state(service, running.id, JobState.RUNNING)
        await wait_state(service, waiting.id, JobState.SUBMITTED)

        async def accepted() -> bool:  # in ComfyUI's queue (it holds one pending prompt of ours)
            job = await service.get(waiting.id)
            return job is not None and job.prompt_id is not None and any(
                item.prompt_id == job.prompt_id for item in server.pending_items())

        await wait_for(accepted)
        server.uninstall("VHS_VideoCombine")  # an admin removed the pack while `extra` waited in the bot's line
        with caplog.at_level(logging.WARNING, logger="bot.workflows.support"):
            await service.check_workflow_support()
        assert "ComfyUI-VideoHelperSuite" in caplog.text  # the admin is told what to install
        server.step_time = 0.0
        await wait_for(lambda: all_ended(service, [running.id, waiting.id, extra.id]))
        ended = await service.get(extra.id)
        assert ended is not None and ended.state is JobState.FAILED
        assert "can't run the **svd_img2vid** workflow" in (ended.error or "")
        assert ended.prompt_id is None  # never sent to a server that would refuse it
        for job_id in (running.id, waiting.id):  # already accepted by ComfyUI before the change: they ran
            done = await service.get(job_id)
            assert done is not None and done.state is JobState.DELIVERED
    finally:
        await service.close()


async def test_a_server_that_gains_the_node_pack_is_used_after_it_reconnects(
    comfy_server_factory: ServerFactory, make_service: ServiceFactory
) -> None:
    bare = await comfy_server_factory(without_nodes=["VHS_VideoCombine"])
    service = await make_service([bare])
    try:
        assert not service.support.can_run("gpu1", "svd_img2vid")
        # the admin installs the pack and restarts ComfyUI: the bot's websocket reconnects
        port = bare.port
        await bare.stop()
        restarted = await comfy_server_factory(root=bare.root, port=port)
        await wait_for(_can_run(service, "gpu1", "svd_img2vid"), timeout=30)
        job = await service.submit(JobRequest(user_id=1, channel_id=1, guild_id=2, image=png_bytes(),
                                              workflow="svd_img2vid", options=FAST))
        await wait_for(lambda: all_ended(service, [job.id]))
        done = await service.get(job.id)
        assert done is not None and done.state is JobState.DELIVERED and done.server == "gpu1"
        assert prompts_posted(restarted) == 1
    finally:
        await service.close()


def _can_run(service: object, server: str, workflow: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return service.support.can_run(server, workflow)  # type: ignore[attr-defined]

    return check


async def test_a_format_the_server_lacks_is_made_by_the_core_workflow_or_refused_at_once(
    comfy_server_factory: ServerFactory, make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await comfy_server_factory()
    server.offer_only("VHS_VideoCombine", "format", ["image/gif", "video/h264-mp4"])  # no image/webp
    delivery = RecordingDelivery()
    with caplog.at_level(logging.WARNING, logger="bot.workflows.support"):
        service = await make_service([server], delivery=delivery)
    try:
        assert service.support.can_run("gpu1", "svd_img2vid")  # the workflow still runs there
        assert "some option values will be refused" in caplog.text and "image/webp" in caplog.text
        # naming the VHS workflow with webp: told at once, the server is never asked
        with pytest.raises(BackendUnavailable) as refused:
            await service.submit(JobRequest(user_id=2, channel_id=1, guild_id=2, image=png_bytes(),
                                            workflow="svd_img2vid", options={**FAST, "format": "webp"}))
        assert refused.value.user_message == (
            "The format **webp** isn't available on the image servers right now. Please choose another format.")
        assert prompts_posted(server) == 0
        # without a workflow named, webp comes from the core-nodes workflow; gif from the default
        webp = await service.submit(request(2, format="webp"))
        gif = await service.submit(request(1))
        assert (webp.workflow, gif.workflow) == ("svd_img2vid_core", "svd_img2vid")
        await wait_for(lambda: all_ended(service, [gif.id, webp.id]))
        assert {(await service.get(j.id)).state for j in (gif, webp)} == {JobState.DELIVERED}  # type: ignore[union-attr]
        suffixes = {job_id: path.suffix for job_id, path in delivery.delivered}
        assert (suffixes[webp.id], suffixes[gif.id]) == (".webp", ".gif")
    finally:
        await service.close()


async def test_a_job_choosing_a_format_goes_to_the_server_that_offers_it(
    comfy_server_factory: ServerFactory, make_service: ServiceFactory
) -> None:
    old = await comfy_server_factory()
    old.offer_only("VHS_VideoCombine", "format", ["image/gif", "video/h264-mp4"])  # no image/webp
    new = await comfy_server_factory()
    service = await make_service([old, new], max_jobs_per_member=10)  # gpu1 = old, gpu2 = new
    try:
        webp = [await service.submit(request(u, format="webp")) for u in range(3)]
        gif = [await service.submit(request(10 + u)) for u in range(3)]
        await wait_for(lambda: all_ended(service, [j.id for j in webp + gif]), timeout=60)
        for job in webp:
            done = await service.get(job.id)
            assert done is not None and done.state is JobState.DELIVERED and done.server == "gpu2"
        assert {(await service.get(j.id)).state for j in gif} == {JobState.DELIVERED}  # type: ignore[union-attr]
    finally:
        await service.close()


async def test_the_refusal_names_the_choice_when_each_server_lacks_something_else(
    comfy_server_factory: ServerFactory, make_service: ServiceFactory
) -> None:
    bare = await comfy_server_factory(without_nodes=["VHS_VideoCombine"])  # no VHS at all
    old = await comfy_server_factory()
    old.offer_only("VHS_VideoCombine", "format", ["image/gif", "video/h264-mp4"])  # VHS without webp
    service = await make_service([bare, old])
    try:
        with pytest.raises(BackendUnavailable) as refused:
            await service.submit(JobRequest(user_id=1, channel_id=1, guild_id=2, image=png_bytes(),
                                            workflow="svd_img2vid", options={**FAST, "format": "webp"}))
        assert refused.value.user_message == (
            "The format **webp** isn't available on the image servers right now. Please choose another format.")
    finally:
        await service.close()
