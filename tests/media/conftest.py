"""Image and video files made on the fly for media tests (big ones cached per session)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def photo(size: tuple[int, int]) -> Image.Image:
    """A photo-like RGB picture: smooth gradients plus a little grain."""
    w, h = size
    base = Image.linear_gradient("L").resize((w, h))
    other = Image.radial_gradient("L").resize((w, h))
    grain = Image.effect_noise((w, h), 12)
    return Image.merge("RGB", (base, other, grain))


@pytest.fixture(scope="session")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 12000x8000 JPEG, made once per session."""
    path = tmp_path_factory.getbasetemp() / "big_12000x8000.jpg"
    if not path.exists():
        im = Image.linear_gradient("L").resize((12000, 8000)).convert("RGB")
        im.save(path, format="JPEG", quality=80)
    return path.read_bytes()


@pytest.fixture(scope="session")
def noisy_gif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~30 MB animated GIF of random noise (100 frames, 480x480, 10 fps)."""
    path = tmp_path_factory.getbasetemp() / "noise.gif"
    if not path.exists():
        side, palette = 480, bytes(range(256)) * 3
        frames = []
        for _ in range(100):
            frame = Image.frombytes("P", (side, side), os.urandom(side * side))
            frame.putpalette(palette)
            frames.append(frame)
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, optimize=False)
    return path
