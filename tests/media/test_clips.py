"""Extend and Boomerang cores: last frame, joining clips, VHS's ping-pong order (bot.media.clips).

Clips are built on the fly the way ComfyUI writes them: MP4/H.264 yuv420p with PyAV (core
SaveVideo uses PyAV; VHS runs ffmpeg's libx264 with crf 19), GIF and WebP with Pillow using
VHS_VideoCombine's arguments. Every frame has its own flat colour, so the order survives lossy
codecs: frames are compared by mean colour with a tolerance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from bot.media.clips import (
    ClipSizeMismatch,
    UnreadableClip,
    boomerang_frames,
    extend_frames,
    forward_last_index,
    forward_length,
    forward_part,
    join_clips,
    join_clips_async,
    join_frames,
    last_frame,
    last_frame_png,
    make_boomerang,
    read_clip,
    write_frames,
)
from bot.media.video import sniff_format

SIZE = (96, 64)
TOLERANCE = 6.0  # per channel, on the mean colour: H.264 at crf 19 and GIF palettes stay well inside


def colour(k: int) -> tuple[int, int, int]:
    """Frame k's colour: at least 24 apart from every other k < 60 in one channel."""
    return (24 + 24 * (k % 9), 24 + 24 * (k // 9 % 9), 200 - 20 * (k % 3))


def picture(k: int, size: tuple[int, int] = SIZE) -> Image.Image:
    return Image.new("RGB", size, colour(k))


def vhs_to_pingpong(inp: Sequence[Any]) -> Iterator[Any]:
    """VideoHelperSuite's own ``to_pingpong`` (videohelpersuite/nodes.py, lines 237-242 at
    Kosinkadink/ComfyUI-VideoHelperSuite 4ee72c0), copied verbatim to compare against."""
    if not hasattr(inp, "__getitem__"):
        inp = list(inp)
    yield from inp
    for i in range(len(inp) - 2, 0, -1):
        yield inp[i]


def write_clip(path: Path, indices: Sequence[int], *, fps: int = 8, size: tuple[int, int] = SIZE, lossless: bool = False) -> Path:
    """Frames of the given colour indices, in the format named by ``path``'s suffix."""
    images = [picture(k, size) for k in indices]
    fmt = path.suffix.lstrip(".")
    if fmt == "mp4":
        with av.open(str(path), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            stream.options = {"crf": "19"}
            for im in images:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(im), format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    elif fmt == "gif":  # VHS: disposal=2, compress_level=4, duration=round(1000 / frame_rate)
        images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, disposal=2, compress_level=4)
    elif fmt == "webp":  # VHS (lossless per the manifest) and core SaveAnimatedWEBP (quality)
        images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, lossless=lossless, quality=80)
    else:
        raise AssertionError(fmt)
    return path


def means(path: Path) -> list[np.ndarray]:
    return [frame.reshape(-1, 3).mean(axis=0) for frame in read_clip(path).frames]


def assert_order(path: Path, expected: Sequence[int]) -> None:
    got = means(path)
    assert len(got) == len(expected), f"{len(got)} frames, expected {len(expected)}"
    for position, (mean, k) in enumerate(zip(got, expected)):
        assert np.abs(mean - np.array(colour(k))).max() <= TOLERANCE, f"frame {position}: {mean} is not colour {k} {colour(k)}"


# --- pure order -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(0, 31))
def test_boomerang_is_vhs_pingpong_order(n: int) -> None:
    frames = list(range(n))
    assert boomerang_frames(frames) == list(vhs_to_pingpong(frames))


@pytest.mark.parametrize("n", range(2, 31))
def test_boomerang_has_2n_minus_2_frames_symmetric_about_n_minus_1(n: int) -> None:
    result = boomerang_frames(list(range(n)))
    assert len(result) == 2 * n - 2
    assert result[: n] == list(range(n))
    for j in range(n - 1):
        assert result[n - 1 + j] == result[n - 1 - j]
    assert forward_last_index(len(result)) == n - 1 and result[n - 1] == n - 1
    assert forward_part(result) == list(range(n))


def test_forward_part_of_short_and_impossible_counts() -> None:
    assert forward_part([7]) == [7] and forward_length(1) == 1
    assert forward_part([1, 2]) == [1, 2]
    for bad in (0, 3, 5, 25):
        with pytest.raises(ValueError):
            forward_length(bad)


def test_join_frames_drops_the_repeated_boundary_frame() -> None:
    assert join_frames([0, 1, 2], [2, 3, 4]) == [0, 1, 2, 3, 4]
    assert join_frames([0, 1, 2], [2, 3, 4], drop_boundary=False) == [0, 1, 2, 2, 3, 4]


def test_extend_of_a_boomerang_joins_forward_parts_then_boomerangs_again() -> None:
    first = boomerang_frames([0, 1, 2, 3])  # 0 1 2 3 2 1
    second = boomerang_frames([3, 4, 5, 6])  # generated from first's frame n-1 = 3
    assert first[forward_last_index(len(first))] == 3
    got = extend_frames(first, second, first_boomerang=True, second_boomerang=True, boomerang=True)
    assert got == [0, 1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1]
    assert got == boomerang_frames(forward_part(first) + forward_part(second)[1:])
    # An extension generated without ping-pong joins the same way.
    assert extend_frames(first, [3, 4, 5, 6], first_boomerang=True, boomerang=True) == got


# --- last frame -------------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "lossless"), [("gif", False), ("mp4", False), ("webp", False), ("webp", True)])
def test_last_frame_of_each_output_format(tmp_path: Path, suffix: str, lossless: bool) -> None:
    path = write_clip(tmp_path / f"clip.{suffix}", range(10, 24), lossless=lossless)
    image = last_frame(path)
    assert image.mode == "RGB" and image.size == SIZE
    array = np.asarray(image)
    assert np.abs(array.reshape(-1, 3).mean(axis=0) - np.array(colour(23))).max() <= TOLERANCE
    # Exactly the decoded pixels of the last frame (nothing re-encoded on the way).
    assert np.array_equal(array, read_clip(path).frames[-1])
    png = last_frame_png(path)
    assert sniff_format(png) == "png"


@pytest.mark.parametrize("suffix", ["gif", "mp4", "webp"])
def test_last_frame_of_a_boomerang_is_the_turning_point(tmp_path: Path, suffix: str) -> None:
    path = write_clip(tmp_path / f"boom.{suffix}", boomerang_frames(list(range(14))))
    mean = np.asarray(last_frame(path, boomerang=True)).reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - np.array(colour(13))).max() <= TOLERANCE
    mean_last = np.asarray(last_frame(path)).reshape(-1, 3).mean(axis=0)
    assert np.abs(mean_last - np.array(colour(1))).max() <= TOLERANCE


