"""The jobs table: round-trips, state checks, queries, retention."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.jobs.models import InvalidTransition, Job, JobState
from bot.storage import JobNotFound, Storage, remove_files
from standins.fake_clock import FakeClock
from tests.storage.conftest import DAY, make_job
from tests.storage.helpers import active_jobs_for_user, count_waiting, job_by_prompt_id, last_job_at, record_usage


async def test_job_round_trip(store: Storage, clock: FakeClock) -> None:
    job = make_job(
        clock,
        options={"seed": 2**40, "motion_bucket_id": 127},
        input_path="/data/inputs/x.png",
        interaction_token="tok",
        application_id=42,
        interaction_created_at=clock.now(),
        parent_job_id="parent0001",
    )
    await store.jobs.add(job)
    assert await store.jobs.get(job.id) == job
    assert await store.jobs.get("nope") is None
    with pytest.raises(ValueError):
        await store.jobs.add(job)


async def test_update_job_follows_the_state_machine(store: Storage, clock: FakeClock) -> None:
    job = make_job(clock)
    await store.jobs.add(job)
    updated = await store.jobs.update(
        job.id, state=JobState.SUBMITTED, server="gpu1", prompt_id="p" * 32, submit_attempts=1, submitted_at=clock.now()
    )
    assert updated.state is JobState.SUBMITTED and updated.server == "gpu1"
    await store.jobs.update(job.id, state="running", started_at=clock.now())
    await store.jobs.update(job.id, status_message_id=4)  # no state change: always fine
    await store.jobs.update(job.id, state="delivering", result_path="/r.mp4", result_meta={"format": "mp4"})
    done = await store.jobs.update(job.id, state="delivered", delivered_message_id=999)
    assert done.state is JobState.DELIVERED and done.result_meta == {"format": "mp4"} and done.status_message_id == 4

    with pytest.raises(InvalidTransition):
        await store.jobs.update(job.id, state="delivered")  # a second delivery is refused
    with pytest.raises(InvalidTransition):
        await store.jobs.update(job.id, state="running", error="x")
    again = await store.jobs.get(job.id)
    assert again is not None and again.state is JobState.DELIVERED and again.error is None

    with pytest.raises(JobNotFound):
        await store.jobs.update("missing", state="running")
    with pytest.raises(ValueError):
        await store.jobs.update(job.id, no_such_field=1)
    with pytest.raises(ValueError):
        await store.jobs.update(job.id, progress_step=3)  # dropped in schema version 4


@pytest.mark.parametrize("start", [JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT])
async def test_a_terminal_job_never_changes_state(store: Storage, clock: FakeClock, start: JobState) -> None:
    job = make_job(clock, state=start)
    await store.jobs.add(job)
    for state in JobState:
        with pytest.raises(InvalidTransition):
            await store.jobs.update(job.id, state=state)
    assert (await store.jobs.get(job.id)).state is start  # type: ignore[union-attr]


async def test_update_expect_is_compare_and_set(store: Storage, clock: FakeClock) -> None:
    job = make_job(clock)
    await store.jobs.add(job)
    with pytest.raises(InvalidTransition):
        await store.jobs.update(job.id, expect={JobState.RUNNING}, state="cancelled")
    await store.jobs.update(job.id, expect={JobState.WAITING}, state="cancelled")


async def test_racing_finishers_only_one_wins(store: Storage, clock: FakeClock) -> None:
    job = make_job(clock)
    await store.jobs.add(job)
    await store.jobs.update(job.id, state="submitted")
    await store.jobs.update(job.id, state="running")
    results = await asyncio.gather(
        store.jobs.update(job.id, state="cancelled"),
        store.jobs.update(job.id, state="timed_out"),
        store.jobs.update(job.id, state="failed"),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, (Job, InvalidTransition)) for r in results)


async def test_queries(store: Storage, clock: FakeClock) -> None:
    jobs = []
    for user, guild in [(1, 100), (2, 100), (1, 200), (1, 100), (3, None)]:
        job = make_job(clock, user=user, guild=guild)
        jobs.append(job)
        await store.jobs.add(job)
        clock.advance(1)
    await store.jobs.update(jobs[0].id, state="cancelled")
    await store.jobs.update(jobs[1].id, state="submitted")

    assert [j.id for j in await store.jobs.in_states(["waiting"])] == [jobs[2].id, jobs[3].id, jobs[4].id]
    assert [j.id for j in await store.jobs.for_user(1, 100)] == [jobs[3].id, jobs[0].id]
    assert [j.id for j in await store.jobs.for_user(1, limit=2)] == [jobs[3].id, jobs[2].id]
    assert [j.id for j in await active_jobs_for_user(store, 1, 100)] == [jobs[3].id]
    assert len(await active_jobs_for_user(store, 1)) == 2
    assert await count_waiting(store) == 3
    assert await count_waiting(store, 100) == 1
    assert [j.id for j in await store.jobs.active()] == [j.id for j in jobs[1:]]
    assert [j.id for j in await store.jobs.for_guild(100, ["waiting", "submitted"])] == [jobs[3].id, jobs[1].id]
    assert await store.jobs.for_guild(100, []) == []
    await store.jobs.update(jobs[1].id, prompt_id="abc123")
    found = await job_by_prompt_id(store, "abc123")
    assert found is not None and found.id == jobs[1].id


async def test_retention_purge(store: Storage, clock: FakeClock, tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("in1.png", "out1.mp4", "in2.png", "in3.png", "out3.mp4")}
    for f in files.values():
        f.write_bytes(b"x")
    old = make_job(clock, input_path=str(files["in1.png"]))
    await store.jobs.add(old)
    await store.jobs.update(old.id, state="cancelled", finished_at=clock.now())
    running = make_job(clock, input_path=str(files["in2.png"]))  # old but still active: untouched
    await store.jobs.add(running)
    parent = make_job(clock, input_path=str(files["in3.png"]))
    await store.jobs.add(parent)
    await store.jobs.update(parent.id, state="submitted")
    await store.jobs.update(parent.id, state="running")
    await store.jobs.update(parent.id, state="delivering", result_path=str(files["out3.mp4"]))
    await store.jobs.update(parent.id, state="delivered", finished_at=clock.now())
    await record_usage(store, 100, 1)

    clock.advance(8 * DAY)
    # A re-roll made recently shares the parent's input: that file must survive.
    reroll = make_job(clock, input_path=str(files["in3.png"]), parent_job_id=parent.id)
    await store.jobs.add(reroll)
    await store.jobs.update(reroll.id, state="failed", finished_at=clock.now())

    cutoff = clock.now() - 7 * DAY
    paths = await store.purge_older_than(cutoff)
    assert sorted(paths) == sorted([files["in1.png"], files["out3.mp4"]])
    assert await remove_files(paths) == 2
    assert not files["in1.png"].exists() and files["in3.png"].exists() and files["in2.png"].exists()
    assert (await store.jobs.get(old.id)).input_path is None  # type: ignore[union-attr]
    assert (await store.jobs.get(parent.id)).result_path is None  # type: ignore[union-attr]
    assert (await store.jobs.get(running.id)).input_path == str(files["in2.png"])  # type: ignore[union-attr]
    assert await last_job_at(store, 100, 1) is None  # old usage rows pruned
    assert await store.purge_older_than(cutoff) == []  # idempotent


async def test_retention_removes_the_files_an_extension_keeps_unless_a_newer_job_needs_them(
    store: Storage, clock: FakeClock, tmp_path: Path
) -> None:
    files = {name: tmp_path / name for name in ("in.png", "first.mp4", "ext.png", "ext.mp4", "ext.joined.mp4")}
    for f in files.values():
        f.write_bytes(b"x")
    first = make_job(clock, input_path=str(files["in.png"]))
    await store.jobs.add(first)
    await store.jobs.update(first.id, state="failed", finished_at=clock.now(), result_path=str(files["first.mp4"]))
    ext = make_job(clock, input_path=str(files["ext.png"]), chain_root_id=first.id, extension_index=1,
                   result_meta={"extend": {"base": str(files["first.mp4"])}})
    await store.jobs.add(ext)
    await store.jobs.update(ext.id, state="failed", finished_at=clock.now(), result_path=str(files["ext.joined.mp4"]),
                            result_meta={"extend": {"base": str(files["first.mp4"])}, "segment_path": str(files["ext.mp4"])})
    clock.advance(8 * DAY)
    waiting = make_job(clock, input_path=str(files["ext.png"]), chain_root_id=first.id, extension_index=1,
                       result_meta={"extend": {"base": str(files["first.mp4"])}})  # a re-roll of it, still waiting
    await store.jobs.add(waiting)
    paths = await store.purge_older_than(clock.now() - 7 * DAY)
    assert sorted(paths) == sorted([files["in.png"], files["ext.joined.mp4"], files["ext.mp4"]])
    assert (await store.jobs.get(ext.id)).chain_root_id == first.id  # type: ignore[union-attr]
