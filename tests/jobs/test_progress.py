"""Progress streams deliver the latest update to slow consumers and always the final one."""

from __future__ import annotations

import asyncio

import pytest

from standins.fake_clock import settle_loop
from bot.jobs.progress import EtaEstimator, ProgressStream, ProgressStreams, ProgressUpdate


def running(step: int, steps: int = 20, **kw) -> ProgressUpdate:
    return ProgressUpdate(job_id="j1", phase="running", step=step, steps=steps, **kw)


async def test_slow_consumer_gets_latest_and_terminal() -> None:
    stream = ProgressStream("j1")
    seen: list[ProgressUpdate] = []
    gate = asyncio.Event()

    async def consume() -> None:
        async for update in stream:
            seen.append(update)
            await gate.wait()  # a slow consumer (editing a Discord message)
            gate.clear()

    task = asyncio.create_task(consume())
    stream.publish(ProgressUpdate(job_id="j1", phase="waiting", position=3))
    await settle_loop()
    for step in range(1, 21):
        stream.publish(running(step))
    gate.set()
    await settle_loop()
    stream.publish(ProgressUpdate(job_id="j1", phase="encoding"))
    stream.publish(ProgressUpdate(job_id="j1", phase="finished", message="Done"))
    gate.set()
    await settle_loop()
    gate.set()
    await asyncio.wait_for(task, 1)
    phases = [(u.phase, u.step) for u in seen]
    # Intermediate steps and "encoding" were coalesced away; the last step and the end were not.
    assert phases == [("waiting", None), ("running", 20), ("finished", None)]


async def test_fast_consumer_sees_every_update_and_stream_ends() -> None:
    stream = ProgressStream("j1")
    seen: list[int | None] = []

    async def consume() -> None:
        async for update in stream:
            seen.append(update.step)

    task = asyncio.create_task(consume())
    for step in range(1, 4):
        stream.publish(running(step))
        await settle_loop(3)
    stream.publish(ProgressUpdate(job_id="j1", phase="finished"))
    await asyncio.wait_for(task, 1)
    assert seen == [1, 2, 3, None]
    stream.publish(running(9))  # after the end: ignored
    assert stream.latest is not None and stream.latest.phase == "finished"


async def test_late_consumer_gets_current_state_then_ends() -> None:
    stream = ProgressStream("j1")
    stream.publish(running(5, preview=b"jpeg"))
    stream.publish(running(6))
    assert stream.last_preview == b"jpeg"  # kept although the latest update has none
    stream.publish(ProgressUpdate(job_id="j1", phase="finished"))
    updates = [u async for u in stream]
    assert [u.phase for u in updates] == ["finished"]


async def test_two_consumers_each_get_the_end() -> None:
    stream = ProgressStream("j1")

    async def collect() -> list[str]:
        return [u.phase async for u in stream]

    a = asyncio.create_task(collect())
    b = asyncio.create_task(collect())
    await settle_loop()
    stream.publish(ProgressUpdate(job_id="j1", phase="starting"))
    await settle_loop()
    stream.publish(ProgressUpdate(job_id="j1", phase="finished"))
    assert await asyncio.wait_for(a, 1) == ["starting", "finished"]
    assert await asyncio.wait_for(b, 1) == ["starting", "finished"]


async def test_close_without_terminal_update_releases_consumers() -> None:
    streams = ProgressStreams()
    stream = streams.get("j1")
    assert streams.get("j1") is stream
    task = asyncio.create_task(asyncio.wait_for(_drain(stream), 1))
    await settle_loop()
    streams.discard("j1")
    assert await task == []
    assert "j1" not in streams


async def _drain(stream: ProgressStream) -> list[ProgressUpdate]:
    return [u async for u in stream]


def test_update_validation() -> None:
    with pytest.raises(ValueError):
        ProgressUpdate(job_id="j1", phase="exploding")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ProgressStream("j1").publish(ProgressUpdate(job_id="j2", phase="running"))


def test_eta_from_step_timing() -> None:
    eta = EtaEstimator(smoothing=0.5)
    eta.observe(0, 20, at=100.0)
    assert eta.eta(100.0) is None  # one observation is not a speed
    eta.observe(2, 20, at=104.0)  # 2 s per step
    assert eta.eta(104.0) == pytest.approx(36.0)
    assert eta.eta(110.0) == pytest.approx(30.0)
    eta.observe(3, 20, at=108.0)  # 4 s per step: smoothed to 3
    assert eta.seconds_per_step == pytest.approx(3.0)
    assert eta.eta(108.0) == pytest.approx(51.0)
    assert eta.eta(10_000.0) == 0.0
    eta.observe(0, 10, at=200.0)  # a new progress node starts over
    assert eta.eta(200.0) is None


def test_one_function_turns_comfyui_events_into_updates() -> None:
    from bot.comfy.events import Executing, ExecutionCached, ExecutionStart, PreviewImage, Progress
    from bot.jobs.progress import progress_from_event
    from tests.jobs.fakes import REGISTRY

    workflow = REGISTRY.default
    assert workflow is not None and workflow.progress_node_id and workflow.output_node_id
    sampler, video = workflow.progress_node_id, workflow.output_node_id

    def step(event: object, latest: ProgressUpdate | None) -> ProgressUpdate | None:
        return progress_from_event(event, workflow, job_id="j1", latest=latest, elapsed=2.0)  # type: ignore[arg-type]

    queued = ProgressUpdate(job_id="j1", phase="queued")
    starting = step(ExecutionStart("p"), queued)
    assert starting is not None and (starting.phase, starting.message) == ("starting", "Starting")
    assert step(ExecutionCached("p", ["1"]), starting) is None  # started already
    first = step(Progress("p", 1, 3, sampler), starting)
    assert first is not None and (first.phase, first.step, first.steps, first.message) == ("running", 1, 3, "step 1 of 3")
    assert first.percent is not None and round(first.percent) == 33 and first.elapsed == 2.0
    with_preview = step(PreviewImage(b"jpeg", "image/jpeg", sampler, "p"), first)
    assert with_preview == ProgressUpdate(**{**first.__dict__, "preview": b"jpeg"})
    assert step(Executing("p", "some-node"), first) is None  # still sampling
    last = step(Progress("p", 3, 3, sampler), first)
    decoding = step(Executing("p", "decoder"), last)
    assert decoding is not None and decoding.phase == "encoding"  # any node after the last step
    assert step(Executing("p", video), first).phase == "encoding"  # type: ignore[union-attr]
    other = step(Progress("p", 2, 4, video), last)
    assert other is not None and (other.phase, other.percent) == ("encoding", 50.0)
