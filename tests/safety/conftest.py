"""Shared safety fixtures: the real NudeNet detector (loaded once), the test photographs, clip makers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from bot.safety import NudeNetDetector, RGBArray

IMAGES = Path(__file__).resolve().parent.parent / "fixtures" / "images"
PHOTOS = ("astronaut", "chelsea", "coffee")


def photo_path(name: str) -> Path:
    return IMAGES / f"{name}.png"


def photo(name: str, size: tuple[int, int] | None = None) -> RGBArray:
    """A test photograph as an RGB array, resized to ``size`` (width, height) when given."""
    with Image.open(photo_path(name)) as im:
        rgb = im.convert("RGB")
    if size is not None:
        rgb = rgb.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def write_mp4(path: Path, frames: Sequence[RGBArray], fps: int = 8) -> Path:
    """An H.264 yuv420p MP4 of ``frames`` (all the same even size), made with PyAV."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_pillow_animation(path: Path, frames: Sequence[RGBArray], fmt: str) -> Path:
    """An animated GIF or WebP of ``frames``, made with Pillow (as ComfyUI's video nodes do)."""
    images = [Image.fromarray(array) for array in frames]
    extra = {"lossless": False, "quality": 90} if fmt == "WEBP" else {}
    images[0].save(path, format=fmt, save_all=True, append_images=images[1:], duration=125, loop=0, **extra)
    return path


@pytest.fixture(scope="session")
def detector() -> NudeNetDetector:
    """The real detector on the model inside the installed nudenet wheel, loaded once for the run."""
    loaded = NudeNetDetector()
    loaded.load_sync()
    return loaded
