"""Fixtures of the storage tests: a fake clock and a :class:`~bot.storage.Storage` on disk; the
/animate tests' whole-bot factory (re-exported) for the upgrade test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.jobs.models import Job
from bot.storage import Storage
from standins.fake_clock import FakeClock
from tests.animate.conftest import animate_bot, discord_stand_in

__all__ = ["animate_bot", "discord_stand_in", "DAY", "make_job"]

DAY = 86400.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_750_000_000.0)


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Storage]:
    s = await Storage.open(tmp_path / "data" / "jobs.sqlite3", clock=clock)
    yield s
    await s.close()


def make_job(clock: FakeClock, user: int = 1, guild: int | None = 100, **fields: object) -> Job:
    return Job.new(user_id=user, channel_id=5, guild_id=guild, workflow="svd", created_at=clock.now(), **fields)
