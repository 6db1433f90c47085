"""The SQLite job store: round-trips, state checks, migrations, restarts, retention."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from standins.fake_clock import FakeClock
from bot.jobs.models import InvalidTransition, Job, JobState
from bot.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AuditRecord,
    GuildSettings,
    JobNotFound,
    JobStore,
    StoreError,
    next_utc_midnight,
    remove_files,
)

DAY = 86400.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_750_000_000.0)


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock):
    s = await JobStore.open(tmp_path / "data" / "jobs.sqlite3", clock=clock)
    yield s
    await s.close()


def make_job(clock: FakeClock, user: int = 1, guild: int | None = 100, **fields) -> Job:
    return Job.new(user_id=user, channel_id=5, guild_id=guild, workflow="svd", created_at=clock.now(), **fields)


async def test_open_creates_file_folder_and_wal(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "nested" / "dir" / "jobs.sqlite3"
    s = await JobStore.open(path, clock=clock)
    try:
        assert path.exists()
        assert await s.schema_version() == SCHEMA_VERSION
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await s.close()


async def test_job_round_trip(store: JobStore, clock: FakeClock) -> None:
    job = make_job(
        clock,
        options={"seed": 2**40, "motion_bucket_id": 127},
        input_path="/data/inputs/x.png",
        interaction_token="tok",
        application_id=42,
        interaction_created_at=clock.now(),
        parent_job_id="parent0001",
    )
    await store.add_job(job)
    assert await store.get_job(job.id) == job
    assert await store.get_job("nope") is None
    with pytest.raises(ValueError):
        await store.add_job(job)


async def test_update_job_follows_the_state_machine(store: JobStore, clock: FakeClock) -> None:
    job = make_job(clock)
    await store.add_job(job)
    updated = await store.update_job(
        job.id, state=JobState.SUBMITTED, server="gpu1", prompt_id="p" * 32, submit_attempts=1, submitted_at=clock.now()
    )
    assert updated.state is JobState.SUBMITTED and updated.server == "gpu1"
    await store.update_job(job.id, state="running", progress_step=3, progress_steps=20)
    await store.update_job(job.id, progress_step=4)  # no state change: always fine
    await store.update_job(job.id, state="delivering", result_path="/r.mp4", result_meta={"format": "mp4"})
    done = await store.update_job(job.id, state="delivered", delivered_message_id=999)
    assert done.state is JobState.DELIVERED and done.result_meta == {"format": "mp4"}

    with pytest.raises(InvalidTransition):
        await store.update_job(job.id, state="delivered")  # a second delivery is refused
    with pytest.raises(InvalidTransition):
        await store.update_job(job.id, state="running", error="x")
    again = await store.get_job(job.id)
    assert again is not None and again.state is JobState.DELIVERED and again.error is None

    with pytest.raises(JobNotFound):
        await store.update_job("missing", state="running")
    with pytest.raises(ValueError):
        await store.update_job(job.id, no_such_field=1)


async def test_update_expect_is_compare_and_set(store: JobStore, clock: FakeClock) -> None:
    job = make_job(clock)
    await store.add_job(job)
    with pytest.raises(InvalidTransition):
        await store.update_job(job.id, expect={JobState.RUNNING}, state="cancelled")
    await store.update_job(job.id, expect={JobState.WAITING}, state="cancelled")


async def test_racing_finishers_only_one_wins(store: JobStore, clock: FakeClock) -> None:
    job = make_job(clock)
    await store.add_job(job)
    await store.update_job(job.id, state="submitted")
    await store.update_job(job.id, state="running")
    results = await asyncio.gather(
        store.update_job(job.id, state="cancelled"),
        store.update_job(job.id, state="timed_out"),
        store.update_job(job.id, state="failed"),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, (Job, InvalidTransition)) for r in results)


async def test_queries(store: JobStore, clock: FakeClock) -> None:
    jobs = []
    for user, guild in [(1, 100), (2, 100), (1, 200), (1, 100), (3, None)]:
        job = make_job(clock, user=user, guild=guild)
        jobs.append(job)
        await store.add_job(job)
        clock.advance(1)
    await store.update_job(jobs[0].id, state="cancelled")
    await store.update_job(jobs[1].id, state="submitted")

    assert [j.id for j in await store.jobs_in_states(["waiting"])] == [jobs[2].id, jobs[3].id, jobs[4].id]
    assert [j.id for j in await store.jobs_for_user(1, 100)] == [jobs[3].id, jobs[0].id]
    assert [j.id for j in await store.jobs_for_user(1, limit=2)] == [jobs[3].id, jobs[2].id]
    assert [j.id for j in await store.active_jobs_for_user(1, 100)] == [jobs[3].id]
    assert len(await store.active_jobs_for_user(1)) == 2
    assert await store.count_waiting() == 3
    assert await store.count_waiting(100) == 1
    assert [j.id for j in await store.active_jobs()] == [j.id for j in jobs[1:]]
    assert [j.id for j in await store.jobs_for_guild(100, ["waiting", "submitted"])] == [jobs[3].id, jobs[1].id]
    await store.update_job(jobs[1].id, prompt_id="abc123")
    found = await store.job_by_prompt_id("abc123")
    assert found is not None and found.id == jobs[1].id


async def test_guild_settings(store: JobStore) -> None:
    assert await store.get_guild_settings(7) == GuildSettings()
    assert GuildSettings().allow_animate_others is False
    settings = GuildSettings(
        allowed_channel_ids=(1, 2),
        required_role_id=3,
        cooldown_seconds=30,
        daily_quota=5,
        max_in_flight=1,
        guild_daily_cap=100,
        exempt_role_ids=(4,),
        paused=True,
        pause_message="Back soon",
        moderator_role_ids=(9,),
        audit_channel_id=77,
    )
    await store.set_guild_settings(7, settings)
    assert await store.get_guild_settings(7) == settings
    assert await store.get_guild_settings(8) == GuildSettings()
    updated = await store.update_guild_settings(7, paused=False, daily_quota=None)
    assert updated.paused is False and updated.daily_quota is None and updated.cooldown_seconds == 30
    assert await store.get_guild_settings(7) == updated
    assert settings.channel_allowed(2) and not settings.channel_allowed(3)
    assert GuildSettings().channel_allowed(3)
    assert settings.is_exempt([4, 5]) and not settings.is_exempt([5])
    with pytest.raises(ValueError):
        GuildSettings(cooldown_seconds=-1)
    # Settings written by a newer bot (unknown key) still load.
    assert GuildSettings.from_dict({"paused": True, "future_knob": 1}).paused


async def test_bans(store: JobStore, clock: FakeClock) -> None:
    assert not await store.is_banned(1, 2)
    await store.ban(1, 2, reason="spam", by=99)
    assert await store.is_banned(1, 2)
    assert not await store.is_banned(3, 2)  # per guild
    ban = await store.get_ban(1, 2)
    assert ban is not None and ban.reason == "spam" and ban.banned_by == 99 and ban.banned_at == clock.now()
    assert [b.user_id for b in await store.list_bans(1)] == [2]
    assert await store.unban(1, 2)
    assert not await store.unban(1, 2)
    assert not await store.is_banned(1, 2)


async def test_usage_counts_per_utc_day(store: JobStore, clock: FakeClock) -> None:
    start_of_day = next_utc_midnight(clock.now())
    clock.advance(start_of_day - clock.now() + 3600)  # 01:00 UTC
    assert await store.usage_today(100, 1) == 0
    assert await store.last_job_at(100, 1) is None
    assert await store.record_usage(100, 1) == 1
    clock.advance(60)
    assert await store.record_usage(100, 1) == 2
    await store.record_usage(100, 2)
    await store.record_usage(200, 1)
    assert await store.usage_today(100, 1) == 2
    assert await store.guild_usage_today(100) == 3
    assert await store.last_job_at(100, 1) == clock.now()
    clock.advance(DAY)  # next day: the quota resets, the cooldown memory stays
    assert await store.usage_today(100, 1) == 0
    assert await store.guild_usage_today(100) == 0
    assert await store.last_job_at(100, 1) == clock.now() - DAY
    await store.record_usage(None, 1)  # direct messages
    assert await store.usage_today(None, 1) == 1


async def test_audit_log(store: JobStore, clock: FakeClock) -> None:
    await store.add_audit(AuditRecord(guild_id=1, at=clock.now(), actor_id=5, action="job.created", job_id="j1", details={"seed": 3}))
    clock.advance(1)
    rid = await store.add_audit(AuditRecord(guild_id=1, at=clock.now(), actor_id=6, action="member.banned", details={"user": 9}))
    await store.add_audit(AuditRecord(guild_id=2, at=clock.now(), actor_id=6, action="job.created", job_id="j2"))
    records = await store.list_audit(1)
    assert [r.action for r in records] == ["member.banned", "job.created"]
    assert records[0].id == rid and records[0].details == {"user": 9}
    assert [r.job_id for r in await store.list_audit(1, job_id="j1")] == ["j1"]
    assert len(await store.list_audit(1, action="job.created")) == 1


async def test_restart_keeps_everything(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "jobs.sqlite3"
    s = await JobStore.open(path, clock=clock)
    job = make_job(clock, options={"seed": 5})
    await s.add_job(job)
    await s.update_job(job.id, state="submitted", server="gpu2", prompt_id="abc", client_id="cid")
    await s.update_guild_settings(100, paused=True, pause_message="maintenance")
    await s.ban(100, 8, reason="r", by=1)
    await s.record_usage(100, 1)
    await s.add_audit(AuditRecord(guild_id=100, at=clock.now(), actor_id=1, action="job.created", job_id=job.id))
    await s.close()

    s2 = await JobStore.open(path, clock=clock)
    try:
        back = await s2.get_job(job.id)
        assert back is not None and back.state is JobState.SUBMITTED and back.prompt_id == "abc"
        assert back.options == {"seed": 5} and back.client_id == "cid"
        assert (await s2.get_guild_settings(100)).pause_message == "maintenance"
        assert await s2.is_banned(100, 8)
        assert await s2.usage_today(100, 1) == 1
        assert len(await s2.list_audit(100)) == 1
        assert await s2.schema_version() == SCHEMA_VERSION
    finally:
        await s2.close()


V1_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, user_id INTEGER NOT NULL, guild_id INTEGER, channel_id INTEGER NOT NULL,
    interaction_token TEXT, application_id INTEGER, interaction_created_at REAL, status_message_id INTEGER,
    workflow TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}', input_path TEXT, uploaded_name TEXT,
    state TEXT NOT NULL, server TEXT, prompt_id TEXT, client_id TEXT, submit_attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, submitted_at REAL, started_at REAL, finished_at REAL, result_path TEXT,
    result_meta TEXT NOT NULL DEFAULT '{}', error TEXT, error_detail TEXT
);
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE guild_settings (guild_id INTEGER PRIMARY KEY, settings TEXT NOT NULL, updated_at REAL NOT NULL);
"""


