"""Upgrading a DATA_DIR written by release 0.1: its job store is migrated, a copy of the old file
is kept, every record survives, and its unfinished jobs resume and deliver through the whole bot.

``tests/fixtures/store/release-0.1.sql`` is that release's job store as an SQL dump, made with
the release's own code (see ``make_release_0_1.py`` next to it). Its DATA_DIR and the Discord ids
of the guild, channel, member and application are placeholders, replaced here by this test's
DATA_DIR and the Discord stand-in's ids; nothing else is changed.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.jobs.models import Job, JobState
from bot.media.images import prepare_image
from bot.moderation.models import GuildSettings
from bot.storage import SCHEMA_VERSION, Storage
from bot.storage.database import backup_path
from standins.comfy_server.nodes import encode_mp4
from standins.discord_server import DiscordStandIn
from tests.animate.conftest import AnimateFactory, png_bytes, wait_job
from tests.conftest import FIXTURES
from tests.storage.helpers import list_audit, list_bans, usage_today

RELEASE = FIXTURES / "store" / "release-0.1.sql"
RELEASE_DATA_DIR = "/srv/comfy-animate-bot/data"
GUILD, CHANNEL, ALICE, BOB, MOD, APP = (710000000000000000 + n for n in range(1, 7))
OTHER_GUILD, MOD_ROLE, EXEMPT_ROLE, CAROL = 710000000000000007, 710000000000000010, 710000000000000011, 710000000000000012
DROPPED = ("progress_step", "progress_steps", "progress_percent", "progress_phase")
UNFINISHED = {  # job id -> its state when release 0.1 stopped
    "delivering": "delivering", "running001": "running", "submitted1": "submitted",
    "requeued01": "waiting", "reroll0001": "waiting", "waiting001": "waiting",
}
ENDED = {
    "delivered1": "delivered", "deleted001": "delivered", "moved00001": "delivered", "directmsg1": "delivered",
    "failed0001": "failed", "lost000001": "failed", "cancelled1": "cancelled", "timedout01": "timed_out",
    "nosrvwait1": "timed_out",
}


def load_release(data_dir: Path, stand_in: DiscordStandIn) -> Path:
    """Write release 0.1's job store into ``data_dir`` (pointing at the stand-in), with the files
    its jobs name: prepared input images, and the finished video of the job that was delivering."""
    ids = {GUILD: stand_in.guild.id, CHANNEL: stand_in.channel.id, ALICE: stand_in.user.id, APP: stand_in.application_id}
    sql = RELEASE.read_text(encoding="utf-8").replace(RELEASE_DATA_DIR, str(data_dir))
    sql = re.sub(r"\b7100000000000000(0[1-9]|1[0-2])\b", lambda m: str(ids.get(int(m.group(0)), m.group(0))), sql)
    path = data_dir / "jobs.sqlite3"
    data_dir.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.executescript(sql)
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"  # as the release left it
    db.close()
    prepared = prepare_image(png_bytes()).png
    for input_path, result_path in rows(path, "SELECT input_path, result_path FROM jobs"):
        for name, write in ((input_path, lambda p: p.write_bytes(prepared)), (result_path, write_video)):
            if name:
                Path(name).parent.mkdir(parents=True, exist_ok=True)
                write(Path(name))
    return path


def write_video(path: Path) -> None:
    frames = [Image.new("RGB", (256, 144), (40 * i, 80, 200 - 40 * i)) for i in range(4)]
    encode_mp4(frames, 6.0, path)


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        found = db.execute(sql).fetchall()
    db.close()
    return found


def table(path: Path, name: str) -> list[dict[str, Any]]:
    """Every row of a table as a dict, in rowid order (read with plain sqlite3, not the bot's code)."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        found = [dict(r) for r in db.execute(f"SELECT * FROM {name} ORDER BY rowid")]
    db.close()
    return found


def expected_job_row(old: dict[str, Any]) -> dict[str, Any]:
    """A release-0.1 jobs row as the migrations leave it (result_meta parsed, for comparison)."""
    meta = json.loads(old["result_meta"] or "{}")
    row = {k: v for k, v in old.items() if k not in DROPPED}
    row["moved"] = 1 if meta.pop("moved", False) else 0
    row["delivery_attempts"] = int(meta.pop("delivery_attempts", 0))
    row["result_meta"] = meta
    row["chain_root_id"], row["extension_index"] = None, 0  # version 8 (Extend): no job is an extension
    return row


def migrated_job_row(row: dict[str, Any]) -> dict[str, Any]:
    return row | {"result_meta": json.loads(row["result_meta"] or "{}")}


@pytest.mark.timeout(60)
async def test_release_0_1_records_are_migrated_with_a_backup(tmp_path: Path, discord_stand_in: DiscordStandIn) -> None:
    path = load_release(tmp_path / "data", discord_stand_in)
    old_bytes = path.read_bytes()
    old = {name: table(path, name) for name in ("jobs", "guild_settings", "bans", "usage", "audit")}
    assert rows(path, "PRAGMA user_version") == [(3,)]
    assert {row["state"] for row in old["jobs"]} == {s.value for s in JobState}  # every state is there
    assert all(row[c] is None for row in old["jobs"] for c in DROPPED)  # nothing ever wrote them

    async with await Storage.open(path) as store:
        assert await store.schema_version() == SCHEMA_VERSION
        # every record, with the same values; only the dropped columns are gone, and (version 6)
        # the moved flag and delivery attempts left the JSON result_meta for columns of their own
        assert [migrated_job_row(row) for row in table(path, "jobs")] == [expected_job_row(row) for row in old["jobs"]]
        assert sum(row["moved"] for row in table(path, "jobs")) == 2  # the release's two moved jobs
        for name in ("bans", "usage", "audit"):
            assert table(path, name) == old[name], name
        # version 5: every guild starts in strict mode with the default thresholds (issue 16)
        safety_defaults = {"safety_mode": "strict", "safety_suggestive": None, "safety_explicit": None}
        assert table(path, "guild_settings") == [row | safety_defaults for row in old["guild_settings"]]
        assert table(path, "withheld") == []
        # version 7: no guild has option defaults or caps yet; each reads the workflows' own
        assert table(path, "guild_options") == []
        assert (await store.guilds.get_option_rules(discord_stand_in.guild.id)).is_default
        # and the bot reads them as the release wrote them
        for row in old["jobs"]:
            assert await store.jobs.get(row["id"]) == Job.from_row(expected_job_row(row) | {
                "result_meta": json.dumps(expected_job_row(row)["result_meta"])})
        assert {j.id: j.state.value for j in await store.jobs.active()} == UNFINISHED
        settings = await store.guilds.get_settings(discord_stand_in.guild.id)
        assert settings == GuildSettings(
            allowed_channel_ids=(discord_stand_in.channel.id,), cooldown_seconds=30, daily_quota=20, max_in_flight=3,
            guild_daily_cap=200, exempt_role_ids=(EXEMPT_ROLE,), allow_animate_others=True, moderator_role_ids=(MOD_ROLE,),
            audit_channel_id=discord_stand_in.channel.id,
        )
        other = await store.guilds.get_settings(OTHER_GUILD)
        assert other.paused and other.pause_message is None and other.required_role_id == EXEMPT_ROLE + 100
        bans = await list_bans(store, discord_stand_in.guild.id)
        assert [(b.user_id, b.reason, b.banned_by) for b in bans] == [(BOB, "posting other people's photos", CAROL)]
        assert (await store.guilds.get_ban(OTHER_GUILD, discord_stand_in.user.id)) is not None
        at = old["usage"][0]["last_job_at"]
        assert await usage_today(store, discord_stand_in.guild.id, discord_stand_in.user.id, now=at) == 11
        assert await usage_today(store, None, discord_stand_in.user.id, now=at) == 1  # direct messages
        audit = await list_audit(store, discord_stand_in.guild.id, limit=100)
        assert len(audit) == sum(r["guild_id"] == discord_stand_in.guild.id for r in old["audit"]) == 34
        assert audit[-1].action == "settings.moderator_roles" and audit[-1].actor_id == MOD
        deleted = await list_audit(store, discord_stand_in.guild.id, job_id="deleted001", action="job.deleted")
        assert [(r.actor_id, r.details["message_id"]) for r in deleted] == [(CAROL, 720000000000000004)]

    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert not set(DROPPED) & {r[1] for r in rows(path, "PRAGMA table_info(jobs)")}
    assert backup_path(path, 3).read_bytes() == old_bytes  # the old file, byte for byte
    assert rows(backup_path(path, 3), "PRAGMA integrity_check") == [("ok",)]
    async with await Storage.open(path) as store:  # opening it again changes nothing
        assert await store.schema_version() == SCHEMA_VERSION
    assert sorted(p.name for p in path.parent.iterdir() if ".bak" in p.name) == ["jobs.sqlite3.v3.bak"]


@pytest.mark.timeout(90)
async def test_release_0_1_unfinished_jobs_resume_and_deliver(
    tmp_path: Path, animate_bot: AnimateFactory, discord_stand_in: DiscordStandIn
) -> None:
    stand_in = discord_stand_in
    path = load_release(tmp_path / "data", stand_in)
    old_bytes = path.read_bytes()
    env = await animate_bot(step_time=0.01)  # the bot migrates its DATA_DIR as it starts
    assert env.settings.store_path == path
    assert backup_path(path, 3).read_bytes() == old_bytes

    for job_id in UNFINISHED:
        job: Job = await wait_job(env.service, job_id, "delivered", "failed", "cancelled", "timed_out", timeout=30)
        assert job.state is JobState.DELIVERED, (job_id, job.state, job.error, job.error_detail)
        carrier = stand_in.messages.get(job.delivered_message_id or 0)
        assert carrier is not None and carrier["channel_id"] == str(stand_in.channel.id)
        assert [a["filename"].split(".")[0] for a in carrier["attachments"]][:1] == [f"animation_{job_id}"]
    videos = [a["filename"] for m in stand_in.channel_messages() for a in m.get("attachments", [])
              if a["filename"].startswith("animation_")]
    assert sorted(v.split(".")[0] for v in videos) == sorted(f"animation_{j}" for j in UNFINISHED)  # each once
    delivering = await env.service.get("delivering")
    assert delivering is not None and delivering.delivery_attempts == 2  # delivered, not run again
    assert "delivery_attempts" not in delivering.result_meta
    assert delivering.server == "gpu-1" and delivering.submit_attempts == 1
    for job_id, state in ENDED.items():  # jobs that had ended stay as they were
        ended = await env.service.get(job_id)
        assert ended is not None and ended.state.value == state
    assert sorted(p.name for p in path.parent.iterdir() if ".bak" in p.name) == ["jobs.sqlite3.v3.bak"]
