"""The result check: first, middle and last frame of a real clip (MP4, GIF, WebP), judged together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.safety import (
    Level,
    NudeNetDetector,
    RGBArray,
    Thresholds,
    UnreadableMedia,
    check_result,
    check_result_async,
    sample_frames,
)
from bot.safety.result_check import sample_indices
from standins.fake_safety import EXPLICIT_MARKER, SUGGESTIVE_MARKER, FakeSafetyDetector
from tests.safety.conftest import photo, write_mp4, write_pillow_animation

SIZE = (512, 288)


def clip() -> list[RGBArray]:
    """14 frames: the astronaut first, the mirrored astronaut in the middle (6), the cat last, and between
    them the coffee cup moving a little (identical frames would be merged by GIF and WebP encoders)."""
    astronaut, coffee, cat = (photo(name, SIZE) for name in ("astronaut", "coffee", "chelsea"))
    frames = [np.ascontiguousarray(np.roll(coffee, 4 * i, axis=1)) for i in range(14)]
    frames[0], frames[6], frames[13] = astronaut, np.ascontiguousarray(astronaut[:, ::-1]), cat
    return frames


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("clips") / "clip.mp4", clip())


@pytest.mark.parametrize(
    ("total", "samples", "indices"),
    [(14, 3, (0, 6, 13)), (25, 3, (0, 12, 24)), (3, 3, (0, 1, 2)), (2, 3, (0, 1)), (1, 3, (0,)), (0, 3, ()),
     (14, 5, (0, 3, 6, 9, 13))],
)
def test_sample_indices(total: int, samples: int, indices: tuple[int, ...]) -> None:
    assert sample_indices(total, samples) == indices


def test_fewer_than_three_samples_is_refused() -> None:
    with pytest.raises(ValueError):
        sample_indices(10, 2)


def test_real_clip_first_middle_and_last_frames(detector: NudeNetDetector, mp4: Path) -> None:
    result = check_result(detector, mp4, Thresholds())
    assert result.total_frames == 14
    assert [frame.index for frame in result.frames] == [0, 6, 13]
    first, middle, last = (frame.detections for frame in result.frames)
    assert (first.width, first.height) == SIZE
    face_x = []
    for found in (first, middle):
        faces = [d for d in found.items if d.label == "FACE_FEMALE"]
        assert faces and faces[0].score > 0.5
        face_x.append(faces[0].box.x + faces[0].box.width / 2)
    assert face_x[0] < SIZE[0] / 2 < face_x[1]  # the middle frame really is the mirrored one
    assert not any(d.label.startswith("FACE") for d in last.items)  # the cat
    assert result.verdict.level is Level.CLEAN and result.verdict.frames == 3
    assert dict(result.verdict.scores)["FACE_FEMALE"] == max(d.score for f in (first, middle) for d in f.items
                                                             if d.label == "FACE_FEMALE")


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_gif_and_animated_webp(detector: NudeNetDetector, tmp_path: Path, fmt: str) -> None:
    path = write_pillow_animation(tmp_path / f"clip.{fmt.lower()}", clip(), fmt)
    frames, total = sample_frames(path)
    assert total == 14 and [f.index for f in frames] == [0, 6, 13]
    assert all(f.image.shape == (SIZE[1], SIZE[0], 3) and f.image.dtype == np.uint8 for f in frames)
    result = check_result(detector, path, Thresholds())
    assert result.verdict.level is Level.CLEAN
    assert [any(d.label == "FACE_FEMALE" for d in f.detections.items) for f in result.frames] == [True, True, False]


def test_a_still_image_is_one_frame(detector: NudeNetDetector, tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "still.png"
    Image.fromarray(photo("astronaut")).save(path)
    result = check_result(detector, path, Thresholds())
    assert result.total_frames == 1 and [f.index for f in result.frames] == [0]


async def test_async_check(detector: NudeNetDetector, mp4: Path) -> None:
    result = await check_result_async(detector, mp4, Thresholds(), samples=5)
    assert [frame.index for frame in result.frames] == [0, 3, 6, 9, 13]


def solid(colour: tuple[int, int, int]) -> RGBArray:
    return np.full((SIZE[1], SIZE[0], 3), colour, dtype=np.uint8)


@pytest.mark.parametrize(("where", "level"), [(0, Level.EXPLICIT), (6, Level.EXPLICIT), (13, Level.EXPLICIT), (3, Level.CLEAN)])
def test_an_explicit_frame_counts_where_it_is_sampled(tmp_path: Path, where: int, level: Level) -> None:
    """Through a real H.264 encode: one magenta (explicit) frame among grey ones."""
    frames = [solid((128, 128, 128))] * 14
    frames[where] = solid(EXPLICIT_MARKER)
    path = write_mp4(tmp_path / "marked.mp4", frames)
    fake = FakeSafetyDetector.with_markers(loaded=True)
    assert check_result(fake, path, Thresholds()).verdict.level is level


def test_frames_combine_by_highest_score_per_label(tmp_path: Path) -> None:
    frames = [solid(SUGGESTIVE_MARKER)] + [solid((128, 128, 128))] * 12 + [solid(EXPLICIT_MARKER)]
    path = write_mp4(tmp_path / "both.mp4", frames)
    verdict = check_result(FakeSafetyDetector.with_markers(loaded=True), path, Thresholds()).verdict
    assert verdict.level is Level.EXPLICIT
    assert verdict.labels == (("FEMALE_BREAST_EXPOSED", 0.9), ("BELLY_EXPOSED", 0.45))


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"RIFF\x00\x00\x00\x00WEBPVP8 broken"])
def test_unreadable_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(UnreadableMedia):
        check_result(FakeSafetyDetector(loaded=True), path, Thresholds())
    with pytest.raises(UnreadableMedia, match="cannot decode"):
        sample_frames(tmp_path / "missing.mp4")
