"""Detections in, a verdict out: the data types and the pure function that judges them.

A detector returns :class:`Detections` (label, score, box per found body part). :func:`judge`
turns any number of them (one image, or every sampled frame of a video) into one
:class:`Verdict` with our own :class:`Thresholds`, taking the highest score per label:

* ``EXPLICIT`` when an explicit label scores at least ``thresholds.explicit``;
* else ``SUGGESTIVE`` when an explicit or suggestive label scores at least ``thresholds.suggestive``
  (an explicit label between the two thresholds is only suggestive);
* else ``CLEAN``. Ignored labels (faces, feet...) never count. See :mod:`bot.safety.labels`.

No I/O and no model here: it runs in microseconds and is tested with plain values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from bot.safety.labels import LABEL_GROUPS, LabelGroup, group_of

# NudeNet 3.4 keeps candidates scoring >= 0.2, then its NMS step (cv2.dnn.NMSBoxes with
# score_threshold 0.25) drops every box scoring 0.25 or less: no detection ever scores <= 0.25.
# A threshold below this would read as stricter than it can be, so Thresholds refuses one.
SCORE_FLOOR: Final[float] = 0.25


@dataclass(frozen=True, slots=True)
class Box:
    """A detection's box in the image's pixels: top-left corner, width and height."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Detection:
    """One body part found by the detector. ``label`` is one of NudeNet's labels; ``score`` is in 0..1."""

    label: str
    score: float
    box: Box = field(default_factory=lambda: Box(0, 0, 0, 0))

    def __post_init__(self) -> None:
        group_of(self.label)  # ValueError for an unknown label (a typo in a test double, say)
        if not (0.0 <= self.score <= 1.0) or math.isnan(self.score):
            raise ValueError(f"score must be between 0 and 1, not {self.score!r}")

    @property
    def group(self) -> LabelGroup:
        return LABEL_GROUPS[self.label]


@dataclass(frozen=True, slots=True)
class Detections:
    """What the detector found in one image (``width`` x ``height``), highest score first."""

    items: tuple[Detection, ...]
    width: int
    height: int

    def max_scores(self) -> dict[str, float]:
        """The highest score per label."""
        return _max_scores([self])


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Scores at which a label makes an image suggestive or explicit (``score >= threshold``).

    Both must lie in ``[SCORE_FLOOR, 1]`` (0.25: the detector reports nothing at or below it)
    and ``suggestive <= explicit``; otherwise ``ValueError``.

    Defaults, ``suggestive`` 0.40 and ``explicit`` 0.50, from what was measured: on ordinary photos
    (the test photographs and 28 edits of them) the highest raw score of any explicit label was
    0.25 (a coffee cup as ``BUTTOCKS_EXPOSED``) and of any suggestive label 0.17, while exposed
    parts reported on NudeNet's tracker with this model score 0.54-0.68 (issue #117), so 0.6 would
    let about half of them through. Refusing at 0.5 keeps a 0.25 margin over ordinary photos;
    0.4 for a spoiler keeps 0.15, and a wrong spoiler costs little.
    """

    suggestive: float = 0.40
    explicit: float = 0.50

    def __post_init__(self) -> None:
        for name in ("suggestive", "explicit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"{name} threshold must be a number, not {value!r}")
            if not (SCORE_FLOOR <= value <= 1.0):
                raise ValueError(
                    f"{name} threshold must be between {SCORE_FLOOR} (the detector reports nothing lower) and 1, not {value}"
                )
        if self.suggestive > self.explicit:
            raise ValueError(f"suggestive threshold ({self.suggestive}) must not be above explicit ({self.explicit})")


class Level(StrEnum):
    """How revealing an image is, mildest first (``severity`` orders them)."""

    CLEAN = "clean"
    SUGGESTIVE = "suggestive"
    EXPLICIT = "explicit"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY: Final[dict[Level, int]] = {Level.CLEAN: 0, Level.SUGGESTIVE: 1, Level.EXPLICIT: 2}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Our judgement of an image or video.

    ``labels``: every explicit or suggestive label that reached ``thresholds.suggestive``, with its
    highest score, highest first (empty when clean): what an audit line can show. ``scores``: the
    highest score of every label found, ignored ones included. ``frames``: how many images were judged.
    """

    level: Level
    labels: tuple[tuple[str, float], ...]
    thresholds: Thresholds
    scores: tuple[tuple[str, float], ...] = ()
    frames: int = 1

    @property
    def explicit(self) -> bool:
        return self.level is Level.EXPLICIT

    @property
    def suggestive(self) -> bool:
        return self.level is Level.SUGGESTIVE

    def summary(self) -> str:
        """One line for logs and audit posts: ``explicit: FEMALE_BREAST_EXPOSED 0.83, BELLY_EXPOSED 0.41``."""
        if not self.labels:
            return str(self.level)
        return f"{self.level}: " + ", ".join(f"{label} {score:.2f}" for label, score in self.labels)


def _max_scores(found: Iterable[Detections]) -> dict[str, float]:
    best: dict[str, float] = {}
    for detections in found:
        for item in detections.items:
            if item.score > best.get(item.label, -1.0):
                best[item.label] = item.score
    return best


def judge(found: Detections | Iterable[Detections], thresholds: Thresholds) -> Verdict:
    """The verdict on one image's detections, or on several frames' taken together (max per label)."""
    frames = [found] if isinstance(found, Detections) else list(found)
    best = _max_scores(frames)
    level = Level.CLEAN
    counted: list[tuple[str, float]] = []
    for label, score in best.items():
        group = LABEL_GROUPS[label]
        if group is LabelGroup.IGNORED or score < thresholds.suggestive:
            continue
        counted.append((label, score))
        if group is LabelGroup.EXPLICIT and score >= thresholds.explicit:
            level = Level.EXPLICIT
        elif level is Level.CLEAN:
            level = Level.SUGGESTIVE
    by_score = sorted(best.items(), key=lambda item: (-item[1], item[0]))
    return Verdict(
        level=level,
        labels=tuple(sorted(counted, key=lambda item: (-item[1], item[0]))),
        thresholds=thresholds,
        scores=tuple(by_score),
        frames=len(frames),
    )
