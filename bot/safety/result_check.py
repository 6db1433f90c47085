"""The result check: sample frames of a generated video and judge them together.

:func:`sample_frames` decodes the original output file (GIF, MP4 or animated WebP; a still image
counts as one frame) and returns the first, middle and last frame (or more, evenly spaced) as RGB
arrays. GIF and MP4 are decoded with PyAV, animated WebP with Pillow, as :mod:`bot.media.video`
does. :func:`check_result` runs the detector on each sampled frame and combines them into one
verdict (highest score per label); each sampled frame goes to the detector (in a second thread
of its own) as soon as it is decoded, so a GIF's frames are decoded while the earlier ones are
being checked. Everything here is blocking: from the event loop call :func:`check_result_async`,
which does all of it in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import av
import numpy as np
from PIL import Image

from bot.safety.detector import RGBArray, SafetyDetector, to_rgb_array
from bot.safety.errors import UnreadableMedia
from bot.safety.verdict import Detections, Thresholds, Verdict, judge

DEFAULT_SAMPLES: Final = 3


@dataclass(frozen=True, slots=True, eq=False)
class SampledFrame:
    """Frame number ``index`` (from 0) of the video, as an RGB array."""

    index: int
    image: RGBArray


@dataclass(frozen=True, slots=True)
class FrameDetections:
    """What the detector found in frame ``index``."""

    index: int
    detections: Detections


@dataclass(frozen=True, slots=True)
class ResultCheck:
    """The verdict on a video (all sampled frames together), each sampled frame's detections,
    and how many frames the file has."""

    verdict: Verdict
    frames: tuple[FrameDetections, ...]
    total_frames: int


def sample_indices(total: int, samples: int = DEFAULT_SAMPLES) -> tuple[int, ...]:
    """``samples`` evenly spaced frame numbers from 0 to ``total - 1``, both included (all when fewer)."""
    if samples < 3:
        raise ValueError("sample at least 3 frames (first, middle and last)")
    if total <= samples:
        return tuple(range(total))
    return tuple(sorted({k * (total - 1) // (samples - 1) for k in range(samples)}))


def _is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


FrameSink = Callable[[SampledFrame], None]


def _sample_webp(path: Path, samples: int, sink: FrameSink) -> tuple[list[SampledFrame], int]:
    with Image.open(path) as im:
        total = int(getattr(im, "n_frames", 1))
        wanted = sample_indices(total, samples)
        frames = []
        for index in wanted:
            im.seek(index)
            frames.append(SampledFrame(index, to_rgb_array(im)))
            sink(frames[-1])
        return frames, total


def _sample_av(path: Path, samples: int, sink: FrameSink) -> tuple[list[SampledFrame], int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total = sum(1 for packet in container.demux(stream) if packet.size)
    wanted = set(sample_indices(total, samples))
    frames: list[SampledFrame] = []
    last: tuple[int, av.VideoFrame] | None = None
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames.append(SampledFrame(index, _frame_array(frame)))
                sink(frames[-1])
            last = (index, frame)
    if last is None:
        return [], 0
    if not frames or frames[-1].index != last[0]:
        # Fewer frames decoded than packets counted: the real last frame still counts.
        frames.append(SampledFrame(last[0], _frame_array(last[1])))
        sink(frames[-1])
    return frames, last[0] + 1


def _frame_array(frame: av.VideoFrame) -> RGBArray:
    array = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(array, dtype=np.uint8)


def sample_frames(path: Path | str, samples: int = DEFAULT_SAMPLES,
                  sink: FrameSink | None = None) -> tuple[list[SampledFrame], int]:
    """The sampled frames (first, middle, last for 3) and the file's frame count. Blocking.
    ``sink`` is given each sampled frame as soon as it is decoded.

    Raises :class:`UnreadableMedia` when the file cannot be decoded or has no frames.
    """
    path = Path(path)
    give = sink or (lambda frame: None)
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
        frames, total = _sample_webp(path, samples, give) if _is_webp(head) else _sample_av(path, samples, give)
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError, SyntaxError) as exc:
        raise UnreadableMedia(f"cannot decode {path.name}: {exc.__class__.__name__}: {exc}") from exc
    if not frames:
        raise UnreadableMedia(f"{path.name} has no frames")
    return frames, total


def check_result(
    detector: SafetyDetector, path: Path | str, thresholds: Thresholds, *, samples: int = DEFAULT_SAMPLES
) -> ResultCheck:
    """Sample ``path``'s frames, detect on each (as each is decoded), judge them together (max per label). Blocking."""
    pending: list[tuple[int, Future[Detections]]] = []
    try:
        _frames, total = sample_frames(path, samples, lambda frame: pending.append(
            (frame.index, _detector_thread().submit(detector.detect, frame.image))))
    except BaseException:
        for _index, future in pending:
            future.cancel()
        raise
    found = tuple(FrameDetections(index, future.result()) for index, future in pending)
    verdict = judge((item.detections for item in found), thresholds)
    return ResultCheck(verdict=verdict, frames=found, total_frames=total)


_detector_executor: ThreadPoolExecutor | None = None
_detector_lock = threading.Lock()


def _detector_thread() -> ThreadPoolExecutor:
    """The one thread the result check's detections run in, beside the thread that decodes."""
    global _detector_executor
    with _detector_lock:
        if _detector_executor is None:
            _detector_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="safety-detect")
        return _detector_executor


async def check_result_async(
    detector: SafetyDetector, path: Path | str, thresholds: Thresholds, *, samples: int = DEFAULT_SAMPLES
) -> ResultCheck:
    """:func:`check_result` in a worker thread (decoding and detection), so the event loop keeps running."""
    return await asyncio.to_thread(check_result, detector, path, thresholds, samples=samples)