def test_unreadable_clip_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"junk" * 10)
    with pytest.raises(UnreadableClip):
        last_frame(bad)
    with pytest.raises(UnreadableClip):
        join_clips(bad, bad, tmp_path / "out.mp4")


def test_boomerang_with_odd_count_is_refused(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "odd.gif", range(5))
    with pytest.raises(UnreadableClip):
        last_frame(path, boomerang=True)


# --- join -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_suffix", "second_suffix", "out_format"),
    [("mp4", "mp4", "mp4"), ("gif", "gif", "mp4"), ("webp", "webp", "mp4"), ("gif", "mp4", "gif"), ("mp4", "webp", "webp")],
)
def test_join_has_len_a_plus_len_b_minus_1_frames_in_order(tmp_path: Path, first_suffix: str, second_suffix: str, out_format: Any) -> None:
    first = write_clip(tmp_path / f"a.{first_suffix}", range(0, 14))
    second = write_clip(tmp_path / f"b.{second_suffix}", range(13, 27))  # starts from a's last frame
    out = tmp_path / f"joined.{out_format}"
    joined = join_clips(first, second, out, fps=6, format=out_format)
    assert joined.path == out and joined.format == out_format
    assert joined.frames == 14 + 14 - 1 and (joined.first_frames, joined.second_frames) == (14, 13)
    assert (joined.width, joined.height) == SIZE and joined.size == out.stat().st_size
    assert joined.fps == 6 and joined.seconds == pytest.approx(27 / 6)
    assert_order(out, range(0, 27))


