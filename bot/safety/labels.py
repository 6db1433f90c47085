"""NudeNet 3.4's labels and which of our groups each belongs to.

The detector reports body parts; what counts is decided here, explicitly, for every label:

* ``EXPLICIT``: exposed genitalia, anus, female breast or buttocks.
* ``SUGGESTIVE``: covered breast, genitalia, anus or buttocks (underwear, swimwear), and an exposed belly.
* ``IGNORED``: faces, feet, armpits, a bare male chest, a covered belly. They never change a verdict.

NudeNet 3.4 has 18 labels and no ``MALE_GENITALIA_COVERED``. ``ANUS_COVERED`` is not named in the
issue; it marks a close view of a covered crotch or rear, so it sits with ``BUTTOCKS_COVERED`` in
``SUGGESTIVE``. A test checks that every label of the installed NudeNet is in exactly one group.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final


class LabelGroup(StrEnum):
    EXPLICIT = "explicit"
    SUGGESTIVE = "suggestive"
    IGNORED = "ignored"


# In the order of the model's output classes (nudenet/nudenet.py, ``__labels``).
NUDENET_LABELS: Final[tuple[str, ...]] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

EXPLICIT_LABELS: Final[frozenset[str]] = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "ANUS_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
    }
)
SUGGESTIVE_LABELS: Final[frozenset[str]] = frozenset(
    {
        "FEMALE_BREAST_COVERED",
        "FEMALE_GENITALIA_COVERED",
        "ANUS_COVERED",
        "BUTTOCKS_COVERED",
        "BELLY_EXPOSED",
    }
)
IGNORED_LABELS: Final[frozenset[str]] = frozenset(
    {
        "FACE_FEMALE",
        "FACE_MALE",
        "FEET_EXPOSED",
        "FEET_COVERED",
        "ARMPITS_EXPOSED",
        "ARMPITS_COVERED",
        "MALE_BREAST_EXPOSED",
        "BELLY_COVERED",
    }
)

LABEL_GROUPS: Final[MappingProxyType[str, LabelGroup]] = MappingProxyType(
    {label: LabelGroup.EXPLICIT for label in EXPLICIT_LABELS}
    | {label: LabelGroup.SUGGESTIVE for label in SUGGESTIVE_LABELS}
    | {label: LabelGroup.IGNORED for label in IGNORED_LABELS}
)


def group_of(label: str) -> LabelGroup:
    """The group of ``label``; raises ``ValueError`` for a label NudeNet does not have."""
    try:
        return LABEL_GROUPS[label]
    except KeyError:
        raise ValueError(f"unknown label {label!r} (not one of NudeNet's {len(NUDENET_LABELS)} labels)") from None
