"""The result downloaded as soon as the output node's ``executed`` names it, and the server slot
given back at the prompt's terminal event; nothing concluded before the prompt's end with its
history entry. No HTTP: :class:`tests.jobs.fakes.FakeComfy` servers, events handed to the hubs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.comfy.events import Executed, Executing, ExecutionError, ExecutionStart, ExecutionSuccess
from bot.comfy.models import FileRef
from bot.jobs.models import Job, JobState
from standins.wait import wait_until
from tests.jobs.fakes import REGISTRY, World, make_world
from tests.jobs.helpers import request, wait_state

pytestmark = pytest.mark.timeout(30)

OUTPUT_NODE = REGISTRY.default.output_node_id if REGISTRY.default else None


class RecordingChecks:
    """The result check ahead, recorded (what :class:`bot.safety.gate.SafetyGate` would start and drop)."""

    def __init__(self) -> None:
        self.started: list[Path] = []
        self.dropped: list[Path] = []

    def start_result_check(self, job: Job, path: Path) -> None:
        self.started.append(path)

    def drop_result_check(self, path: Path) -> None:
        self.dropped.append(path)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    built = await make_world(tmp_path)
    yield built
    for fake in built.servers.values():
        if fake.download_gate is not None:
            fake.download_gate.set()
    await built.service.close()


def count_downloads(world: World) -> list[str]:
    fake = world.servers["gpu1"]
    names: list[str] = []
    download = fake.download

    async def counted(ref: FileRef, dest: Path, *, max_bytes: int) -> int:
        names.append(ref.filename)
        return await download(ref, dest, max_bytes=max_bytes)

    fake.download = counted  # type: ignore[method-assign]
    return names


async def running(world: World) -> tuple[Job, str]:
    submitted = await world.service.submit(request(1))
    world.service.dispatcher.dispatch()
    fake = world.servers["gpu1"]
    await asyncio.wait_for(fake.posted_event.wait(), 5)
    await world.send(ExecutionStart(fake.last_prompt))
    await wait_state(world.service, submitted.id, JobState.RUNNING, timeout=5)
    return submitted, fake.last_prompt


def executed(prompt_id: str, filename: str) -> Executed:
    assert OUTPUT_NODE is not None
    return Executed(prompt_id, OUTPUT_NODE, {"gifs": [{"filename": filename, "subfolder": "", "type": "output"}]})


async def test_the_result_downloads_at_executed_and_is_delivered_once_the_prompt_ended(world: World) -> None:
    checks = RecordingChecks()
    world.service.runner.collector.ahead = checks
    downloads = count_downloads(world)
    fake = world.servers["gpu1"]
    submitted, prompt_id = await running(world)
    await world.send(executed(prompt_id, f"{prompt_id}.gif"))
    await wait_until(lambda: bool(checks.started), timeout=5, what="the early download and its check")
    assert downloads == [f"{prompt_id}.gif"]
    job = await world.service.get(submitted.id)
    assert job is not None and job.state is JobState.RUNNING  # nothing concluded from executed
    assert OUTPUT_NODE is not None
    await world.send(ExecutionSuccess(prompt_id))
    await wait_until(lambda: world.backend().in_flight == 0, timeout=5, what="the slot back before the history entry")
    job = await world.service.get(submitted.id)
    assert job is not None and job.state is JobState.RUNNING and not world.delivery.delivered
    fake.finish(prompt_id, OUTPUT_NODE)
    await world.send(Executing(prompt_id, None))
    await wait_state(world.service, submitted.id, JobState.DELIVERED, timeout=10)
    assert downloads == [f"{prompt_id}.gif"]  # not downloaded a second time
    assert [job_id for job_id, _ in world.delivery.delivered] == [submitted.id]
    delivered = await world.service.get(submitted.id)
    assert delivered is not None and delivered.delivery_attempts == 1
    assert checks.started == [Path(delivered.result_path or "")]


async def test_an_error_after_executed_fails_the_job_and_drops_the_early_download(world: World) -> None:
    checks = RecordingChecks()
    world.service.runner.collector.ahead = checks
    fake = world.servers["gpu1"]
    submitted, prompt_id = await running(world)
    await world.send(executed(prompt_id, f"{prompt_id}.gif"))
    await wait_until(lambda: bool(checks.started), timeout=5, what="the early download")
    await world.send(ExecutionError(prompt_id, "9", "VHS_VideoCombine", "RuntimeError", "disk full"))
    fake.running.remove(prompt_id)
    fake.history[prompt_id] = {"status": {"status_str": "error", "completed": False, "messages": []}, "outputs": {}}
    await world.send(Executing(prompt_id, None))
    await wait_state(world.service, submitted.id, JobState.FAILED, timeout=10)
    assert not world.delivery.delivered
    await wait_until(lambda: checks.dropped == checks.started, timeout=5, what="the check ahead to be dropped")


async def test_a_history_naming_another_file_downloads_that_one(world: World) -> None:
    downloads = count_downloads(world)
    fake = world.servers["gpu1"]
    fake.download_gate = asyncio.Event()
    submitted, prompt_id = await running(world)
    await world.send(executed(prompt_id, "something_else.gif"))  # held in the download
    assert OUTPUT_NODE is not None
    fake.finish(prompt_id, OUTPUT_NODE)
    await world.send(ExecutionSuccess(prompt_id))
    await wait_until(lambda: len(downloads) == 2, timeout=5, what="the history's file to be downloaded")
    fake.download_gate.set()
    await wait_state(world.service, submitted.id, JobState.DELIVERED, timeout=10)
    assert downloads == ["something_else.gif", f"{prompt_id}.gif"]


async def test_without_executed_the_result_is_downloaded_at_the_end(world: World) -> None:
    downloads = count_downloads(world)
    fake = world.servers["gpu1"]
    submitted, prompt_id = await running(world)  # e.g. a cached prompt whose output node sent nothing
    assert OUTPUT_NODE is not None
    fake.finish(prompt_id, OUTPUT_NODE)
    await world.send(ExecutionSuccess(prompt_id))
    await wait_state(world.service, submitted.id, JobState.DELIVERED, timeout=10)
    assert downloads == [f"{prompt_id}.gif"]
    assert world.backend().in_flight == 0
