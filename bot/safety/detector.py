"""The detector interface, the image type it takes, and the input check built on it.

A :class:`SafetyDetector` finds body parts in one image. The image is an **RGB array**:
a NumPy ``uint8`` array of shape ``(height, width, 3)``, channels in R, G, B order
(:data:`RGBArray`). That is what PyAV gives for video frames without a detour through Pillow,
and :func:`to_rgb_array` makes one from any Pillow image.

Threads: :meth:`SafetyDetector.load` is async and loads the model once, at start, in a worker
thread; :meth:`SafetyDetector.detect` is blocking and CPU-bound, so from the event loop call
:func:`detect_async` (``asyncio.to_thread``), or :func:`check_input_async`, which also decodes
the image in the thread.
"""

from __future__ import annotations

import asyncio
import io
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt
from PIL import Image

from bot.safety.errors import UnreadableMedia
from bot.safety.verdict import Detections, Thresholds, Verdict, judge

RGBArray: TypeAlias = npt.NDArray[np.uint8]
"""``(height, width, 3)`` ``uint8``, R, G, B."""


@runtime_checkable
class SafetyDetector(Protocol):
    """Finds body parts in an image. Implementations: ``NudeNetDetector``; ``standins.fake_safety`` for tests."""

    @property
    def name(self) -> str:
        """What runs, for logs and ``doctor`` (``nudenet 3.4.2 320n``)."""
        ...

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` has succeeded."""
        ...

    async def load(self) -> None:
        """Load the model once, in a worker thread. Raises ``SafetyUnavailable`` with a one-line reason.

        Calling it again after a success does nothing.
        """
        ...

    def detect(self, image: RGBArray) -> Detections:
        """What the model finds in ``image``. Blocking: call it in a worker thread.

        Raises ``SafetyUnavailable`` before a successful :meth:`load`, ``ValueError`` for an array
        that is not ``(h, w, 3)`` ``uint8``. Safe to call from several threads.
        """
        ...


def check_rgb_array(image: RGBArray) -> RGBArray:
    """``image`` if it is an ``(h, w, 3)`` ``uint8`` array of at least 1x1, else ``ValueError``."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an RGB array of shape (h, w, 3) and dtype uint8, got shape {shape} dtype {dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image: shape {image.shape}")
    return image


def to_rgb_array(image: Image.Image) -> RGBArray:
    """A Pillow image as an RGB array (other modes converted; alpha is dropped, as NudeNet does)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8)


def decode_image(data: bytes) -> RGBArray:
    """The first frame of an encoded image (PNG, JPEG, WebP, GIF...) as an RGB array.

    Raises :class:`UnreadableMedia`. Blocking.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)
            return to_rgb_array(im)
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableMedia(f"cannot decode the image: {exc.__class__.__name__}: {exc}") from exc


def check_input(detector: SafetyDetector, image: bytes | Image.Image | RGBArray, thresholds: Thresholds) -> Verdict:
    """Decode ``image`` if needed, run the detector, judge. Blocking: see :func:`check_input_async`.

    Pass the prepared image (``PreparedImage.png``), which is what gets animated.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        array = decode_image(bytes(image))
    elif isinstance(image, Image.Image):
        array = to_rgb_array(image)
    else:
        array = image
    return judge(detector.detect(array), thresholds)


async def detect_async(detector: SafetyDetector, image: RGBArray) -> Detections:
    """:meth:`SafetyDetector.detect` in a worker thread."""
    return await asyncio.to_thread(detector.detect, image)


async def check_input_async(
    detector: SafetyDetector, image: bytes | Image.Image | RGBArray, thresholds: Thresholds
) -> Verdict:
    """:func:`check_input` in a worker thread (decoding included), so the event loop keeps running."""
    return await asyncio.to_thread(check_input, detector, image, thresholds)
