"""A deterministic stand-in for the safety detector (implements ``bot.safety.SafetyDetector``).

:class:`FakeSafetyDetector` returns detections chosen by the test, looked up in this order:

1. by the image's content hash (:func:`image_key`): exact, for an array the test made itself;
2. by a marker colour: the pixel at the image's centre, matched within ``tolerance`` per channel,
   so it survives resizing, cropping, padding and a lossy video encode (a solid-colour image made
   with :func:`marker_image` stays that colour through the bot's preparation and ComfyUI's video);
3. otherwise ``default`` (nothing found).

:data:`EXPLICIT_MARKER` (magenta) and :data:`SUGGESTIVE_MARKER` (orange) are wired by
:meth:`FakeSafetyDetector.with_markers`, so a Discord-level test can post "an explicit input"
without any real photograph. ``FakeSafetyDetector(fail_load="...")`` is the detector whose model
fails to load. Every call is recorded in ``calls``.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np
from PIL import Image

from bot.safety.detector import RGBArray, check_rgb_array
from bot.safety.errors import SafetyUnavailable
from bot.safety.verdict import Box, Detection, Detections

Colour = tuple[int, int, int]

EXPLICIT_MARKER: Final[Colour] = (255, 0, 255)
SUGGESTIVE_MARKER: Final[Colour] = (255, 128, 0)
EXPLICIT_DETECTIONS: Final[tuple[Detection, ...]] = (Detection("FEMALE_BREAST_EXPOSED", 0.9, Box(10, 10, 50, 50)),)
SUGGESTIVE_DETECTIONS: Final[tuple[Detection, ...]] = (Detection("BELLY_EXPOSED", 0.45, Box(10, 10, 50, 50)),)


def image_key(image: RGBArray) -> str:
    """A hash of the array's shape and pixels (what ``by_hash`` is keyed by)."""
    digest = hashlib.sha256(repr(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def marker_image(colour: Colour, size: tuple[int, int] = (512, 512)) -> Image.Image:
    """A solid ``colour`` RGB image of ``size`` (width, height)."""
    return Image.new("RGB", size, colour)


def centre_colour(image: RGBArray) -> Colour:
    height, width = image.shape[:2]
    r, g, b = (int(v) for v in image[height // 2, width // 2])
    return (r, g, b)


class FakeSafetyDetector:
    """Returns the detections a test chose (by hash, then by centre colour, else ``default``).

    ``fail_load``: a reason; :meth:`load` then raises ``SafetyUnavailable(fail_load)`` and
    :meth:`detect` keeps raising it. ``loaded=True`` starts it loaded (no ``load()`` needed).
    """

    def __init__(
        self,
        *,
        by_colour: Mapping[Colour, Iterable[Detection]] | None = None,
        by_hash: Mapping[str, Iterable[Detection]] | None = None,
        default: Iterable[Detection] = (),
        tolerance: int = 12,
        fail_load: str | None = None,
        loaded: bool = False,
    ) -> None:
        self.by_colour = {colour: tuple(found) for colour, found in (by_colour or {}).items()}
        self.by_hash = {key: tuple(found) for key, found in (by_hash or {}).items()}
        self.default = tuple(default)
        self.tolerance = tolerance
        self.fail_load = fail_load
        self._loaded = loaded and fail_load is None
        self.load_calls = 0
        self.calls: list[tuple[int, int, Colour]] = []  # (width, height, centre colour) per detect
        self._lock = threading.Lock()

    @classmethod
    def with_markers(cls, *, loaded: bool = False, tolerance: int = 12) -> FakeSafetyDetector:
        """Magenta images are explicit (FEMALE_BREAST_EXPOSED 0.9), orange ones suggestive (BELLY_EXPOSED 0.45)."""
        return cls(
            by_colour={EXPLICIT_MARKER: EXPLICIT_DETECTIONS, SUGGESTIVE_MARKER: SUGGESTIVE_DETECTIONS},
            tolerance=tolerance,
            loaded=loaded,
        )

    @property
    def name(self) -> str:
        return "fake safety detector"

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(self) -> None:
        await asyncio.to_thread(self.load_sync)

    def load_sync(self) -> None:
        self.load_calls += 1
        if self.fail_load is not None:
            raise SafetyUnavailable(self.fail_load)
        self._loaded = True

    def set_hash(self, image: RGBArray, detections: Iterable[Detection]) -> None:
        """Return ``detections`` for exactly this array."""
        self.by_hash[image_key(image)] = tuple(detections)

    def detect(self, image: RGBArray) -> Detections:
        if self.fail_load is not None:
            raise SafetyUnavailable(self.fail_load)
        if not self._loaded:
            raise SafetyUnavailable("the fake safety detector is not loaded (call load() first)")
        image = check_rgb_array(image)
        height, width = int(image.shape[0]), int(image.shape[1])
        colour = centre_colour(image)
        with self._lock:
            self.calls.append((width, height, colour))
        found = self.by_hash.get(image_key(image)) if self.by_hash else None
        if found is None:
            found = self._by_colour(colour)
        return Detections(items=tuple(sorted(found, key=lambda d: -d.score)), width=width, height=height)

    def _by_colour(self, colour: Colour) -> tuple[Detection, ...]:
        best: tuple[int, tuple[Detection, ...]] | None = None
        for marker, found in self.by_colour.items():
            distance = max(abs(a - b) for a, b in zip(marker, colour))
            if distance <= self.tolerance and (best is None or distance < best[0]):
                best = (distance, found)
        return best[1] if best is not None else self.default
