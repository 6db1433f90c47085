"""Thresholds validation and the pure judge: detections + thresholds -> verdict."""

from __future__ import annotations

import math

import pytest

from bot.safety.verdict import SCORE_FLOOR, Detection, Detections, Level, Thresholds, judge


def found(*pairs: tuple[str, float]) -> Detections:
    return Detections(items=tuple(Detection(label, score) for label, score in pairs), width=100, height=100)


def test_default_thresholds() -> None:
    t = Thresholds()
    assert (t.suggestive, t.explicit) == (0.40, 0.50)
    assert SCORE_FLOOR == 0.25


@pytest.mark.parametrize(
    ("suggestive", "explicit", "message"),
    [
        (0.2, 0.5, "suggestive threshold must be between 0.25"),
        (0.24, 0.5, "suggestive threshold must be between 0.25"),
        (0.4, 0.2, "explicit threshold must be between 0.25"),
        (0.4, 1.01, "explicit threshold must be between 0.25"),
        (0.6, 0.5, "must not be above explicit"),
        (math.nan, 0.5, "must be a number"),
        (0.4, True, "must be a number"),
    ],
)
def test_bad_thresholds_are_refused(suggestive: float, explicit: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Thresholds(suggestive, explicit)


@pytest.mark.parametrize(("suggestive", "explicit"), [(0.25, 0.25), (0.25, 1.0), (0.5, 0.5), (1.0, 1.0), (0.45, 0.6)])
def test_edge_thresholds_are_accepted(suggestive: float, explicit: float) -> None:
    assert Thresholds(suggestive, explicit).explicit == explicit


def test_bad_detections_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        Detection("NOPE", 0.5)
    with pytest.raises(ValueError, match="score"):
        Detection("FACE_MALE", 1.5)


T = Thresholds(0.4, 0.5)


@pytest.mark.parametrize(
    ("pairs", "level", "labels"),
    [
        ((), Level.CLEAN, ()),
        ((("FACE_FEMALE", 0.99), ("FEET_EXPOSED", 0.9), ("MALE_BREAST_EXPOSED", 0.95)), Level.CLEAN, ()),
        ((("BELLY_EXPOSED", 0.39),), Level.CLEAN, ()),
        ((("BELLY_EXPOSED", 0.40),), Level.SUGGESTIVE, (("BELLY_EXPOSED", 0.40),)),
        ((("BELLY_EXPOSED", 0.99),), Level.SUGGESTIVE, (("BELLY_EXPOSED", 0.99),)),  # suggestive labels never make explicit
        ((("FEMALE_BREAST_EXPOSED", 0.30),), Level.CLEAN, ()),
        ((("FEMALE_BREAST_EXPOSED", 0.45),), Level.SUGGESTIVE, (("FEMALE_BREAST_EXPOSED", 0.45),)),  # explicit label, low score
        ((("FEMALE_BREAST_EXPOSED", 0.50),), Level.EXPLICIT, (("FEMALE_BREAST_EXPOSED", 0.50),)),
        (
            (("BUTTOCKS_COVERED", 0.7), ("ANUS_EXPOSED", 0.55), ("FACE_MALE", 0.8), ("ANUS_EXPOSED", 0.3)),
            Level.EXPLICIT,
            (("BUTTOCKS_COVERED", 0.7), ("ANUS_EXPOSED", 0.55)),
        ),
    ],
)
def test_judge(pairs: tuple[tuple[str, float], ...], level: Level, labels: tuple[tuple[str, float], ...]) -> None:
    verdict = judge(found(*pairs), T)
    assert verdict.level is level
    assert verdict.labels == labels
    assert verdict.thresholds is T and verdict.frames == 1


def test_judge_combines_frames_by_highest_score_per_label() -> None:
    frames = [found(("BELLY_EXPOSED", 0.3)), found(("BELLY_EXPOSED", 0.42), ("FACE_FEMALE", 0.6)), found(("BUTTOCKS_EXPOSED", 0.35))]
    verdict = judge(frames, T)
    assert verdict.level is Level.SUGGESTIVE and verdict.frames == 3
    assert verdict.labels == (("BELLY_EXPOSED", 0.42),)
    assert verdict.scores == (("FACE_FEMALE", 0.6), ("BELLY_EXPOSED", 0.42), ("BUTTOCKS_EXPOSED", 0.35))
    assert judge([*frames, found(("MALE_GENITALIA_EXPOSED", 0.8))], T).level is Level.EXPLICIT
    assert judge([], T).level is Level.CLEAN


def test_summary_and_level_order() -> None:
    verdict = judge(found(("FEMALE_BREAST_EXPOSED", 0.834), ("BELLY_EXPOSED", 0.41)), T)
    assert verdict.summary() == "explicit: FEMALE_BREAST_EXPOSED 0.83, BELLY_EXPOSED 0.41"
    assert verdict.explicit and not verdict.suggestive
    assert judge(found(), T).summary() == "clean"
    assert Level.CLEAN.severity < Level.SUGGESTIVE.severity < Level.EXPLICIT.severity