async def test_migrates_a_version_1_database(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as raw:  # written by hand, as the first release left it
        raw.executescript(V1_SCHEMA)
        raw.execute(
            "INSERT INTO jobs (id, user_id, guild_id, channel_id, workflow, options, state, created_at, result_path)"
            " VALUES ('oldjob0001', 1, 100, 5, 'svd', '{\"seed\": 9}', 'delivered', 10.0, '/r.gif')"
        )
        raw.execute("INSERT INTO guild_settings VALUES (100, '{\"paused\": true}', 1.0)")
        raw.execute("PRAGMA user_version = 1")
    raw.close()

    s = await JobStore.open(path, clock=clock)
    try:
        assert await s.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        old = await s.get_job("oldjob0001")
        assert old is not None and old.options == {"seed": 9} and old.state is JobState.DELIVERED
        assert old.deleted is False and old.parent_job_id is None and old.progress_step is None
        assert (await s.get_guild_settings(100)).paused
        await s.ban(100, 2, reason=None, by=None)  # tables added by later versions exist
        await s.record_usage(100, 2)
        new = make_job(clock, parent_job_id="oldjob0001")
        await s.add_job(new)
        assert (await s.get_job(new.id)).parent_job_id == "oldjob0001"
    finally:
        await s.close()


async def test_refuses_a_database_from_a_newer_bot(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "new.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError):
        await JobStore.open(path, clock=clock)


async def test_retention_purge(store: JobStore, clock: FakeClock, tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("in1.png", "out1.mp4", "in2.png", "in3.png", "out3.mp4")}
    for f in files.values():
        f.write_bytes(b"x")
    old = make_job(clock, input_path=str(files["in1.png"]))
    await store.add_job(old)
    await store.update_job(old.id, state="cancelled", finished_at=clock.now())
    running = make_job(clock, input_path=str(files["in2.png"]))  # old but still active: untouched
    await store.add_job(running)
    parent = make_job(clock, input_path=str(files["in3.png"]))
    await store.add_job(parent)
    await store.update_job(parent.id, state="submitted")
    await store.update_job(parent.id, state="running")
    await store.update_job(parent.id, state="delivering", result_path=str(files["out3.mp4"]))
    await store.update_job(parent.id, state="delivered", finished_at=clock.now())
    await store.record_usage(100, 1)

    clock.advance(8 * DAY)
    # A re-roll made recently shares the parent's input: that file must survive.
    reroll = make_job(clock, input_path=str(files["in3.png"]), parent_job_id=parent.id)
    await store.add_job(reroll)
    await store.update_job(reroll.id, state="failed", finished_at=clock.now())

    cutoff = clock.now() - 7 * DAY
    paths = await store.purge_older_than(cutoff)
    assert sorted(paths) == sorted([files["in1.png"], files["out3.mp4"]])
    assert await remove_files(paths) == 2
    assert not files["in1.png"].exists() and files["in3.png"].exists() and files["in2.png"].exists()
    assert (await store.get_job(old.id)).input_path is None
    assert (await store.get_job(parent.id)).result_path is None
    assert (await store.get_job(running.id)).input_path == str(files["in2.png"])
    assert await store.last_job_at(100, 1) is None  # old usage rows pruned
    assert await store.purge_older_than(cutoff) == []  # idempotent


async def test_try_record_usage_enforces_limits_atomically(store: JobStore, clock: FakeClock) -> None:
    clock.advance(next_utc_midnight(clock.now()) - clock.now() + 3600)  # 01:00 UTC
    # A burst of 20 concurrent requests from one member with a quota of 3: exactly 3 pass.
    results = await asyncio.gather(*(store.try_record_usage(100, 1, daily_quota=3) for _ in range(20)))
    assert sum(r.allowed for r in results) == 3
    refused = [r for r in results if not r.allowed]
    assert {r.reason for r in refused} == {"quota"}
    assert refused[0].retry_after == pytest.approx(23 * 3600)  # resets at 00:00 UTC
    assert await store.usage_today(100, 1) == 3

    # Cooldown: refused with the time left, allowed once it has passed.
    first = await store.try_record_usage(100, 2, cooldown=60)
    assert first.allowed and first.member_today == 1
    clock.advance(20)
    second = await store.try_record_usage(100, 2, cooldown=60)
    assert not second.allowed and second.reason == "cooldown" and second.retry_after == pytest.approx(40)
    clock.advance(40)
    assert (await store.try_record_usage(100, 2, cooldown=60)).allowed

    # Guild cap counts every member; an exempt member (no limits passed) still counts.
    assert (await store.try_record_usage(100, 3)).allowed
    capped = await store.try_record_usage(100, 4, guild_daily_cap=6)
    assert not capped.allowed and capped.reason == "guild_cap" and capped.guild_today == 6
    assert (await store.try_record_usage(200, 4, guild_daily_cap=6)).allowed  # another guild
