"""The result check started ahead of the delivery (:mod:`bot.safety.ahead`): its detections are used
once, judged with the thresholds of the delivery's moment; a changed file or mode off means the
delivery checks as it always did; a dropped one leaves nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.safety.policy import Decision
from bot.storage import Storage
from standins.fake_clock import FakeClock
from standins.fake_safety import EXPLICIT_MARKER, SUGGESTIVE_MARKER, FakeSafetyDetector
from standins.wait import wait_until
from tests.safety.test_gate import CLEAN, GUILD, gif, job, make_gate

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Storage]:
    s = await Storage.open(tmp_path / "jobs.sqlite3", clock=FakeClock(start=1_750_000_000.0))
    yield s
    await s.close()


async def test_a_check_started_ahead_is_used_once_with_the_thresholds_of_the_delivery(
        store: Storage, tmp_path: Path) -> None:
    detector = FakeSafetyDetector.with_markers()
    gate, _events = make_gate(store, detector)
    result = gif(tmp_path / "s.gif", SUGGESTIVE_MARKER)
    gate.start_result_check(job(), result)
    await wait_until(lambda: len(detector.calls) == 3, timeout=5, what="the three frames detected ahead")
    await store.guilds.update_settings(GUILD, safety_suggestive=0.5)  # changed before the delivery: 0.45 < 0.5
    judgement = await gate.check_result(job(), result, age_restricted=False)
    assert judgement.decision is Decision.ALLOW and len(detector.calls) == 3  # not detected again
    assert len(gate.ahead) == 0
    assert (await gate.check_result(job(), result, age_restricted=False)).decision is Decision.ALLOW
    assert len(detector.calls) == 6  # a second check of the same file detects it again


async def test_a_file_changed_since_is_checked_again(store: Storage, tmp_path: Path) -> None:
    detector = FakeSafetyDetector.with_markers()
    gate, _events = make_gate(store, detector)
    result = gif(tmp_path / "r.gif", CLEAN)
    gate.start_result_check(job(), result)
    await wait_until(lambda: len(detector.calls) == 3, timeout=5, what="the frames detected ahead")
    gif(tmp_path / "r.gif", EXPLICIT_MARKER, frames=7)  # another result under the same name
    judgement = await gate.check_result(job(), result, age_restricted=False)
    assert judgement.decision is Decision.WITHHOLD and len(detector.calls) == 6


async def test_nothing_is_detected_ahead_in_mode_off_and_a_dropped_check_is_forgotten(
        store: Storage, tmp_path: Path) -> None:
    detector = FakeSafetyDetector.with_markers()
    gate, _events = make_gate(store, detector)
    await store.guilds.update_settings(GUILD, safety_mode="off")
    result = gif(tmp_path / "o.gif", EXPLICIT_MARKER)
    gate.start_result_check(job(), result)
    gate.start_result_check(job(guild=None), gif(tmp_path / "dm.gif", CLEAN))  # a DM is always checked
    await wait_until(lambda: len(detector.calls) == 3, timeout=5, what="the DM's frames detected ahead")
    await asyncio.sleep(0)
    assert len(detector.calls) == 3  # the guild in mode off: nothing
    gate.drop_result_check(result)
    gate.drop_result_check(tmp_path / "dm.gif")
    assert len(gate.ahead) == 0
