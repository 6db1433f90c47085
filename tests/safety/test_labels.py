"""Every NudeNet label is in exactly one of our groups, and the groups say what the issue says."""

from __future__ import annotations

import nudenet.nudenet
import pytest

from bot.safety.labels import (
    EXPLICIT_LABELS,
    IGNORED_LABELS,
    LABEL_GROUPS,
    NUDENET_LABELS,
    SUGGESTIVE_LABELS,
    LabelGroup,
    group_of,
)


def test_our_label_list_is_nudenets_in_model_order() -> None:
    theirs = vars(nudenet.nudenet)["__labels"]
    assert list(NUDENET_LABELS) == list(theirs)
    assert len(NUDENET_LABELS) == 18 == len(set(NUDENET_LABELS))


def test_every_label_is_in_exactly_one_group() -> None:
    for label in NUDENET_LABELS:
        homes = [group for group in (EXPLICIT_LABELS, SUGGESTIVE_LABELS, IGNORED_LABELS) if label in group]
        assert len(homes) == 1, label
    assert EXPLICIT_LABELS | SUGGESTIVE_LABELS | IGNORED_LABELS == set(NUDENET_LABELS)
    assert set(LABEL_GROUPS) == set(NUDENET_LABELS)


def test_groups_are_the_issues() -> None:
    assert EXPLICIT_LABELS == {
        "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_EXPOSED", "FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED",
    }
    assert {"FEMALE_BREAST_COVERED", "FEMALE_GENITALIA_COVERED", "BUTTOCKS_COVERED", "BELLY_EXPOSED"} <= SUGGESTIVE_LABELS
    assert "MALE_GENITALIA_COVERED" not in NUDENET_LABELS  # NudeNet 3.4 has no such label
    assert SUGGESTIVE_LABELS - {"FEMALE_BREAST_COVERED", "FEMALE_GENITALIA_COVERED", "BUTTOCKS_COVERED", "BELLY_EXPOSED"} == {
        "ANUS_COVERED"
    }
    for label in ("FACE_FEMALE", "FACE_MALE", "FEET_EXPOSED", "FEET_COVERED", "ARMPITS_EXPOSED", "ARMPITS_COVERED",
                  "MALE_BREAST_EXPOSED", "BELLY_COVERED"):
        assert group_of(label) is LabelGroup.IGNORED


def test_an_unknown_label_is_an_error_not_ignored() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        group_of("FEMALE_BREAST_EXPOSD")
