"""How an attempt at running a job ends, decided once: cancel vs time limit vs server lost vs
moved vs the prompt's own end, including races between them. No HTTP: the servers are
:class:`tests.jobs.fakes.FakeComfy` and the test hands their websocket events to the hubs.

In every race the first reason decided wins and the job ends exactly once (one terminal state,
one event for the listeners, one ending told to the delivery)."""

from __future__ import annotations

import dataclasses

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.comfy.events import Executing, ExecutionStart, ExecutionSuccess
from bot.jobs.attempt import Attempt
from bot.jobs.backends import Backend
from bot.jobs.endings import EndReason, Ending
from bot.jobs.meta import moved_fields, was_moved
from bot.jobs.models import Job, JobState
from standins.wait import wait_until
from tests.jobs.fakes import REGISTRY, World, make_world
from tests.jobs.helpers import request, wait_state

pytestmark = pytest.mark.timeout(30)

OUTPUT_NODE = REGISTRY.default.output_node_id if REGISTRY.default else None


# ---------------------------------------------------------------------------- the attempt alone

def job(**fields: object) -> Job:
    return Job.new(user_id=1, channel_id=1, workflow="svd_img2vid", created_at=0.0, **fields)  # type: ignore[arg-type]


def attempt_of(found: Job | None = None) -> Attempt:
    return Attempt("j1", Backend(name="gpu1", client=None), job=found)  # type: ignore[arg-type]


def test_the_first_decision_wins() -> None:
    cancelled_first = attempt_of(job())
    assert cancelled_first.decide(Ending.cancelled(1, 1))
    assert not cancelled_first.decide(Ending.timed_out(60))
    assert not cancelled_first.lose_server("gone")
    assert cancelled_first.ending is not None and cancelled_first.ending.reason is EndReason.CANCELLED_BY_MEMBER

    timed_out_first = attempt_of(job())
    assert timed_out_first.decide(Ending.timed_out(60))
    assert not timed_out_first.decide(Ending.cancelled(1, 2))
    assert timed_out_first.ending is not None and timed_out_first.ending.reason is EndReason.TIMED_OUT


def test_a_lost_server_moves_a_job_once() -> None:
    fresh = attempt_of(job(submit_attempts=1))
    assert fresh.lose_server("down") and fresh.ending is not None and fresh.ending.reason is EndReason.MOVED
    again = job(submit_attempts=1)
    again = dataclasses.replace(again, **moved_fields(again))  # as the store writes it
    assert was_moved(again)
    moved_before = attempt_of(again)
    assert moved_before.lose_server("down again")
    assert moved_before.ending is not None and moved_before.ending.reason is EndReason.SERVER_LOST
    assert moved_before.ending.message is not None and "kept going away" in moved_before.ending.message
    posted_twice = attempt_of(job(submit_attempts=2))
    assert posted_twice.lose_server("down") and posted_twice.ending.reason is EndReason.SERVER_LOST  # type: ignore[union-attr]


def test_a_server_lost_before_the_job_is_loaded_is_decided_when_it_is() -> None:
    early = attempt_of()
    assert early.lose_server("down") and not early.decided
    moved = job()
    moved = dataclasses.replace(moved, **moved_fields(moved))
    early.attach(moved)
    assert early.ending is not None and early.ending.reason is EndReason.SERVER_LOST


def test_moderator_and_member_cancels_read_differently() -> None:
    assert Ending.cancelled(1, 1).reason is EndReason.CANCELLED_BY_MEMBER
    by_mod = Ending.cancelled(1, 9)
    assert by_mod.reason is EndReason.CANCELLED_BY_MODERATOR and by_mod.message == "Cancelled by a moderator."
    assert by_mod.actor == 9 and by_mod.reason.state is JobState.CANCELLED
    assert EndReason.MOVED.state is None and EndReason.SERVER_LOST.state is JobState.FAILED


# ---------------------------------------------------------------------------- through the runner

@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    built = await make_world(tmp_path, ("gpu1", "gpu2"))
    yield built
    for fake in built.servers.values():  # nothing stays held past the test
        for gate in (fake.stop_gate, fake.download_gate):
            if gate is not None:
                gate.set()
    await built.service.close()


