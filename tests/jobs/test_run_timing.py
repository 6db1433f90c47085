"""Feeding the wait estimator (bot.jobs.run_timing, bot.jobs.workload): run times from websocket events."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from bot.comfy.events import (
    Event,
    Executing,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    Progress,
)
from bot.jobs.estimate import Recorded, RunRecord, WaitEstimator, Work
from bot.jobs.models import Job
from bot.jobs.run_timing import MAX_TIMELINES, RunTimer
from bot.jobs.workload import DEFAULT_PIXELS, input_pixels, input_size_fields, png_size, work_of
from bot.workflows import load_registry
from standins.fake_clock import FakeClock

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry(ROOT / "workflows").registry
SAMPLER, DECODE, VIDEO, LOADER = "3", "8", "24", "15"  # svd_img2vid.json's node ids


class RecordingEstimator(WaitEstimator):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[RunRecord, Recorded]] = []

    def record(self, run: RunRecord, *, cold: bool | None = None) -> Recorded:
        kept = super().record(run, cold=cold)
        self.records.append((run, kept))
        return kept


def job(job_id: str = "job1", *, frames: int = 14, steps: int = 20, size: tuple[int, int] = (1024, 576)) -> Job:
    return Job(id=job_id, user_id=1, channel_id=2, workflow="svd_img2vid",
               options={"frames": frames, "steps": steps}, result_meta={"input_size": list(size)})


class Harness:
    """A RunTimer over a fake clock, with the jobs it knows by prompt id."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.estimator = RecordingEstimator()
        self.jobs: dict[str, Job] = {}
        self.recorded = 0
        self.timer = RunTimer(self.estimator, clock=self.clock, job_of_prompt=lambda server, p: self.jobs.get(p),
                              workflows=lambda: REGISTRY, on_recorded=self.count)

    def count(self) -> None:
        self.recorded += 1

    def at(self, seconds: float, event: Event, server: str = "gpu1") -> None:
        self.clock.advance(seconds)
        self.timer.observe(server, event)

    def run(self, prompt: str, *, steps: int = 4, step: float = 1.0, before: float = 2.0, encode: float = 3.0,
            server: str = "gpu1", end: Event | None = None) -> None:
        """A whole prompt: ``before`` s to the sampler, ``steps`` steps of ``step`` s, ``encode`` s after."""
        self.at(0.0, ExecutionStart(prompt), server)
        self.at(0.5, Executing(prompt, LOADER), server)
        self.at(before - 0.5, Executing(prompt, SAMPLER), server)
        for k in range(1, steps + 1):
            self.at(step, Progress(prompt, k, steps, SAMPLER), server)
        self.at(encode / 2, Executing(prompt, DECODE), server)
        self.at(0.0, Progress(prompt, 1, 1, VIDEO), server)
        self.at(encode / 2, end or ExecutionSuccess(prompt), server)


def test_a_successful_run_is_split_into_overhead_sampling_and_encoding() -> None:
    h = Harness()
    h.jobs["p1"] = job(frames=25, steps=99)  # the sampler's own step count wins over the option
    h.run("p1", steps=4, step=1.5, before=2.0, encode=3.0)
    [(record, kept)] = h.estimator.records
    assert record == RunRecord("gpu1", Work("svd_img2vid", 4, 25, 1024 * 576), sampling_seconds=6.0,
                               encode_seconds=3.0, overhead_seconds=2.0)
    assert kept is Recorded.COLD  # the first run of a server it has not seen: the model may be loading
    assert len(h.timer) == 0 and h.recorded == 0


def test_three_warm_runs_make_an_estimate_and_a_cold_one_after_a_restart_changes_nothing() -> None:
    h = Harness()
    for i, frames in enumerate((14, 25, 14, 25)):
        h.jobs[f"p{i}"] = job(f"j{i}", frames=frames)
        h.run(f"p{i}", steps=4, step=0.04 * frames)
    assert [kept for _, kept in h.estimator.records] == [Recorded.COLD, Recorded.WARM, Recorded.WARM, Recorded.WARM]
    assert h.recorded == 3
    before = h.estimator.run_seconds("gpu1", Work("svd_img2vid", 4, 25, 1024 * 576))
    assert before == pytest.approx(2.0 + 4 * 0.04 * 25 + 3.0)
    h.timer.server_started("gpu1")  # its websocket reconnected: it may have restarted
    h.jobs["slow"] = job("slow", frames=25)
    h.run("slow", steps=4, step=0.04 * 25, before=40.0)  # loading the model again
    assert h.estimator.records[-1][1] is Recorded.COLD
    assert h.estimator.run_seconds("gpu1", Work("svd_img2vid", 4, 25, 1024 * 576)) == before


