"""Joining two clips frame by frame (Extend), so memory stays at a few frames however long the clips are.

:func:`join_streaming` writes the same frames as :func:`bot.media.clips.join_clips` (``first``, then
``second`` without its first frame, which repeats ``first``'s last one) but never holds a whole
clip: each frame is decoded, handed to the encoder and dropped. A third Extend of a 1024x576 result
joins some 100 frames; held at once (as :func:`~bot.media.clips.join_clips` does, which a boomerang
needs, for the way back) they take 150 MB (MP4) to 250 MB (GIF) more. Decoding follows
:mod:`bot.media.clips`: GIF, WebP and PNG with Pillow, everything else with PyAV. The written file
is an H.264 MP4 (yuv420p, ``crf`` 19, ``+faststart``; odd sides padded by repeating the edge), or a
GIF or animated WebP written with Pillow as VideoHelperSuite writes them (Pillow keeps a GIF's frames
as 8-bit palette images until it writes them: a quarter of their RGB size).

Errors are :mod:`bot.media.clips`'s: :class:`~bot.media.clips.UnreadableClip`,
:class:`~bot.media.clips.ClipSizeMismatch`, :class:`~bot.media.clips.ClipWriteFailed`. Blocking:
call :func:`join_streaming_async` from the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import numpy as np
from av.video.stream import VideoStream
from PIL import Image, ImageSequence

from bot.media.clips import (
    DEFAULT_CRF,
    DEFAULT_PRESET,
    WEBP_QUALITY,
    ClipSizeMismatch,
    ClipWriteFailed,
    JoinedClip,
    OutputFormat,
    UnreadableClip,
)
from bot.media.video import sniff_format

__all__ = ["join_streaming", "join_streaming_async"]

_PILLOW_FORMATS: Final = frozenset({"gif", "webp", "png"})
_READ_ERRORS = (av.FFmpegError, OSError, ValueError, IndexError, EOFError, SyntaxError)


def _frames(path: Path) -> Iterator[av.VideoFrame]:
    """Every frame of ``path``, decoded one at a time (RGB for Pillow's formats, as decoded for PyAV's)."""
    with path.open("rb") as fh:
        fmt = sniff_format(fh.read(16))
    if fmt in _PILLOW_FORMATS:
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                rgb = frame.convert("RGB")
                yield av.VideoFrame.from_ndarray(np.asarray(rgb, dtype=np.uint8), format="rgb24")
        return
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


class _Frames:
    """The joined order, counted as it goes: ``first``'s frames, then ``second``'s from its second on."""

    def __init__(self, first: Path, second: Path) -> None:
        self.paths = (first, second)
        self.counts = [0, 0]
        self.size: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[av.VideoFrame]:
        for part, path in enumerate(self.paths):
            try:
                for index, frame in enumerate(_frames(path)):
                    if self.size is None:
                        self.size = (frame.width, frame.height)
                    elif (frame.width, frame.height) != self.size:
                        raise ClipSizeMismatch(self.size, (frame.width, frame.height))
                    self.counts[part] += 1
                    if part == 1 and index == 0:
                        continue  # the shared frame: the first clip's last one, generated again
                    yield frame
            except _READ_ERRORS as exc:
                raise UnreadableClip(path, f"{exc.__class__.__name__}: {exc}") from exc
            if self.counts[part] == 0:
                raise UnreadableClip(path, "no frames")


def _padded(frame: av.VideoFrame) -> av.VideoFrame:
    """yuv420p needs even sides: pad an odd one by repeating the edge (as VHS does)."""
    array = frame.to_ndarray(format="rgb24")
    padding = ((0, array.shape[0] % 2), (0, array.shape[1] % 2), (0, 0))
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(np.pad(array, padding, mode="edge")), format="rgb24")


def _write_mp4(frames: Iterator[av.VideoFrame], out: Path, fps: Fraction, crf: int, preset: str) -> int:
    written = 0
    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream: VideoStream | None = None
        for frame in frames:
            odd = frame.width % 2 or frame.height % 2
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height = frame.width + frame.width % 2, frame.height + frame.height % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": preset}
                stream.codec_context.time_base = Fraction(1) / fps
            source = _padded(frame) if odd else frame
            picture = source if source.format.name == "yuv420p" else source.reformat(format="yuv420p")
            picture.pts = written
            picture.time_base = stream.codec_context.time_base
            container.mux(stream.encode(picture))
            written += 1
        if stream is not None:
            container.mux(stream.encode())
    return written


def _write_pillow(frames: Iterator[av.VideoFrame], out: Path, fps: Fraction, fmt: OutputFormat) -> int:
    written = 0

    def images() -> Iterator[Image.Image]:
        nonlocal written
        for frame in frames:
            written += 1
            yield Image.fromarray(frame.to_ndarray(format="rgb24"), mode="RGB")

    sequence = images()
    first = next(sequence, None)
    if first is None:
        return 0
    extra: dict[str, object] = {"disposal": 2} if fmt == "gif" else {"lossless": False, "quality": WEBP_QUALITY}
    first.save(out, format=fmt.upper(), save_all=True, append_images=sequence, duration=round(1000 / float(fps)),
               loop=0, **extra)
    return written


def join_streaming(first: Path | str, second: Path | str, out: Path | str, *, fps: Fraction | float | int,
                   format: OutputFormat = "mp4", crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET) -> JoinedClip:
    """Write ``first`` followed by ``second`` without its first frame to ``out``, frame by frame
    (see the module docstring). ``fps``: the clip's rate (the job's). Blocking."""
    out = Path(out)
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError("fps must be positive")
    frames = _Frames(Path(first), Path(second))
    try:
        count = _write_mp4(iter(frames), out, rate, crf, preset) if format == "mp4" else \
            _write_pillow(iter(frames), out, rate, format)
    except (av.FFmpegError, OSError) as exc:
        raise ClipWriteFailed(out, f"{exc.__class__.__name__}: {exc}") from exc
    if count == 0 or frames.size is None:
        raise ClipWriteFailed(out, "no frames to write")
    width, height = frames.size
    if format == "mp4":
        width, height = width + width % 2, height + height % 2
    return JoinedClip(out, format, count, rate, width, height, out.stat().st_size,
                      first_frames=frames.counts[0], second_frames=max(0, frames.counts[1] - 1))


async def join_streaming_async(first: Path | str, second: Path | str, out: Path | str, *, fps: Fraction | float | int,
                               format: OutputFormat = "mp4", crf: int = DEFAULT_CRF,
                               preset: str = DEFAULT_PRESET) -> JoinedClip:
    return await asyncio.to_thread(join_streaming, first, second, out, fps=fps, format=format, crf=crf, preset=preset)
