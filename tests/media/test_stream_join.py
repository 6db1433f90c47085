"""bot.media.stream_join: the frame-by-frame join writes the frames the in-memory join writes (the
first clip's, then the second's without its first), for every input and output format, refuses
clips of different sizes and unreadable files. (How little memory it holds: ``python -m
bench.bench_clips``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.media.clips import ClipSizeMismatch, UnreadableClip, join_clips
from bot.media.stream_join import join_streaming
from tests.media.test_clips import assert_order, means, write_clip

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("inputs", ["mp4", "gif", "webp"])
@pytest.mark.parametrize("output", ["mp4", "gif", "webp"])
def test_streaming_join_writes_the_in_memory_joins_frames(tmp_path: Path, inputs: str, output: str) -> None:
    first = write_clip(tmp_path / f"a.{inputs}", [0, 1, 2, 3])
    second = write_clip(tmp_path / f"b.{inputs}", [3, 4, 5, 6])
    joined = join_streaming(first, second, tmp_path / f"out.{output}", fps=8, format=output)
    assert (joined.frames, joined.first_frames, joined.second_frames) == (7, 4, 3)
    assert_order(joined.path, [0, 1, 2, 3, 4, 5, 6])
    reference = join_clips(first, second, tmp_path / f"ref.{output}", fps=8, format=output)
    assert len(means(reference.path)) == len(means(joined.path))
    assert (joined.width, joined.height, joined.format) == (reference.width, reference.height, output)


def test_mixed_formats_and_odd_sides_are_joined(tmp_path: Path) -> None:
    first = write_clip(tmp_path / "a.gif", [0, 1, 2], size=(95, 63))
    second = write_clip(tmp_path / "b.webp", [2, 3], size=(95, 63))
    joined = join_streaming(first, second, tmp_path / "out.mp4", fps=8)
    assert (joined.width, joined.height, joined.frames) == (96, 64, 4)  # padded to even sides, as VHS does
    assert_order(joined.path, [0, 1, 2, 3])


def test_clips_of_different_sizes_or_unreadable_are_refused(tmp_path: Path) -> None:
    first = write_clip(tmp_path / "a.mp4", [0, 1])
    with pytest.raises(ClipSizeMismatch):
        join_streaming(first, write_clip(tmp_path / "b.mp4", [1, 2], size=(64, 64)), tmp_path / "out.mp4", fps=8)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    with pytest.raises(UnreadableClip):
        join_streaming(first, broken, tmp_path / "out2.mp4", fps=8)

