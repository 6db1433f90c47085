"""Fixtures for the moderation tests: a real Storage on disk and a fake clock."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from standins.fake_clock import FakeClock
from bot.errors import UserFacingError
from bot.moderation.policy import AdmissionPolicy, Requester
from bot.moderation.models import next_utc_midnight
from bot.storage import Storage

GUILD = 100
MOD_ROLE = 500
EXEMPT_ROLE = 600


@pytest.fixture
def clock() -> FakeClock:
    c = FakeClock(start=1_750_000_000.0)
    # Start the day at 01:00 UTC so quota resets are 23 h away.
    c.advance(next_utc_midnight(c.now()) - c.now() + 3600)
    return c


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Storage]:
    s = await Storage.open(tmp_path / "data" / "jobs.sqlite3", clock=clock)
    yield s
    await s.close()


@pytest.fixture
def policy(store: Storage, clock: FakeClock) -> AdmissionPolicy:
    return AdmissionPolicy(store.guilds, clock=clock, allow_dms=False, default_max_in_flight=2)


def member(user_id: int = 1, *, guild_id: int | None = GUILD, channel_id: int = 10, roles: tuple[int, ...] = (),
           manage_guild: bool = False, manage_messages: bool = False, parent: int | None = None) -> Requester:
    return Requester(user_id, guild_id, channel_id, frozenset(roles), manage_guild, manage_messages, parent)


def admin(user_id: int = 900) -> Requester:
    return member(user_id, manage_guild=True)


@contextlib.contextmanager
def refused(kind: type[UserFacingError], contains: str) -> Iterator[pytest.ExceptionInfo[UserFacingError]]:
    """Expect ``kind`` whose member-facing message contains ``contains``."""
    with pytest.raises(kind) as exc:
        yield exc
    assert contains in exc.value.user_message, exc.value.user_message
