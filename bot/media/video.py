"""Make a result video fit Discord's upload limit, and make the poster for embeds.

:func:`fit_video` keeps a file that is already small enough (and, for an MP4, already
H.264/yuv420p); otherwise it re-encodes it with
PyAV (FFmpeg ships in its wheels) to MP4/H.264, yuv420p, ``+faststart`` so Discord plays it
inline, lowering the bitrate first and then the resolution until it fits. GIF and MP4 are
decoded with PyAV, animated WebP with Pillow. Given the bytes, a file that fits is judged from
them (a GIF by walking its blocks, nothing decoded) and nothing is written to disk; only a
re-encode works on temporary files. :func:`poster_from_image` makes the embed's poster from the
prepared input (what the first frame shows), :func:`poster_frame` from the video's first frame.
Everything here is synchronous: call the ``*_async`` wrappers (``asyncio.to_thread``) from the
event loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageSequence

from bot.errors import JobFailed

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Discord upload limits by guild boost tier (guild.filesize_limit).
TIER_LIMITS = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}
DEFAULT_LIMIT = 10 * MIB
MIN_BITS_PER_PIXEL = 0.05  # below this H.264 turns to mush: shrink the picture instead
MAX_ATTEMPTS = 8
MIN_SIDE = 96


@dataclass(frozen=True)
class FittedVideo:
    """The file to post. Exactly one of ``data`` / ``path`` is set.

    ``format`` is ``gif``, ``mp4`` or ``webp`` (or what the input was when kept as is);
    ``reencoded`` tells whether it differs from the input.
    """

    data: bytes | None
    path: Path | None
    size: int
    format: str
    width: int
    height: int
    frames: int
    reencoded: bool

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def upload_limit(guild_premium_tier: int | None = None, interaction_limit: int | None = None) -> int:
    """Bytes Discord accepts: the interaction's own limit when known, else the guild tier's."""
    if interaction_limit:
        return int(interaction_limit)
    return TIER_LIMITS.get(guild_premium_tier or 0, TIER_LIMITS[3] if (guild_premium_tier or 0) > 3 else DEFAULT_LIMIT)


def sniff_format(head: bytes) -> str:
    """Container format from the first bytes: gif, webp, mp4, webm, png, or ``unknown``."""
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "unknown"


@dataclass(frozen=True)
class _Probe:
    format: str
    width: int
    height: int
    frames: int
    fps: Fraction
    codec: str = ""
    pix_fmt: str = ""

    @property
    def discord_playable(self) -> bool:
        """Whether Discord plays it inline as it is (an MP4 must be H.264 in yuv420p)."""
        if self.format == "mp4":
            return self.codec == "h264" and self.pix_fmt in ("yuv420p", "yuvj420p")
        return True


def _gif_probe(data: bytes) -> _Probe | None:
    """A GIF's size, frame count and rate from its blocks (no pixel decoded); None if it is not a
    well-formed GIF (the decoder then has the last word)."""
    try:
        if data[:6] not in (b"GIF87a", b"GIF89a"):
            return None
        width, height = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
        flags, pos, end = data[10], 13, len(data)
        if flags & 0x80:
            pos += 3 << ((flags & 7) + 1)  # global colour table
        frames = delay_cs = 0
        delay: int | None = None  # of the next frame, from its graphic control extension
        while pos < end:
            block = data[pos]
            if block == 0x3B:  # trailer
                break
            if block == 0x21:  # extension: a graphic control extension carries the frame's delay
                if data[pos + 1] == 0xF9 and data[pos + 2] == 4:
                    delay = int.from_bytes(data[pos + 4:pos + 6], "little")
                pos += 2
            elif block == 0x2C:  # image descriptor, local colour table, LZW code size
                frames += 1
                delay_cs += delay if delay is not None and delay >= 2 else 10  # FFmpeg's default for 0, 1 or none
                delay = None
                local = data[pos + 9]
                pos += 10 + ((3 << ((local & 7) + 1)) if local & 0x80 else 0) + 1
            else:
                return None
            while True:  # data sub-blocks up to the terminator
                size = data[pos]
                pos += 1 + size
                if size == 0:
                    break
        if not frames or not width or not height:
            return None
        fps = Fraction(frames * 100, delay_cs)
        return _Probe("gif", width, height, frames, _clamp_fps(fps.limit_denominator(1001)))
    except IndexError:
        return None


def _probe(source: Path | bytes) -> _Probe:
    """Format, size, frames and rate of a video file or its bytes."""
    if isinstance(source, bytes):
        fmt = sniff_format(source[:16])
        if fmt == "gif":
            quick = _gif_probe(source)
            if quick is not None:
                return quick
    else:
        with source.open("rb") as fh:
            fmt = sniff_format(fh.read(16))
    path: Path | io.BytesIO = io.BytesIO(source) if isinstance(source, bytes) else source
    if fmt == "webp":
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            total_ms = 0
            for frame in ImageSequence.Iterator(im):
                total_ms += int(frame.info.get("duration", 0) or 0)
            fps = Fraction(frames * 1000, total_ms) if total_ms > 0 else Fraction(8)
            return _Probe(fmt, im.width, im.height, frames, _clamp_fps(fps))
    with av.open(path if isinstance(path, io.BytesIO) else str(path), mode="r") as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        codec, pix_fmt = stream.codec_context.name or "", stream.codec_context.pix_fmt or ""
        frames, duration = 0, 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            frames += 1
            duration += packet.duration or 0
        seconds = float(duration * stream.time_base) if stream.time_base and duration else 0.0
        if seconds > 0:
            fps = Fraction(frames / seconds).limit_denominator(1001)
        elif stream.average_rate:
            fps = Fraction(stream.average_rate)
        else:
            fps = Fraction(8)
        return _Probe(fmt, width, height, frames, _clamp_fps(fps), codec, pix_fmt)


def _clamp_fps(fps: Fraction) -> Fraction:
    return min(max(fps, Fraction(1)), Fraction(60))


def _frames(path: Path, fmt: str) -> Iterator[av.VideoFrame]:
    if fmt == "webp":
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                yield av.VideoFrame.from_image(frame.convert("RGB"))
        return
    with av.open(str(path)) as container:
        yield from container.decode(video=0)


def _even(n: float) -> int:
    return max(2, int(n) // 2 * 2)


def _encode(src: Path, probe: _Probe, dest: Path, width: int, height: int, bitrate: int) -> int:
    """Encode ``src`` to H.264 MP4 at ``dest``; returns the number of frames written."""
    written = 0
    with av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=probe.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate
        stream.options = {
            "preset": "veryfast",
            "maxrate": str(bitrate),
            "bufsize": str(bitrate * 2),
            "profile": "high",
        }
        stream.codec_context.time_base = 1 / probe.fps
        for frame in _frames(src, probe.format):
            img = frame.reformat(width=width, height=height, format="yuv420p")
            img.pts = written
            img.time_base = stream.codec_context.time_base
            for packet in stream.encode(img):
                out.mux(packet)
            written += 1
        for packet in stream.encode():
            out.mux(packet)
    return written


def fit_video(
    source: Path | bytes,
    limit_bytes: int,
    *,
    dest: Path | None = None,
    max_side: int = 1280,
) -> FittedVideo:
    """Return the video unchanged if it fits ``limit_bytes``, else an MP4 re-encode that does.

    An MP4 that fits but is not H.264/yuv420p (h265, 10-bit...) is re-encoded too, since
    Discord would not play it inline; an H.264 MP4 as VHS writes it is kept byte for byte.

    ``source`` is a path or the bytes. The result is written to ``dest`` when given
    (``FittedVideo.path``), otherwise returned in memory (``FittedVideo.data``); a path input
    that already fits is returned as that path. Bytes that fit are judged in memory (nothing
    written, a GIF not even decoded). Raises :class:`JobFailed` when even the smallest encode is
    too big. Sync: use :func:`fit_video_async` from the event loop.
    """
    data: bytes | None = None
    path: Path | None = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        size = len(data)
        probe = _probe_or_fail(data)
    else:
        path = Path(source)
        size = path.stat().st_size
        probe = _probe_or_fail(path)
    if size <= limit_bytes and not probe.discord_playable:
        log.info("fit_video: %s %s/%s fits but Discord would not play it inline; re-encoding", probe.format, probe.codec, probe.pix_fmt)
    elif size <= limit_bytes:
        if path is not None:
            return FittedVideo(None, path, size, probe.format, probe.width, probe.height, probe.frames, False)
        assert data is not None
        if dest is not None:
            Path(dest).write_bytes(data)
            return FittedVideo(None, Path(dest), size, probe.format, probe.width, probe.height, probe.frames, False)
        return FittedVideo(data, None, size, probe.format, probe.width, probe.height, probe.frames, False)
    with tempfile.TemporaryDirectory(prefix="fitvideo-") as tmp_dir:
        tmp = Path(tmp_dir)
        if path is not None:
            src = path
        else:
            src = tmp / "input.bin"
            src.write_bytes(data or b"")

        seconds = max(probe.frames / float(probe.fps), 0.1)
        budget = int(limit_bytes * 0.9) - 4096 - 40 * probe.frames  # container overhead
        full_bitrate = max(int(budget * 8 / seconds), 50_000)
        scale = min(1.0, max_side / max(probe.width, probe.height))
        bitrate = full_bitrate
        out_path = tmp / "output.mp4"
        for attempt in range(1, MAX_ATTEMPTS + 1):
            width, height = _even(probe.width * scale), _even(probe.height * scale)
            bpp = bitrate / (width * height * float(probe.fps))
            if bpp < MIN_BITS_PER_PIXEL and min(width, height) > MIN_SIDE:
                scale *= max(0.5, math.sqrt(bpp / MIN_BITS_PER_PIXEL))
                width, height = _even(probe.width * scale), _even(probe.height * scale)
            try:
                frames = _encode(src, probe, out_path, width, height, bitrate)
            except (av.FFmpegError, OSError, ValueError) as exc:
                raise JobFailed("The result could not be converted for Discord.", detail=f"encode failed: {exc!r}") from exc
            out_size = out_path.stat().st_size
            log.info("fit_video attempt %d: %dx%d at %d b/s -> %d bytes (limit %d)", attempt, width, height, bitrate, out_size, limit_bytes)
            if out_size <= limit_bytes:
                if dest is not None:
                    shutil.move(str(out_path), dest)
                    return FittedVideo(None, Path(dest), out_size, "mp4", width, height, frames, True)
                return FittedVideo(out_path.read_bytes(), None, out_size, "mp4", width, height, frames, True)
            bitrate = max(int(bitrate * limit_bytes / out_size * 0.9), 20_000)
            if attempt >= 3:
                scale *= 0.8
        raise JobFailed(
            "The video is too big to post here, even after shrinking it.",
            detail=f"still over {limit_bytes} bytes after {MAX_ATTEMPTS} attempts",
        )


def _probe_or_fail(source: Path | bytes) -> _Probe:
    try:
        return _probe(source)
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError) as exc:
        raise JobFailed("The result file could not be read.", detail=f"probe failed: {exc!r}") from exc


POSTER_MAX_SIDE = 640  # Discord shows an embed image at most about 400 px wide
INPUT_POSTER_MAX_SIDE = 512  # half the prepared input's long side: a cheap 2x2 average
POSTER_QUALITY = 85


def poster_from_image(source: Path | bytes, *, max_side: int = INPUT_POSTER_MAX_SIDE) -> bytes | None:
    """The embed's poster from the job's prepared input (what the video's first frame shows): a
    JPEG of at most ``max_side`` px, a few dozen KB, so it costs the upload little (a 1024x576
    input becomes 512x288 by averaging 2x2 blocks, in about 10 ms). None when the image cannot be
    read (the input is gone): the caller falls back to :func:`poster_frame`."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im.draft("RGB", (max_side, max_side))
            rgb = im.convert("RGB")
    except (OSError, ValueError, EOFError) as exc:
        log.info("no poster from the input: %s", type(exc).__name__)
        return None
    factor = max(rgb.size) // max_side
    if factor > 1:
        rgb = rgb.reduce(factor)
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=POSTER_QUALITY)
    return buf.getvalue()


