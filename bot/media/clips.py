"""Clip surgery for "Extend" and "Boomerang": last frame, joining two clips, ping-pong order.

This module owns the file work around the frame-order rules of :mod:`bot.media.frame_order`
(re-exported here); it does not know about jobs, Discord or ComfyUI:

* :func:`last_frame` gives the last frame of an ORIGINAL output file (GIF, MP4/WebM, animated
  WebP or PNG, as VHS_VideoCombine, core SaveVideo and core SaveAnimatedWEBP write them), decoded
  as is, never re-encoded: the input image of an Extend. For a boomerang it gives the forward
  part's last frame instead (the turning point), where an Extend must continue.
* :func:`join_clips` decodes two clips and writes one in an Extend's frame order
  (:func:`~bot.media.frame_order.extend_frames`: the second clip without its first frame).
* :func:`make_boomerang` re-encodes a clip in VideoHelperSuite's ``pingpong`` order
  (:func:`~bot.media.frame_order.boomerang_frames`; the core-nodes workflow has no pingpong input).

Clips of different sizes are refused with :class:`ClipSizeMismatch`, never scaled (an Extend is
generated at the size of the clip it extends). The written file is H.264 MP4 in yuv420p by
default (``crf`` 19 like the VHS manifest; ``+faststart``); GIF and animated WebP are written
with Pillow the way VHS writes them. The caller still fits the result to Discord's upload limit
with :func:`bot.media.video.fit_video`.

Decoding follows :mod:`bot.media.video`'s split: GIF, WebP and PNG with Pillow (which composes
GIF/WebP frames the way they were written), everything else with PyAV. MP4 frames stay in their
decoded YUV form until they are encoded again, so an MP4 to MP4 join costs no colour round trip.
Everything here is synchronous and CPU bound: call the ``*_async`` wrappers (``asyncio.to_thread``)
from the event loop.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal, TypeAlias

import av
import numpy as np
import numpy.typing as npt
from av.video.stream import VideoStream
from PIL import Image, ImageSequence

from bot.errors import JobFailed
from bot.media.frame_order import (
    boomerang_frames,
    extend_frames,
    forward_last_index,
    forward_length,
    forward_part,
    join_frames,
)
from bot.media.video import sniff_format

__all__ = ["Clip", "ClipError", "ClipSizeMismatch", "ClipWriteFailed", "JoinedClip", "UnreadableClip", "WrittenClip",
           "boomerang_frames", "extend_frames", "forward_last_index", "forward_length", "forward_part", "join_clips",
           "join_clips_async", "join_frames", "last_frame", "last_frame_async", "last_frame_png",
           "last_frame_png_async", "make_boomerang", "make_boomerang_async", "read_clip", "write_frames"]

RGBArray: TypeAlias = npt.NDArray[np.uint8]
OutputFormat: TypeAlias = Literal["mp4", "gif", "webp"]

DEFAULT_CRF: Final = 19  # what the VHS manifest asks of libx264 for mp4 results
DEFAULT_PRESET: Final = "veryfast"
WEBP_QUALITY: Final = 80  # the core workflow's webp_quality
_PILLOW_FORMATS: Final = frozenset({"gif", "webp", "png"})
_FPS_SNAP: Final = 0.05  # a measured rate within 5 % of a whole number is that number


# --- errors -----------------------------------------------------------------------------------


class ClipError(JobFailed):
    """A clip could not be read, joined or written; ``user_message`` is for the member."""


class UnreadableClip(ClipError):
    """The file is not a clip we can decode, or has no frames."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__("The earlier result could not be read, so it cannot be extended.", detail=f"{path.name}: {reason}")
        self.path = path


class ClipSizeMismatch(ClipError):
    """The two clips of a join have different frame sizes (we refuse rather than scale)."""

    def __init__(self, first: tuple[int, int], second: tuple[int, int]) -> None:
        super().__init__(
            "The two clips have different sizes, so they cannot be joined.",
            detail=f"first clip {first[0]}x{first[1]}, second clip {second[0]}x{second[1]}",
        )
        self.first = first
        self.second = second


