"""Content-safety records (issue 16): each guild's mode and thresholds in their own columns, and the
results withheld for moderators (one decision each, kept across restarts, gone with retention)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.moderation.models import GuildSettings
from bot.storage import Storage, WithheldResult
from bot.storage.withheld import DELETED, RELEASED, WITHHELD
from standins.fake_clock import FakeClock
from tests.storage.conftest import DAY


def withheld(job_id: str, at: float, guild: int | None = 100) -> WithheldResult:
    return WithheldResult(job_id=job_id, guild_id=guild, channel_id=5, user_id=1, at=at, level="explicit",
                          labels=(("FEMALE_BREAST_EXPOSED", 0.9),), rule="strict", mode="strict",
                          result_path=f"/data/results/{job_id}.gif")


async def test_every_guild_starts_strict_and_keeps_its_mode_and_thresholds_in_columns(
        store: Storage, tmp_path: Path) -> None:
    assert (await store.guilds.get_settings(7)).safety_mode == "strict"
    await store.guilds.update_settings(7, daily_quota=3, safety_mode="standard", safety_suggestive=0.3)
    settings = await store.guilds.get_settings(7)
    assert (settings.safety_mode, settings.safety_suggestive, settings.safety_explicit) == ("standard", 0.3, None)
    assert settings.daily_quota == 3
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:
        blob, mode, suggestive = db.execute(
            "SELECT settings, safety_mode, safety_suggestive FROM guild_settings WHERE guild_id = 7").fetchone()
    db.close()
    assert (mode, suggestive) == ("standard", 0.3)
    assert not {"safety_mode", "safety_suggestive", "safety_explicit"} & set(json.loads(blob))
    await store.guilds.update_settings(7, safety_mode="off", safety_suggestive=None)
    assert (await store.guilds.get_settings(7)).replace(daily_quota=None) == GuildSettings(safety_mode="off")


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="safety_mode"):
        GuildSettings(safety_mode="lenient")


async def test_a_withheld_result_is_kept_once_and_decided_once(store: Storage, clock: FakeClock) -> None:
    first, created = await store.withheld.add(withheld("job1", clock.now()))
    assert created and first.pending and first.labels == (("FEMALE_BREAST_EXPOSED", 0.9),)
    again, created = await store.withheld.add(withheld("job1", clock.now() + 5))
    assert not created and again == first  # a second delivery attempt keeps the first record
    assert [r.job_id for r in await store.withheld.for_guild(100)] == ["job1"]
    assert await store.withheld.count(100) == 1

    released = await store.withheld.decide("job1", RELEASED, by=9, at=clock.now(), message_id=55)
    assert released is not None and (released.state, released.decided_by, released.message_id) == (RELEASED, 9, 55)
    assert await store.withheld.decide("job1", DELETED, by=8, at=clock.now()) is None  # already decided
    assert await store.withheld.for_guild(100) == [] and await store.withheld.count(100, state=RELEASED) == 1
    with pytest.raises(ValueError):
        await store.withheld.decide("job1", "lost", by=1, at=0)


async def test_withheld_results_survive_a_restart_and_go_with_retention(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "data" / "jobs.sqlite3"
    async with await Storage.open(path, clock=clock) as store:
        await store.withheld.add(withheld("old", clock.now()))
        await store.withheld.add(withheld("new", clock.now() + 3 * DAY))
    async with await Storage.open(path, clock=clock) as store:
        assert {r.job_id for r in await store.withheld.for_guild(100)} == {"old", "new"}
        await store.purge_older_than(clock.now() + DAY)
        assert [r.job_id for r in await store.withheld.for_guild(100)] == ["new"]
        assert (await store.withheld.get("new")) is not None and (await store.withheld.get("old")) is None
        assert (await store.withheld.get("new")).state == WITHHELD  # type: ignore[union-attr]
