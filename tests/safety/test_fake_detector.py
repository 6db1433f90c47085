"""The stand-in detector later Discord-level tests inject: chosen answers, deterministic, and a broken one."""

from __future__ import annotations

import numpy as np
import pytest

from bot.media.images import prepare_image
from bot.safety import (
    Detection,
    Level,
    SafetyDetector,
    SafetyUnavailable,
    Thresholds,
    check_input,
    check_input_async,
    decode_image,
)
from standins.fake_safety import (
    EXPLICIT_MARKER,
    SUGGESTIVE_MARKER,
    FakeSafetyDetector,
    image_key,
    marker_image,
)
from tests.safety.conftest import photo, photo_path


def png(colour: tuple[int, int, int], size: tuple[int, int] = (800, 600)) -> bytes:
    import io

    buf = io.BytesIO()
    marker_image(colour, size).save(buf, format="PNG")
    return buf.getvalue()


async def test_markers_survive_the_bots_image_preparation() -> None:
    fake = FakeSafetyDetector.with_markers()
    assert isinstance(fake, SafetyDetector) and not fake.loaded
    await fake.load()
    for colour, level in ((EXPLICIT_MARKER, Level.EXPLICIT), (SUGGESTIVE_MARKER, Level.SUGGESTIVE), ((20, 200, 20), Level.CLEAN)):
        for fit in ("crop", "pad"):
            prepared = prepare_image(png(colour), fit=fit)
            verdict = await check_input_async(fake, prepared.png, Thresholds())
            assert verdict.level is level, (colour, fit)
    assert len(fake.calls) == 6 and fake.calls[0][2] == EXPLICIT_MARKER


def test_by_hash_wins_over_colour_and_default_is_used_otherwise() -> None:
    astronaut = photo("astronaut")
    chosen = (Detection("BUTTOCKS_EXPOSED", 0.7),)
    fake = FakeSafetyDetector(default=(Detection("FACE_MALE", 0.9),), loaded=True)
    fake.set_hash(astronaut, chosen)
    assert fake.detect(astronaut).items == chosen
    assert check_input(fake, astronaut, Thresholds()).level is Level.EXPLICIT
    other = decode_image(photo_path("coffee").read_bytes())
    assert [d.label for d in fake.detect(other).items] == ["FACE_MALE"]
    assert image_key(astronaut) != image_key(np.ascontiguousarray(astronaut[:, ::-1]))


def test_nearest_marker_within_tolerance() -> None:
    fake = FakeSafetyDetector(by_colour={(250, 0, 0): (Detection("ANUS_EXPOSED", 0.8),)}, tolerance=10, loaded=True)
    near = np.full((8, 8, 3), (243, 6, 4), np.uint8)
    far = np.full((8, 8, 3), (230, 0, 0), np.uint8)
    assert [d.label for d in fake.detect(near).items] == ["ANUS_EXPOSED"]
    assert fake.detect(far).items == ()


async def test_failing_variant() -> None:
    broken = FakeSafetyDetector(fail_load="cannot load the NudeNet model 320n.onnx: corrupt")
    with pytest.raises(SafetyUnavailable, match="corrupt"):
        await broken.load()
    assert not broken.loaded and broken.load_calls == 1
    with pytest.raises(SafetyUnavailable):
        broken.detect(np.zeros((4, 4, 3), np.uint8))


def test_unloaded_fake_refuses_to_detect_like_the_real_one() -> None:
    with pytest.raises(SafetyUnavailable, match="not loaded"):
        FakeSafetyDetector().detect(np.zeros((4, 4, 3), np.uint8))


def test_unknown_labels_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        FakeSafetyDetector(default=(Detection("NUDITY", 0.9),))
