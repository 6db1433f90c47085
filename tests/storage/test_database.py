"""The database: file and WAL on first open, restarts, schema versions, migrations and backups."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.jobs.models import JobState
from bot.storage import MIGRATIONS, SCHEMA_VERSION, AuditRecord, Migration, Storage, StoreError
from bot.storage import database
from bot.storage.database import backup_path
from standins.fake_clock import FakeClock
from tests.storage.conftest import make_job
from tests.storage.helpers import is_banned, list_audit, record_usage, usage_today


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as raw:
        names = [row[1] for row in raw.execute(f"PRAGMA table_info({table})")]
    raw.close()
    return names


def test_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == MIGRATIONS[-1].version == len(MIGRATIONS)
    assert all(m.summary and m.sql.strip() for m in MIGRATIONS)


async def test_open_creates_file_folder_and_wal(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "nested" / "dir" / "jobs.sqlite3"
    s = await Storage.open(path, clock=clock)
    try:
        assert path.exists() and s.db.path == path
        assert await s.schema_version() == SCHEMA_VERSION
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        raw.close()
    finally:
        await s.close()
    assert not list(path.parent.glob("*.bak"))  # a new database has nothing to back up
    assert not {"progress_step", "progress_steps", "progress_percent", "progress_phase"} & set(columns(path, "jobs"))


async def test_restart_keeps_everything(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "jobs.sqlite3"
    s = await Storage.open(path, clock=clock)
    job = make_job(clock, options={"seed": 5})
    await s.jobs.add(job)
    await s.jobs.update(job.id, state="submitted", server="gpu2", prompt_id="abc", client_id="cid")
    await s.guilds.update_settings(100, paused=True, pause_message="maintenance")
    await s.guilds.ban(100, 8, reason="r", by=1)
    await record_usage(s, 100, 1)
    await s.audit.add(AuditRecord(guild_id=100, at=clock.now(), actor_id=1, action="job.created", job_id=job.id))
    await s.close()

    async with await Storage.open(path, clock=clock) as s2:
        back = await s2.jobs.get(job.id)
        assert back is not None and back.state is JobState.SUBMITTED and back.prompt_id == "abc"
        assert back.options == {"seed": 5} and back.client_id == "cid"
        assert (await s2.guilds.get_settings(100)).pause_message == "maintenance"
        assert await is_banned(s2, 100, 8)
        assert await usage_today(s2, 100, 1) == 1
        assert len(await list_audit(s2, 100)) == 1
        assert await s2.schema_version() == SCHEMA_VERSION
    assert not list(tmp_path.glob("*.bak"))  # opening a current database is a no-op: no backup


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
    old_bytes = path.read_bytes()

    s = await Storage.open(path, clock=clock)
    try:
        assert await s.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        assert backup_path(path, 1).read_bytes() == old_bytes
        old = await s.jobs.get("oldjob0001")
        assert old is not None and old.options == {"seed": 9} and old.state is JobState.DELIVERED
        assert old.deleted is False and old.parent_job_id is None
        assert (await s.guilds.get_settings(100)).paused
        await s.guilds.ban(100, 2, reason=None, by=None)  # tables added by later versions exist
        await record_usage(s, 100, 2)
        new = make_job(clock, parent_job_id="oldjob0001")
        await s.jobs.add(new)
        assert (await s.jobs.get(new.id)).parent_job_id == "oldjob0001"  # type: ignore[union-attr]
    finally:
        await s.close()


async def test_refuses_a_database_from_a_newer_bot(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "new.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, future TEXT)")
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(StoreError) as refused:
        await Storage.open(path, clock=clock)
    message = str(refused.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message and f"up to {SCHEMA_VERSION}" in message
    assert "newer bot" in message and str(path) in message
    assert path.read_bytes() == before and not list(tmp_path.glob("*.bak"))  # left as it was


async def test_a_new_migration_runs_once_after_a_backup(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the next schema change will do: append a migration; an existing database is copied,
    then migrated; opening it again changes nothing."""
    path = tmp_path / "jobs.sqlite3"
    async with await Storage.open(path, clock=clock) as s:
        job = make_job(clock, result_meta={"note": "kept"})
        await s.jobs.add(job)
    current = path.read_bytes()
    nxt = SCHEMA_VERSION + 1
    monkeypatch.setattr(database, "MIGRATIONS", (*MIGRATIONS, Migration(nxt, "a note as a column", """
        ALTER TABLE jobs ADD COLUMN note TEXT;
        UPDATE jobs SET note = json_extract(result_meta, '$.note');
    """)))
    async with await Storage.open(path, clock=clock) as s:
        assert await s.schema_version() == nxt
        row = await s.db.fetchone("SELECT note FROM jobs WHERE id = ?", (job.id,))
        assert row is not None and row[0] == "kept"
    assert backup_path(path, SCHEMA_VERSION).read_bytes() == current
    async with await Storage.open(path, clock=clock) as s:
        assert await s.schema_version() == nxt
    assert [p.name for p in tmp_path.glob("*.bak")] == [backup_path(path, SCHEMA_VERSION).name]


async def test_a_failed_migration_leaves_the_version_before_it(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.sqlite3"
    async with await Storage.open(path, clock=clock) as s:
        await s.jobs.add(make_job(clock))
    monkeypatch.setattr(database, "MIGRATIONS", (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "broken", """
        ALTER TABLE jobs ADD COLUMN half_done INTEGER;
        ALTER TABLE no_such_table ADD COLUMN x INTEGER;
    """)))
    with pytest.raises(sqlite3.OperationalError):
        await Storage.open(path, clock=clock)
    assert "half_done" not in columns(path, "jobs")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1
    raw.close()
    assert backup_path(path, SCHEMA_VERSION).exists()  # the copy taken before it is kept