def test_failed_stopped_cached_and_foreign_runs_are_not_learnt() -> None:
    h = Harness()
    for prompt in ("err", "stop", "cached", "known"):
        h.jobs[prompt] = job(prompt)
    h.run("err", end=ExecutionError("err", SAMPLER, "KSampler", "RuntimeError", "boom"))
    h.run("stop", end=ExecutionInterrupted("stop", SAMPLER, "KSampler"))
    h.run("foreign")  # another client's prompt on the same server
    h.at(0.0, ExecutionStart("cached"))  # its sampler was cached: no step was seen
    h.at(1.0, Executing("cached", VIDEO))
    h.at(1.0, ExecutionSuccess("cached"))
    h.at(0.0, ExecutionSuccess("known"))  # its start was never seen (followed again after a restart)
    assert h.estimator.records == [] and len(h.timer) == 0


def test_a_server_coming_back_drops_its_timelines_and_memory_stays_bounded() -> None:
    h = Harness()
    h.jobs["a"] = job("a")
    h.at(0.0, ExecutionStart("a"))
    h.at(0.0, ExecutionStart("b"), server="gpu2")
    assert h.timer.started_at("a") == h.clock.monotonic() and len(h.timer) == 2
    h.timer.server_started("gpu1")
    assert h.timer.started_at("a") is None and len(h.timer) == 1
    h.at(1.0, ExecutionSuccess("a"))  # the rest of its events were lost: not timed
    assert h.estimator.records == []
    h.timer.prune(live={"c"})
    assert len(h.timer) == 0
    for i in range(MAX_TIMELINES + 10):
        h.at(0.1, ExecutionStart(f"x{i}"))
    assert len(h.timer) == MAX_TIMELINES and h.timer.started_at(f"x{MAX_TIMELINES + 9}") is not None


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def test_the_prepared_image_size_is_kept_with_the_job_and_gives_its_work() -> None:
    data = png(1024, 576)
    assert png_size(data[:24]) == (1024, 576) and png_size(b"GIF89a" + bytes(20)) is None
    stored = job(size=(768, 768))
    stored.result_meta = {**input_size_fields(data[:24])}
    assert input_pixels(stored) == 1024 * 576
    assert input_pixels(Job(id="old", user_id=1, channel_id=2, workflow="svd_img2vid")) is None
    workflow = REGISTRY.get("svd_img2vid")
    assert work_of("svd_img2vid", {}, None, workflow) == Work("svd_img2vid", 20, 14, DEFAULT_PIXELS)  # defaults
    assert work_of("svd_img2vid", {"frames": 25, "steps": "x"}, 100, workflow) == Work("svd_img2vid", 1, 25, 100)


class FakeHub:
    """What RunTimer.watch uses of a hub: its event observers and reconnect callbacks."""

    def __init__(self) -> None:
        self.observers: list[Callable[[Event], None]] = []
        self.reconnects: list[Callable[[], Awaitable[None]]] = []

    def on_event(self, observer: Callable[[Event], None]) -> None:
        self.observers.append(observer)

    def on_reconnect(self, callback: Callable[[], Awaitable[None]]) -> None:
        self.reconnects.append(callback)


class FakePool:
    def __init__(self) -> None:
        self.listeners: list[Callable[[Any, bool], None]] = []

    def add_listener(self, listener: Callable[[Any, bool], None]) -> None:
        self.listeners.append(listener)


async def test_a_reconnect_or_a_server_back_up_makes_its_next_run_cold() -> None:
    h = Harness()
    hub, pool = FakeHub(), FakePool()
    h.timer.watch({"gpu1": hub}, pool)  # type: ignore[arg-type, dict-item]
    [observe], [reconnected], [health] = hub.observers, hub.reconnects, pool.listeners

    def run(prompt: str) -> Recorded:
        h.jobs[prompt] = job(prompt)
        for event in (ExecutionStart(prompt), Executing(prompt, SAMPLER), Progress(prompt, 1, 1, SAMPLER),
                      ExecutionSuccess(prompt)):
            h.clock.advance(1.0)
            observe(event)
        return h.estimator.records[-1][1]

    assert [run(f"p{i}") for i in range(3)] == [Recorded.COLD, Recorded.WARM, Recorded.WARM]
    await reconnected()
    assert [run("p3"), run("p4")] == [Recorded.COLD, Recorded.WARM]
    health(SimpleNamespace(name="gpu1"), False)  # going down changes nothing yet
    assert run("p5") is Recorded.WARM
    health(SimpleNamespace(name="gpu1"), True)  # back: it may have restarted
    assert run("p6") is Recorded.COLD
