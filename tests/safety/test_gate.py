"""The safety gate (issue 16) with the deterministic detector and a real store: input and result
decisions, forced strict, stored scores judged again, withheld records, failing closed."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.jobs.models import Job
from bot.moderation.models import GuildSettings
from bot.safety.gate import (
    AGE_RESTRICTED_KEY,
    OTHERS_IMAGE_KEY,
    SAFETY_KEY,
    InputSubject,
    SafetyEvent,
    SafetyGate,
    SafetyRefused,
    SafetyState,
    guild_safety,
)
from bot.safety.messages import Rule
from bot.safety.policy import Decision, Mode
from bot.storage import Storage
from standins.fake_clock import FakeClock
from standins.fake_safety import EXPLICIT_MARKER, SUGGESTIVE_MARKER, FakeSafetyDetector

GUILD = 100
CLEAN = (128, 128, 128)


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buf, format="PNG")
    return buf.getvalue()


def gif(path: Path, colour: tuple[int, int, int], frames: int = 5) -> Path:
    images = [Image.new("RGB", (64, 48), colour) for _ in range(frames)]
    for index, image in enumerate(images):
        image.putpixel((0, 0), (index * 40, 0, 0))  # distinct frames (a GIF merges identical ones)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=100)
    return path


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Storage]:
    s = await Storage.open(tmp_path / "jobs.sqlite3", clock=FakeClock(start=1_750_000_000.0))
    yield s
    await s.close()


def make_gate(store: Storage, detector: FakeSafetyDetector | None = None) -> tuple[SafetyGate, list[SafetyEvent]]:
    gate = SafetyGate(detector or FakeSafetyDetector.with_markers(), guilds=store.guilds, withheld=store.withheld,
                      clock=store.clock)
    events: list[SafetyEvent] = []

    async def listen(event: SafetyEvent) -> None:
        events.append(event)

    gate.add_listener(listen)
    return gate, events


def subject(image: bytes | Path | None, *, guild: int | None = GUILD, nsfw: bool = False, others: bool = False,
            stored: dict[str, object] | None = None) -> InputSubject:
    return InputSubject(user_id=1, guild_id=guild, channel_id=5, image=image,
                        request={AGE_RESTRICTED_KEY: nsfw, OTHERS_IMAGE_KEY: others}, stored=stored)


async def refused_rule(gate: SafetyGate, item: InputSubject) -> Rule:
    with pytest.raises(SafetyRefused) as caught:
        await gate.check_input(item)
    assert "0.9" not in caught.value.user_message  # never the scores
    return caught.value.rule


async def test_inputs_by_mode_channel_dm_and_others_image(store: Storage) -> None:
    gate, events = make_gate(store)
    assert gate.status.state is SafetyState.NOT_LOADED  # checked before load(): it loads itself
    assert await refused_rule(gate, subject(png(EXPLICIT_MARKER), nsfw=True)) is Rule.STRICT
    assert gate.status.state is SafetyState.READY
    kept = await gate.check_input(subject(png(SUGGESTIVE_MARKER)))
    assert kept["input_level"] == "suggestive" and kept["input_scores"] == [["BELLY_EXPOSED", 0.45]]

    await store.guilds.update_settings(GUILD, safety_mode="standard")
    assert await refused_rule(gate, subject(png(EXPLICIT_MARKER))) is Rule.ORDINARY_CHANNEL
    allowed = await gate.check_input(subject(png(EXPLICIT_MARKER), nsfw=True))
    assert allowed == {OTHERS_IMAGE_KEY: False, "mode": "standard", "input_level": "explicit",
                       "input_scores": [["FEMALE_BREAST_EXPOSED", 0.9]]}
    assert await refused_rule(gate, subject(png(EXPLICIT_MARKER), nsfw=True, others=True)) is Rule.OTHERS_IMAGE
    assert await refused_rule(gate, subject(png(EXPLICIT_MARKER), guild=None, nsfw=True)) is Rule.DIRECT_MESSAGE
    assert await refused_rule(gate, subject(b"not an image")) is Rule.UNCHECKED

    assert [e.rule for e in events] == [Rule.STRICT, Rule.ORDINARY_CHANNEL, Rule.OTHERS_IMAGE, Rule.DIRECT_MESSAGE,
                                        Rule.UNCHECKED]
    first = events[0]
    assert first.kind == "refused" and first.thumbnail and first.thumbnail.startswith(b"\x89PNG")
    assert first.details()["labels"] == [["FEMALE_BREAST_EXPOSED", 0.9]] and first.details()["mode"] == "strict"


async def test_off_runs_no_detection_unless_strict_is_forced(store: Storage) -> None:
    detector = FakeSafetyDetector.with_markers()
    gate, _ = make_gate(store, detector)
    await store.guilds.update_settings(GUILD, safety_mode="off")
    assert await gate.check_input(subject(png(EXPLICIT_MARKER))) == {OTHERS_IMAGE_KEY: False, "mode": "off"}
    assert detector.calls == []
    assert await refused_rule(gate, subject(png(EXPLICIT_MARKER), others=True)) is Rule.OTHERS_IMAGE
    assert len(detector.calls) == 1


async def test_a_reroll_reuses_the_stored_scores_with_the_thresholds_of_now(store: Storage, tmp_path: Path) -> None:
    detector = FakeSafetyDetector.with_markers()
    gate, _ = make_gate(store, detector)
    await store.guilds.update_settings(GUILD, safety_mode="standard")
    stored = await gate.check_input(subject(png(EXPLICIT_MARKER), nsfw=True))
    calls = len(detector.calls)
    missing = tmp_path / "gone.png"  # the file is not read: the scores are enough
    assert await refused_rule(gate, subject(missing, stored=stored)) is Rule.ORDINARY_CHANNEL
    await store.guilds.update_settings(GUILD, safety_explicit=0.95)
    again = await gate.check_input(subject(missing, stored=stored))
    assert again["input_level"] == "suggestive" and len(detector.calls) == calls
    # an earlier job checked with the mode off has no scores: its file is checked now
    assert await refused_rule(gate, subject(missing, stored={OTHERS_IMAGE_KEY: True})) is Rule.UNCHECKED
    await store.guilds.update_settings(GUILD, safety_explicit=None)
    path = tmp_path / "input.png"
    path.write_bytes(png(EXPLICIT_MARKER))
    assert await refused_rule(gate, subject(path, nsfw=True, stored={OTHERS_IMAGE_KEY: True})) is Rule.OTHERS_IMAGE


def job(guild: int | None = GUILD, others: bool = False) -> Job:
    return Job.new(user_id=1, channel_id=5, guild_id=guild, workflow="svd", created_at=0.0,
                   result_meta={SAFETY_KEY: {OTHERS_IMAGE_KEY: others}})


async def test_results_spoilered_withheld_once_or_allowed(store: Storage, tmp_path: Path) -> None:
    gate, events = make_gate(store)
    explicit, suggestive = gif(tmp_path / "e.gif", EXPLICIT_MARKER), gif(tmp_path / "s.gif", SUGGESTIVE_MARKER)
    assert (await gate.check_result(job(), suggestive, age_restricted=True)).decision is Decision.ALLOW_AS_SPOILER
    assert (await gate.check_result(job(), gif(tmp_path / "c.gif", CLEAN), age_restricted=False)).decision is Decision.ALLOW
    withheld_job = job()
    judgement = await gate.check_result(withheld_job, explicit, age_restricted=True)
    assert (judgement.decision, judgement.rule, judgement.mode) == (Decision.WITHHOLD, Rule.STRICT, Mode.STRICT)
    assert judgement.verdict is not None and judgement.verdict.frames == 3  # first, middle and last frame
    await gate.check_result(withheld_job, explicit, age_restricted=True)  # delivered again after a restart
    [record] = await store.withheld.for_guild(GUILD)
    assert record.job_id == withheld_job.id and record.result_path == str(explicit) and record.rule == "strict"
    assert [e.kind for e in events] == ["withheld"]  # recorded and announced once

    await store.guilds.update_settings(GUILD, safety_mode="standard")
    assert (await gate.check_result(job(), explicit, age_restricted=True)).decision is Decision.ALLOW
    assert (await gate.check_result(job(), suggestive, age_restricted=True)).decision is Decision.ALLOW
    assert (await gate.check_result(job(others=True), explicit, age_restricted=True)).rule is Rule.OTHERS_IMAGE
    assert (await gate.check_result(job(guild=None), explicit, age_restricted=True)).rule is Rule.DIRECT_MESSAGE
    unreadable = tmp_path / "broken.gif"
    unreadable.write_bytes(b"GIF89a broken")
    assert (await gate.check_result(job(), unreadable, age_restricted=True)).rule is Rule.UNCHECKED


async def test_a_detector_that_cannot_load_fails_closed_and_is_logged_once(
        store: Storage, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gate, events = make_gate(store, FakeSafetyDetector(fail_load="onnxruntime is not installed"))
    with caplog.at_level(logging.INFO):
        status = await gate.load()
        await gate.load()
        assert await refused_rule(gate, subject(png(CLEAN))) is Rule.UNAVAILABLE
        with pytest.raises(SafetyRefused):
            await gate.require_available(guild_id=GUILD, channel_id=5, user_id=1)
        result = await gate.check_result(job(), gif(tmp_path / "c.gif", CLEAN), age_restricted=False)
    assert status.state is SafetyState.UNAVAILABLE and status.reason == "onnxruntime is not installed"
    assert [r.levelname for r in caplog.records if "detector unavailable" in r.getMessage()] == ["ERROR"]
    assert (result.decision, result.rule) == (Decision.WITHHOLD, Rule.UNAVAILABLE)
    await store.guilds.update_settings(GUILD, safety_mode="off")
    await gate.require_available(guild_id=GUILD, channel_id=5, user_id=1)  # nothing to check: fine
    assert (await gate.check_input(subject(png(CLEAN))))["mode"] == "off"
    assert [e.rule for e in events] == [Rule.UNAVAILABLE] * 3


def test_thresholds_come_from_the_guild_or_the_defaults() -> None:
    safety = guild_safety(GuildSettings(safety_mode="standard", safety_explicit=0.7))
    assert safety.mode is Mode.STANDARD and (safety.thresholds.suggestive, safety.thresholds.explicit) == (0.4, 0.7)
    broken = guild_safety(GuildSettings(safety_suggestive=0.9))  # above the explicit default: not usable
    assert (broken.thresholds.suggestive, broken.thresholds.explicit) == (0.4, 0.5)
