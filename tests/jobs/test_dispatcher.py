"""The dispatcher without HTTP: members take turns, each job goes to a server that can run it,
a job back from a lost server goes first (and is moved once), places in line are published,
and waiting jobs time out only while no answering server can run them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.backends import Backend, BackendPool
from bot.jobs.context import JobContext, ServiceLimits
from bot.jobs.dispatcher import Dispatcher
from bot.jobs.endings import Endings
from bot.jobs.meta import was_moved
from bot.jobs.models import Job, JobState
from bot.jobs.routing import Needs
from bot.jobs.runner import Runner
from bot.storage import Storage
from standins.fake_clock import FakeClock
from standins.wait import wait_until
from tests.jobs.fakes import REGISTRY, FakeComfy

pytestmark = pytest.mark.timeout(20)


@dataclass
class Router:
    """Which server runs which workflow (a server not listed runs every workflow)."""

    pool: BackendPool
    runs: dict[str, set[str]] = field(default_factory=dict)

    def can(self, server: str, workflow: str) -> bool:
        return workflow in self.runs.get(server, {workflow})

    def accepts(self, needs: Needs | None) -> Callable[[Backend], bool] | None:
        return None if needs is None else (lambda b: self.can(b.name, needs.workflow))

    def runnable_anywhere(self, needs: Needs) -> bool:
        return any(self.can(b.name, needs.workflow) for b in self.pool)

    def waiting_runnable(self, needs: Needs | None) -> bool:
        return any(b.healthy and (needs is None or self.can(b.name, needs.workflow)) for b in self.pool)

    def unrunnable_reason(self, needs: Needs) -> str:
        return f"No server can run {needs.workflow}."


@dataclass
class Line:
    ctx: JobContext
    dispatcher: Dispatcher
    router: Router
    started: list[tuple[str, str]]  # (job id, server) in dispatch order
    clock: FakeClock

    async def add(self, user: int, workflow: str = "svd_img2vid") -> Job:
        job = Job.new(user_id=user, channel_id=1, guild_id=2, workflow=workflow, created_at=self.clock.now())
        await self.ctx.store.jobs.add(job)
        self.dispatcher.queue_new(job)
        return job

    def finish(self, server: str) -> None:
        """A prompt on ``server`` ended: its slot is free again."""
        self.ctx.pool.release(server)

    def users(self, jobs: dict[str, Job]) -> list[int]:
        return [jobs[job_id].user_id for job_id, _ in self.started]


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[Line]:
    clock = FakeClock()
    store = await Storage.open(tmp_path / "jobs.sqlite", clock=clock)
    pool = BackendPool([Backend(name=n, client=FakeComfy(n), max_pending=0) for n in ("gpu1", "gpu2")], clock=clock)
    ctx = JobContext(store=store, pool=pool, hubs={}, workflows=REGISTRY, data_dir=tmp_path, clock=clock,
                     limits=ServiceLimits(job_timeout=60.0, max_in_flight=10))
    router = Router(pool)
    ctx.router = router  # type: ignore[assignment]
    started: list[tuple[str, str]] = []
    dispatcher = Dispatcher(ctx, Endings(ctx), lambda job_id, backend: started.append((job_id, backend.name)))
    yield Line(ctx, dispatcher, router, started, clock)
    await ctx.tasks.cancel_all()
    await store.close()


def published(ctx: JobContext, job_id: str) -> Any:
    latest = ctx.streams.latest(job_id)
    return None if latest is None else (latest.phase, latest.position, latest.message)


async def test_members_take_turns_whatever_order_they_came_in(line: Line) -> None:
    line.ctx.pool.get("gpu2").healthy = False  # one server, one job at a time
    jobs = {j.id: j for j in [await line.add(1) for _ in range(4)] + [await line.add(2), await line.add(3)]}
    assert published(line.ctx, list(jobs)[4]) == ("waiting", 2, "Waiting: #2 in line")
    for _ in range(6):
        line.dispatcher.dispatch()
        line.finish("gpu1")
    assert line.users(jobs) == [1, 2, 3, 1, 1, 1]
    assert all(server == "gpu1" for _, server in line.started)
    assert not line.ctx.queue and not line.dispatcher.needs and not line.dispatcher.published


async def test_each_job_goes_to_the_least_loaded_server_with_room(line: Line) -> None:
    jobs = [await line.add(user) for user in (1, 2, 3)]
    line.dispatcher.dispatch()
    assert line.started == [(jobs[0].id, "gpu1"), (jobs[1].id, "gpu2")]  # the third waits: no room
    assert published(line.ctx, jobs[2].id) == ("waiting", 1, "Next in line")
    line.finish("gpu2")
    line.dispatcher.dispatch()
    assert line.started[-1] == (jobs[2].id, "gpu2")


async def test_a_job_only_goes_where_its_workflow_runs_and_does_not_hold_up_others(line: Line) -> None:
    line.router.runs = {"gpu1": {"svd_img2vid_core"}}  # gpu1 lacks VideoHelperSuite
    vhs = await line.add(1, "svd_img2vid")
    core = await line.add(2, "svd_img2vid_core")
    line.ctx.pool.get("gpu2").healthy = False
    line.dispatcher.dispatch()
    assert line.started == [(core.id, "gpu1")]  # the VHS job waits for gpu2 without blocking member 2
    line.ctx.pool.get("gpu2").healthy = True
    line.dispatcher.dispatch()
    assert line.started[-1] == (vhs.id, "gpu2")


async def test_a_job_no_server_could_ever_run_fails_with_the_reason(line: Line) -> None:
    line.router.runs = {"gpu1": set(), "gpu2": set()}
    doomed = await line.add(1, "svd_img2vid")
    line.dispatcher.dispatch()
    assert line.started == [] and doomed.id not in line.ctx.queue

    async def ended() -> Job | None:
        stored = await line.ctx.store.jobs.get(doomed.id)
        return stored if stored is not None and stored.is_terminal else None

    stored = await wait_until(ended, timeout=5, what="the job to fail")
    assert stored.state is JobState.FAILED and stored.error == "No server can run svd_img2vid."


async def test_a_job_back_from_a_lost_server_goes_first_and_is_moved_once(line: Line) -> None:
    runner = Runner(line.ctx, line.dispatcher.endings, line.dispatcher, abandon=lambda server, prompt: None)
    line.ctx.pool.get("gpu2").healthy = False
    first = await line.add(1)
    line.dispatcher.dispatch()
    waiting = [await line.add(user) for user in (2, 3)]
    assert line.started == [(first.id, "gpu1")]
    line.finish("gpu1")
    line.ctx.pool.get("gpu1").healthy = False  # gpu1 went away with the job
    line.ctx.pool.get("gpu2").healthy = True
    running = await line.ctx.store.jobs.update(first.id, state=JobState.SUBMITTED, server="gpu1", prompt_id="p1",
                                              submit_attempts=1)
    await runner.requeue(running, "the server went down")
    moved = await line.ctx.store.jobs.get(first.id)
    assert moved is not None and moved.state is JobState.WAITING and was_moved(moved) and moved.server is None
    assert line.ctx.queue.position(first.id) == 1 and published(line.ctx, first.id)[1] == 1
    line.dispatcher.dispatch()
    assert line.started[-1] == (first.id, "gpu2")  # ahead of the two who were waiting
    assert [line.ctx.queue.position(j.id) for j in waiting] == [1, 2]


async def test_waiting_jobs_time_out_only_while_no_answering_server_can_run_them(line: Line) -> None:
    for backend in line.ctx.pool:
        backend.in_flight = backend.capacity  # busy, but up
    patient = await line.add(1)
    line.clock.advance(61)
    await line.dispatcher.time_out_waiting()
    assert patient.id in line.ctx.queue  # a long line behind busy servers is fine
    for backend in line.ctx.pool:
        backend.healthy = False
    await line.dispatcher.time_out_waiting()
    ended = await line.ctx.store.jobs.get(patient.id)
    assert ended is not None and ended.state is JobState.TIMED_OUT and "No image server" in (ended.error or "")
    assert patient.id not in line.ctx.queue and not line.dispatcher.needs
