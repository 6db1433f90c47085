"""decide(): every mode x channel kind x forced_strict x level, for an input and for a result."""

from __future__ import annotations

import itertools

import pytest

from bot.safety.policy import DEFAULT_MODE, Decision, Mode, Stage, decide, effective_mode, needs_check, strict_forced
from bot.safety.verdict import Detection, Detections, Level, Thresholds, Verdict, judge

T = Thresholds(0.4, 0.5)
VERDICTS: dict[Level | None, Verdict | None] = {
    Level.CLEAN: judge(Detections((Detection("FACE_FEMALE", 0.9),), 10, 10), T),
    Level.SUGGESTIVE: judge(Detections((Detection("BELLY_EXPOSED", 0.45),), 10, 10), T),
    Level.EXPLICIT: judge(Detections((Detection("FEMALE_GENITALIA_EXPOSED", 0.8),), 10, 10), T),
    None: None,  # not checked: detector unavailable or unreadable file
}


def expected(mode: Mode, age_restricted: bool, forced: bool, level: Level | None, stage: Stage) -> Decision:
    """The issue's rules, written out independently of the implementation."""
    blocked = Decision.REFUSE if stage is Stage.INPUT else Decision.WITHHOLD
    if forced:
        mode = Mode.STRICT
    if mode is Mode.OFF:
        return Decision.ALLOW
    nsfw_ok = mode is Mode.STANDARD and age_restricted
    if level is None:
        return blocked
    if level is Level.EXPLICIT:
        return Decision.ALLOW if nsfw_ok else blocked
    if level is Level.SUGGESTIVE:
        return Decision.ALLOW if stage is Stage.INPUT or nsfw_ok else Decision.ALLOW_AS_SPOILER
    return Decision.ALLOW


CASES = list(itertools.product(Mode, (False, True), (False, True), VERDICTS, Stage))


@pytest.mark.parametrize(("mode", "age_restricted", "forced", "level", "stage"), CASES)
def test_decide_table(mode: Mode, age_restricted: bool, forced: bool, level: Level | None, stage: Stage) -> None:
    decision = decide(mode, VERDICTS[level], stage=stage, age_restricted_channel=age_restricted, forced_strict=forced)
    assert decision is expected(mode, age_restricted, forced, level, stage)


def test_table_size() -> None:
    assert len(CASES) == 3 * 2 * 2 * 4 * 2


# The sentences, one by one.
def test_strict_is_the_default_and_refuses_explicit_even_in_an_age_restricted_channel() -> None:
    assert DEFAULT_MODE is Mode.STRICT
    explicit = VERDICTS[Level.EXPLICIT]
    assert decide(Mode.STRICT, explicit, stage=Stage.INPUT, age_restricted_channel=True, forced_strict=False) is Decision.REFUSE
    assert decide(Mode.STRICT, explicit, stage=Stage.RESULT, age_restricted_channel=True, forced_strict=False) is Decision.WITHHOLD


def test_standard_allows_explicit_only_in_age_restricted_channels() -> None:
    explicit = VERDICTS[Level.EXPLICIT]
    assert decide(Mode.STANDARD, explicit, stage=Stage.RESULT, age_restricted_channel=True, forced_strict=False) is Decision.ALLOW
    assert decide(Mode.STANDARD, explicit, stage=Stage.INPUT, age_restricted_channel=False, forced_strict=False) is Decision.REFUSE


def test_dms_and_others_images_are_strict_whatever_the_mode() -> None:
    assert strict_forced(direct_message=True, others_image=False) and strict_forced(direct_message=False, others_image=True)
    assert not strict_forced(direct_message=False, others_image=False)
    explicit = VERDICTS[Level.EXPLICIT]
    for mode in Mode:
        assert effective_mode(mode, forced_strict=True) is Mode.STRICT
        assert needs_check(mode, forced_strict=True)
        assert decide(mode, explicit, stage=Stage.INPUT, age_restricted_channel=True, forced_strict=True) is Decision.REFUSE


def test_off_needs_no_check_and_allows_everything() -> None:
    assert not needs_check(Mode.OFF, forced_strict=False)
    assert needs_check(Mode.STANDARD, forced_strict=False) and needs_check(Mode.STRICT, forced_strict=False)
    assert decide(Mode.OFF, None, stage=Stage.RESULT, age_restricted_channel=False, forced_strict=False) is Decision.ALLOW


def test_suggestive_result_in_an_ordinary_channel_is_a_spoiler_and_a_suggestive_input_is_allowed() -> None:
    suggestive = VERDICTS[Level.SUGGESTIVE]
    for mode in (Mode.STRICT, Mode.STANDARD):
        for stage, decision in ((Stage.RESULT, Decision.ALLOW_AS_SPOILER), (Stage.INPUT, Decision.ALLOW)):
            assert decide(mode, suggestive, stage=stage, age_restricted_channel=False, forced_strict=False) is decision


def test_modes_parse_from_their_stored_values() -> None:
    assert [Mode(value) for value in ("strict", "standard", "off")] == [Mode.STRICT, Mode.STANDARD, Mode.OFF]