async def running(world: World, server: str = "gpu1") -> tuple[Job, str, Attempt]:
    """A job dispatched to ``server`` (the other one is down) and running there."""
    for name, backend in ((n, world.backend(n)) for n in world.servers):
        backend.healthy = name == server
    submitted = await world.service.submit(request(1))
    world.service.dispatcher.dispatch()
    fake = world.servers[server]
    await asyncio.wait_for(fake.posted_event.wait(), 5)
    prompt_id = fake.last_prompt
    await world.send(ExecutionStart(prompt_id), server)
    await wait_state(world.service, submitted.id, JobState.RUNNING, timeout=5)
    attempt = world.service.runner.attempt_of(submitted.id)
    assert attempt is not None and attempt.prompt_id == prompt_id
    return submitted, prompt_id, attempt


def recording_decisions(attempt: Attempt) -> list[Ending]:
    """Every decision offered to ``attempt`` (taken or not), in order."""
    offered: list[Ending] = []
    decide = attempt.decide

    def spy(ending: Ending) -> bool:
        offered.append(ending)
        return decide(ending)

    attempt.decide = spy  # type: ignore[method-assign]
    return offered


async def ended_once(world: World, job_id: str, state: JobState) -> Job:
    await wait_state(world.service, job_id, state, timeout=10)
    final = await world.service.get(job_id)
    assert final is not None
    await wait_until(lambda: world.service.runner.attempt_of(job_id) is None, timeout=5, what="the attempt to be over")
    assert world.ended(job_id) == [state.value]
    assert [j.id for j in world.delivery.ended].count(job_id) == (0 if state is JobState.DELIVERED else 1)
    return final


async def test_a_cancel_arriving_while_the_watchdog_fires_leaves_the_job_timed_out(world: World) -> None:
    fake = world.servers["gpu1"]
    fake.stop_gate = asyncio.Event()
    submitted, prompt_id, attempt = await running(world)
    offered = recording_decisions(attempt)
    world.clock.advance(61)  # past JOB_TIMEOUT: the watchdog decides, the runner stops the prompt
    await asyncio.wait_for(fake.stop_arrived.wait(), 5)
    cancel = asyncio.create_task(world.service.cancel(submitted.id, by_user=1))
    await wait_until(lambda: any(e.is_cancel for e in offered), timeout=5, what="the cancel to reach the attempt")
    fake.stop_gate.set()
    answer = await cancel
    assert answer.state is JobState.TIMED_OUT and "limit" in (answer.error or "")
    await ended_once(world, submitted.id, JobState.TIMED_OUT)
    assert fake.stopped == [prompt_id]  # stopped once, by the runner


async def test_the_watchdog_firing_while_a_cancel_stops_the_prompt_leaves_it_cancelled(world: World) -> None:
    fake = world.servers["gpu1"]
    fake.stop_gate = asyncio.Event()
    submitted, prompt_id, attempt = await running(world)
    offered = recording_decisions(attempt)
    cancel = asyncio.create_task(world.service.cancel(submitted.id, by_user=7, moderator=True))
    await asyncio.wait_for(fake.stop_arrived.wait(), 5)
    world.clock.advance(61)
    await wait_until(lambda: any(e.reason is EndReason.TIMED_OUT for e in offered), timeout=5,
                     what="the watchdog to fire")
    fake.stop_gate.set()
    assert (await cancel).error == "Cancelled by a moderator."
    await ended_once(world, submitted.id, JobState.CANCELLED)
    assert world.events[-1] == (submitted.id, "cancelled", 7)