def test_joined_mp4_is_h264_yuv420p_faststart_at_the_given_fps(tmp_path: Path) -> None:
    first = write_clip(tmp_path / "a.mp4", range(0, 5), fps=8)
    second = write_clip(tmp_path / "b.mp4", range(4, 9), fps=8)
    out = tmp_path / "joined.mp4"
    joined = join_clips(first, second, out)
    assert joined.fps == 8  # the first clip's rate by default
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert stream.average_rate == 8
        assert sum(1 for _ in container.decode(stream)) == 9
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_join_without_dropping_the_boundary_keeps_both(tmp_path: Path) -> None:
    first = write_clip(tmp_path / "a.gif", range(0, 4))
    second = write_clip(tmp_path / "b.gif", range(3, 7))
    joined = join_clips(first, second, tmp_path / "j.mp4", drop_boundary=False)
    assert joined.frames == 8
    assert_order(joined.path, [0, 1, 2, 3, 3, 4, 5, 6])


def test_join_of_different_sizes_is_refused(tmp_path: Path) -> None:
    first = write_clip(tmp_path / "a.mp4", range(0, 4))
    second = write_clip(tmp_path / "b.mp4", range(3, 7), size=(64, 96))
    with pytest.raises(ClipSizeMismatch) as info:
        join_clips(first, second, tmp_path / "j.mp4")
    assert info.value.first == SIZE and info.value.second == (64, 96)
    assert "different sizes" in info.value.user_message
    assert not (tmp_path / "j.mp4").exists()


def test_extend_of_a_vhs_boomerang(tmp_path: Path) -> None:
    """forward(first) + forward(second)[1:], ping-ponged again; the Extend starts at frame n-1."""
    first = write_clip(tmp_path / "a.gif", boomerang_frames(list(range(0, 6))))  # VHS pingpong output
    start = last_frame(first, boomerang=True)
    assert np.abs(np.asarray(start).reshape(-1, 3).mean(axis=0) - np.array(colour(5))).max() <= TOLERANCE
    second = write_clip(tmp_path / "b.gif", boomerang_frames(list(range(5, 11))))
    joined = join_clips(first, second, tmp_path / "j.mp4", first_boomerang=True, second_boomerang=True, boomerang=True)
    expected = boomerang_frames(list(range(0, 11)))
    assert joined.boomerang and joined.frames == len(expected) == 20
    assert_order(joined.path, expected)


# --- boomerang --------------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "out_format"), [("mp4", "mp4"), ("webp", "mp4"), ("gif", "gif")])
def test_make_boomerang_order(tmp_path: Path, suffix: str, out_format: Any) -> None:
    n = 14
    source = write_clip(tmp_path / f"clip.{suffix}", range(n))
    out = tmp_path / f"boom.{out_format}"
    result = make_boomerang(source, out, fps=6, format=out_format)
    assert result.frames == 2 * n - 2 and result.fps == 6
    expected = list(vhs_to_pingpong(list(range(n))))
    assert_order(out, expected)
    got = means(out)
    for j in range(n - 1):  # symmetric about frame n-1
        assert np.abs(got[n - 1 + j] - got[n - 1 - j]).max() <= TOLERANCE


def test_odd_sized_frames_are_padded_for_h264(tmp_path: Path) -> None:
    frames = [np.full((63, 95, 3), colour(k), dtype=np.uint8) for k in range(4)]
    written = write_frames(frames, tmp_path / "odd.mp4", fps=Fraction(8))
    assert (written.width, written.height) == (96, 64) and written.frames == 4
    assert_order(written.path, range(4))


async def test_async_wrapper_joins_in_a_thread(tmp_path: Path) -> None:
    first = write_clip(tmp_path / "a.mp4", range(0, 3))
    second = write_clip(tmp_path / "b.mp4", range(2, 5))
    joined = await join_clips_async(first, second, tmp_path / "j.mp4", fps=8)
    assert joined.frames == 5