class ClipWriteFailed(ClipError):
    """Encoding the joined or boomerang clip failed."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__("The clips could not be put together.", detail=f"writing {path.name}: {reason}")
        self.path = path


# --- decoding ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Clip:
    """A decoded clip: RGB frames (H x W x 3, uint8), the frame rate and the container format."""

    frames: list[RGBArray]
    fps: Fraction
    format: str
    width: int
    height: int


@dataclass(frozen=True, slots=True, eq=False)
class _Decoded:
    frames: list[av.VideoFrame]
    fps: Fraction
    format: str
    width: int
    height: int


def _snap_fps(fps: Fraction) -> Fraction:
    fps = min(max(fps, Fraction(1)), Fraction(60))
    whole = round(fps)
    if whole >= 1 and abs(fps - whole) <= fps * Fraction(_FPS_SNAP):
        return Fraction(whole)
    return fps.limit_denominator(1001)


def _rgb_frame(image: Image.Image) -> av.VideoFrame:
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return av.VideoFrame.from_ndarray(np.asarray(rgb, dtype=np.uint8), format="rgb24")


def _decode_pillow(path: Path, fmt: str) -> _Decoded:
    frames: list[av.VideoFrame] = []
    total_ms = 0
    with Image.open(path) as im:
        size = im.size
        for frame in ImageSequence.Iterator(im):
            total_ms += int(frame.info.get("duration", 0) or 0)
            frames.append(_rgb_frame(frame))
    fps = Fraction(len(frames) * 1000, total_ms) if total_ms > 0 else Fraction(8)
    return _Decoded(frames, _snap_fps(fps), fmt, size[0], size[1])


def _stream_fps(stream: VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return _snap_fps(Fraction(rate))
    return Fraction(8)


def _decode_av(path: Path, fmt: str) -> _Decoded:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        frames = list(container.decode(stream))
    width, height = (frames[0].width, frames[0].height) if frames else (0, 0)
    return _Decoded(frames, fps, fmt, width, height)


def _decode(path: Path) -> _Decoded:
    try:
        with path.open("rb") as fh:
            fmt = sniff_format(fh.read(16))
        decoded = _decode_pillow(path, fmt) if fmt in _PILLOW_FORMATS else _decode_av(path, fmt)
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError, SyntaxError) as exc:
        raise UnreadableClip(path, f"{exc.__class__.__name__}: {exc}") from exc
    if not decoded.frames:
        raise UnreadableClip(path, "no frames")
    return decoded


def _to_rgb(frame: av.VideoFrame) -> RGBArray:
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def read_clip(path: Path | str) -> Clip:
    """Decode every frame of ``path`` to RGB, with its frame rate (snapped to a whole number when
    within 5 %; GIF stores delays in 1/100 s, so pass the job's own fps where it matters).
    Raises :class:`UnreadableClip`."""
    decoded = _decode(Path(path))
    return Clip([_to_rgb(f) for f in decoded.frames], decoded.fps, decoded.format, decoded.width, decoded.height)


def last_frame(path: Path | str, *, boomerang: bool = False) -> Image.Image:
    """The last frame of the original output file at ``path``, as decoded (RGB, no re-encode).

    With ``boomerang`` (the file was written in ping-pong order, by VHS's ``pingpong`` or by
    :func:`make_boomerang`), the forward part's last frame instead: index n-1 of 2n-2, where an
    Extend continues. Raises :class:`UnreadableClip` (also when a boomerang's frame count is odd).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            fmt = sniff_format(fh.read(16))
        if fmt in _PILLOW_FORMATS:
            with Image.open(path) as im:
                count = int(getattr(im, "n_frames", 1))
                im.seek(forward_last_index(count) if boomerang else count - 1)
                return im.convert("RGB")
        frames: list[av.VideoFrame] = []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if boomerang:
                    frames.append(frame)
                else:
                    frames[:] = [frame]
        if not frames:
            raise UnreadableClip(path, "no frames")
        chosen = frames[forward_last_index(len(frames))] if boomerang else frames[-1]
        return Image.fromarray(_to_rgb(chosen), mode="RGB")
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError, SyntaxError) as exc:
        raise UnreadableClip(path, f"{exc.__class__.__name__}: {exc}") from exc


def last_frame_png(path: Path | str, *, boomerang: bool = False) -> bytes:
    """:func:`last_frame` as PNG bytes, ready to be prepared and uploaded as an Extend's input."""
    buf = io.BytesIO()
    last_frame(path, boomerang=boomerang).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# --- encoding ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrittenClip:
    """A clip this module wrote: where, what format, how many frames at what rate and size."""

    path: Path
    format: OutputFormat
    frames: int
    fps: Fraction
    width: int
    height: int
    size: int  # bytes on disk

    @property
    def seconds(self) -> float:
        return self.frames / float(self.fps)


@dataclass(frozen=True, slots=True)
class JoinedClip(WrittenClip):
    """A joined clip, with how many frames each input gave (after dropping and boomerang cuts)."""

    first_frames: int = 0
    second_frames: int = 0
    boomerang: bool = False


def _even_rgb(frame: av.VideoFrame) -> av.VideoFrame:
    """yuv420p needs even sides: pad an odd one by repeating the edge (VHS pads too)."""
    array = _to_rgb(frame)
    pad_h, pad_w = array.shape[0] % 2, array.shape[1] % 2
    return av.VideoFrame.from_ndarray(np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge"), format="rgb24")


def _write_mp4(frames: Sequence[av.VideoFrame], out: Path, fps: Fraction, crf: int, preset: str) -> tuple[int, int]:
    odd = frames[0].width % 2 or frames[0].height % 2
    width, height = frames[0].width + frames[0].width % 2, frames[0].height + frames[0].height % 2
    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        stream.codec_context.time_base = Fraction(1) / fps
        for index, frame in enumerate(frames):
            source = _even_rgb(frame) if odd else frame
            # A no-op for decoded yuv420p frames; the encoder keeps its own reference of each
            # frame, so giving the same frame object twice (a boomerang) with new pts is safe.
            picture = source if source.format.name == "yuv420p" else source.reformat(format="yuv420p")
            picture.pts = index
            picture.time_base = stream.codec_context.time_base
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return width, height


def _write_pillow(frames: Sequence[av.VideoFrame], out: Path, fps: Fraction, fmt: OutputFormat) -> tuple[int, int]:
    images: Iterator[Image.Image] = (Image.fromarray(_to_rgb(f), mode="RGB") for f in frames)
    first = next(images)
    duration = round(1000 / float(fps))  # as VHS: round(1000 / frame_rate) ms per frame
    extra: dict[str, object] = {"disposal": 2} if fmt == "gif" else {"lossless": False, "quality": WEBP_QUALITY}
    first.save(out, format=fmt.upper(), save_all=True, append_images=images, duration=duration, loop=0, **extra)
    return first.width, first.height


def _write(frames: Sequence[av.VideoFrame], out: Path, fps: Fraction, fmt: OutputFormat, crf: int, preset: str) -> WrittenClip:
    if not frames:
        raise ClipWriteFailed(out, "no frames to write")
    try:
        if fmt == "mp4":
            width, height = _write_mp4(frames, out, fps, crf, preset)
        elif fmt in ("gif", "webp"):
            width, height = _write_pillow(frames, out, fps, fmt)
        else:
            raise ValueError(f"unknown output format {fmt!r}")
    except (av.FFmpegError, OSError) as exc:
        raise ClipWriteFailed(out, f"{exc.__class__.__name__}: {exc}") from exc
    return WrittenClip(out, fmt, len(frames), fps, width, height, out.stat().st_size)


def _fps(value: Fraction | float | int | None, fallback: Fraction) -> Fraction:
    if value is None:
        return fallback
    fps = Fraction(value).limit_denominator(1001)
    if fps <= 0:
        raise ValueError("fps must be positive")
    return fps


def _forward_or_refuse(decoded: _Decoded, path: Path) -> list[av.VideoFrame]:
    try:
        return forward_part(decoded.frames)
    except ValueError as exc:
        raise UnreadableClip(path, f"not a boomerang: {exc}") from exc


def join_clips(
    first: Path | str,
    second: Path | str,
    out: Path | str,
    *,
    fps: Fraction | float | int | None = None,
    drop_boundary: bool = True,
    first_boomerang: bool = False,
    second_boomerang: bool = False,
    boomerang: bool = False,
    format: OutputFormat = "mp4",
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
) -> JoinedClip:
    """Write ``first`` followed by ``second`` to ``out`` as one clip (see :func:`extend_frames`).

    ``drop_boundary`` drops ``second``'s first frame, which repeats ``first``'s last one. For the
    Extend of a boomerang pass ``first_boomerang=True`` (and ``second_boomerang=True`` if the
    extension was generated with ping-pong too) and ``boomerang=True``: the forward parts are
    joined and the result is ping-ponged again. ``fps`` defaults to ``first``'s measured rate;
    pass the job's own value when known. Clips of different sizes raise
    :class:`ClipSizeMismatch` (nothing is scaled); unreadable inputs :class:`UnreadableClip`;
    encoding failures :class:`ClipWriteFailed`. ``format`` is ``mp4`` (H.264, yuv420p, ``crf``),
    ``gif`` or ``webp``. Blocking: use :func:`join_clips_async` from the event loop.
    """
    out = Path(out)
    a, b = _decode(Path(first)), _decode(Path(second))
    if (a.width, a.height) != (b.width, b.height):
        raise ClipSizeMismatch((a.width, a.height), (b.width, b.height))
    a_frames = _forward_or_refuse(a, Path(first)) if first_boomerang else a.frames
    b_frames = _forward_or_refuse(b, Path(second)) if second_boomerang else b.frames
    frames = extend_frames(a_frames, b_frames, boomerang=boomerang, drop_boundary=drop_boundary)
    written = _write(frames, out, _fps(fps, a.fps), format, crf, preset)
    return JoinedClip(
        written.path,
        written.format,
        written.frames,
        written.fps,
        written.width,
        written.height,
        written.size,
        first_frames=len(a_frames),
        second_frames=len(b_frames) - (1 if drop_boundary and b_frames else 0),
        boomerang=boomerang,
    )


def make_boomerang(
    path: Path | str,
    out: Path | str,
    *,
    fps: Fraction | float | int | None = None,
    format: OutputFormat = "mp4",
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
) -> WrittenClip:
    """Re-encode the clip at ``path`` to ``out`` in ping-pong order (:func:`boomerang_frames`,
    VHS's ``pingpong``): for workflows whose output node cannot do it. ``fps`` defaults to the
    clip's measured rate. Blocking: use :func:`make_boomerang_async` from the event loop."""
    decoded = _decode(Path(path))
    return _write(boomerang_frames(decoded.frames), Path(out), _fps(fps, decoded.fps), format, crf, preset)


def write_frames(
    frames: Iterable[RGBArray],
    out: Path | str,
    *,
    fps: Fraction | float | int,
    format: OutputFormat = "mp4",
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
) -> WrittenClip:
    """Encode RGB frames (from :func:`read_clip`, reordered by the caller) to ``out``. Blocking."""
    pictures = [av.VideoFrame.from_ndarray(np.ascontiguousarray(f, dtype=np.uint8), format="rgb24") for f in frames]
    return _write(pictures, Path(out), _fps(fps, Fraction(8)), format, crf, preset)


# --- async wrappers ---------------------------------------------------------------------------


async def last_frame_async(path: Path | str, *, boomerang: bool = False) -> Image.Image:
    return await asyncio.to_thread(last_frame, path, boomerang=boomerang)


async def last_frame_png_async(path: Path | str, *, boomerang: bool = False) -> bytes:
    return await asyncio.to_thread(last_frame_png, path, boomerang=boomerang)


async def join_clips_async(
    first: Path | str,
    second: Path | str,
    out: Path | str,
    *,
    fps: Fraction | float | int | None = None,
    drop_boundary: bool = True,
    first_boomerang: bool = False,
    second_boomerang: bool = False,
    boomerang: bool = False,
    format: OutputFormat = "mp4",
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
) -> JoinedClip:
    return await asyncio.to_thread(
        join_clips, first, second, out, fps=fps, drop_boundary=drop_boundary, first_boomerang=first_boomerang,
        second_boomerang=second_boomerang, boomerang=boomerang, format=format, crf=crf, preset=preset,
    )


async def make_boomerang_async(
    path: Path | str,
    out: Path | str,
    *,
    fps: Fraction | float | int | None = None,
    format: OutputFormat = "mp4",
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
) -> WrittenClip:
    return await asyncio.to_thread(make_boomerang, path, out, fps=fps, format=format, crf=crf, preset=preset)