async def test_a_server_lost_while_a_cancel_is_in_flight_ends_it_cancelled_not_moved(world: World) -> None:
    fake = world.servers["gpu1"]
    fake.stop_gate = asyncio.Event()
    submitted, prompt_id, attempt = await running(world)
    cancel = asyncio.create_task(world.service.cancel(submitted.id, by_user=1))
    await asyncio.wait_for(fake.stop_arrived.wait(), 5)
    world.service.pool.mark_down(world.backend("gpu1"), "test: gone")
    await world.service.fleet.evacuate(world.backend("gpu1"))  # its websocket is down too
    fake.stop_gate.set()
    assert (await cancel).state is JobState.CANCELLED
    final = await ended_once(world, submitted.id, JobState.CANCELLED)
    assert not was_moved(final) and world.service.position(submitted.id) is None
    assert world.service.memory_counts()["abandoned_prompts"] == 0


async def test_a_cancel_after_the_server_was_lost_cancels_the_moved_job_once(world: World) -> None:
    submitted, prompt_id, attempt = await running(world)
    world.backend("gpu1").healthy = False
    await world.service.fleet.evacuate(world.backend("gpu1"))
    assert attempt.ending is not None and attempt.ending.reason is EndReason.MOVED
    answer = await world.service.cancel(submitted.id, by_user=1)  # while it goes back to the line
    assert answer.state is JobState.CANCELLED
    final = await ended_once(world, submitted.id, JobState.CANCELLED)
    assert was_moved(final)
    assert world.service.fleet.abandoned == {"gpu1": {prompt_id}}  # stopped there when it is back
    assert not world.servers["gpu2"].posted


async def test_a_finish_before_the_server_is_lost_is_delivered_once(world: World) -> None:
    fake = world.servers["gpu1"]
    fake.download_gate = asyncio.Event()
    submitted, prompt_id, attempt = await running(world)
    assert OUTPUT_NODE is not None
    fake.finish(prompt_id, OUTPUT_NODE)
    await world.send(ExecutionSuccess(prompt_id))
    await asyncio.wait_for(fake.download_arrived.wait(), 5)  # decided: delivered; downloading now
    world.backend("gpu1").healthy = False
    await world.service.fleet.evacuate(world.backend("gpu1"))
    fake.download_gate.set()
    await ended_once(world, submitted.id, JobState.DELIVERED)
    assert [job_id for job_id, _ in world.delivery.delivered] == [submitted.id]
    assert attempt.ending is not None and attempt.ending.reason is EndReason.DELIVERED


async def test_a_move_before_the_finish_wins_and_a_second_loss_fails_the_job(world: World) -> None:
    submitted, prompt_id, attempt = await running(world)
    world.backend("gpu1").healthy = False
    await world.service.fleet.evacuate(world.backend("gpu1"))
    assert OUTPUT_NODE is not None
    world.servers["gpu1"].finish(prompt_id, OUTPUT_NODE)
    await world.send(ExecutionSuccess(prompt_id))
    await world.send(Executing(prompt_id, None))
    await wait_until(lambda: world.service.position(submitted.id) == 1, timeout=5, what="the job back at the head")
    moved = await world.service.get(submitted.id)
    assert moved is not None and moved.state is JobState.WAITING and was_moved(moved) and not world.delivery.delivered
    assert world.ended(submitted.id) == []

    world.backend("gpu2").healthy = True
    world.service.dispatcher.dispatch()  # the only server up takes it
    gpu2 = world.servers["gpu2"]
    await asyncio.wait_for(gpu2.posted_event.wait(), 5)
    second = world.service.runner.attempt_of(submitted.id)
    assert second is not None and second.backend.name == "gpu2"
    world.backend("gpu2").healthy = False
    await world.service.fleet.evacuate(world.backend("gpu2"))
    final = await ended_once(world, submitted.id, JobState.FAILED)
    assert "kept going away" in (final.error or "")
    assert second.ending is not None and second.ending.reason is EndReason.SERVER_LOST


async def test_a_cancel_before_the_prompt_is_posted_posts_nothing(world: World) -> None:
    submitted = await world.service.submit(request(1))
    world.service.dispatcher.dispatch()
    attempt = world.service.runner.attempt_of(submitted.id)
    assert attempt is not None
    attempt.decide(Ending.cancelled(1, 1))  # before its first step ran
    await ended_once(world, submitted.id, JobState.CANCELLED)
    assert not any(fake.posted for fake in world.servers.values())
    assert all(b.in_flight == 0 for b in world.service.pool)