def poster_frame(source: Path | bytes, *, max_side: int = POSTER_MAX_SIDE) -> bytes:
    """The first frame as PNG bytes (for an embed's image), at most ``max_side`` px, so it takes
    little of the upload limit (a full 1024x576 PNG can weigh more than a megabyte)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:16])
    else:
        with Path(source).open("rb") as fh:
            head = fh.read(16)
    fmt = sniff_format(head)
    opener = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source)
    try:
        if fmt in ("gif", "webp", "png"):
            with Image.open(opener) as im:
                im.seek(0)
                first = im.convert("RGB")
        else:
            with av.open(opener if isinstance(opener, io.BytesIO) else str(opener), mode="r") as container:
                first = next(container.decode(video=0)).to_image()
    except (av.FFmpegError, OSError, ValueError, StopIteration, EOFError) as exc:
        raise JobFailed("The result file could not be read.", detail=f"poster frame failed: {exc!r}") from exc
    if max(first.size) > max_side:
        first.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    first.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


async def fit_video_async(source: Path | bytes, limit_bytes: int, **kwargs: object) -> FittedVideo:
    return await asyncio.to_thread(fit_video, source, limit_bytes, **kwargs)  # type: ignore[arg-type]


async def poster_frame_async(source: Path | bytes) -> bytes:
    return await asyncio.to_thread(poster_frame, source)
