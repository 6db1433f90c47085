"""Benchmark (not a test): the cost of Extend's join and of Boomerang (bot.media.clips), on CPU.

Run: ``python -m bench.bench_clips [--runs N] [--frames N] [--preset P] [--formats mp4 gif webp]``.
Builds 1024x576 clips panning across the test photographs in ``tests/fixtures/images`` (MP4 the
way VHS writes it: libx264, crf 19, yuv420p; GIF and WebP the way VHS writes them, with Pillow),
then times, median of ``--runs`` (5) after one warm-up run:

* joining two 25-frame clips into one 49-frame H.264 MP4 (the second clip's first frame dropped),
  frame by frame (:mod:`bot.media.stream_join`, what an Extend runs) and with every frame at hand
  (:func:`bot.media.clips.join_clips`, what an Extend of a boomerang runs), and for GIF and WebP
  inputs frame by frame into one of their own format (what an Extend of such a result writes);
* making a 48-frame boomerang MP4 of a 25-frame clip;
* reading the last frame of a clip (an Extend's input).

Prints one Markdown table (``--json FILE`` also writes the rows as JSON: ``python -m bench`` runs
this in a process of its own and reports the join). Nothing is downloaded; everything runs in a
temporary directory.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from bot.media.clips import DEFAULT_PRESET, join_clips, last_frame, make_boomerang
from bot.media.stream_join import join_streaming

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "tests" / "fixtures" / "images"
SIZE = (1024, 576)
FPS = 6


def pan(frames: int, offset: int) -> list[npt.NDArray[np.uint8]]:
    """``frames`` 1024x576 RGB frames panning 6 px a frame across the three photographs."""
    names = ("astronaut", "coffee", "chelsea")
    step = (SIZE[0] + 6 * (offset + frames)) // len(names) + 1
    wide = Image.new("RGB", (step * len(names), SIZE[1]))
    for i, name in enumerate(names):
        with Image.open(IMAGES / f"{name}.png") as im:
            wide.paste(im.convert("RGB").resize((step, SIZE[1]), Image.Resampling.BICUBIC), (i * step, 0))
    array = np.asarray(wide)
    return [np.ascontiguousarray(array[:, 6 * k : 6 * k + SIZE[0]]) for k in range(offset, offset + frames)]


def write_source(path: Path, frames: Sequence[npt.NDArray[np.uint8]], fmt: str) -> Path:
    """A clip as ComfyUI's output nodes write it (VHS: libx264 crf 19 / Pillow GIF and WebP)."""
    if fmt == "mp4":
        with av.open(str(path), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
            stream.options = {"crf": "19"}
            for array in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    else:
        images = [Image.fromarray(array) for array in frames]
        extra: dict[str, object] = {"disposal": 2, "compress_level": 4} if fmt == "gif" else {"lossless": False, "quality": 80}
        images[0].save(path, format=fmt.upper(), save_all=True, append_images=images[1:], duration=round(1000 / FPS), loop=0, **extra)
    return path


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    samples = []  # the caller's first call (for the result) was the warm-up
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


Row = tuple[str, str, int, list[float]]


def measure(runs: int, n: int, preset: str, formats: Sequence[str]) -> list[Row]:
    """(operation, result, output bytes, samples in ms) for each operation and input format."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-clips-") as tmp_dir:
        tmp = Path(tmp_dir)
        first_frames, second_frames = pan(n, 0), pan(n, n - 1)
        for fmt in formats:
            a = write_source(tmp / f"a.{fmt}", first_frames, fmt)
            b = write_source(tmp / f"b.{fmt}", second_frames, fmt)
            out, boom = tmp / f"joined-{fmt}.mp4", tmp / f"boom-{fmt}.mp4"
            stream = functools.partial(join_streaming, a, b, out, fps=FPS, preset=preset)
            join = functools.partial(join_clips, a, b, out, fps=FPS, preset=preset)
            boomerang = functools.partial(make_boomerang, a, boom, fps=FPS, preset=preset)
            streamed, joined, made = stream(), join(), boomerang()
            rows.append((f"join 2 x {n}-frame {fmt} -> mp4, frame by frame (Extend)", f"{streamed.frames} frames",
                         streamed.size, timed(stream, runs)))
            rows.append((f"join 2 x {n}-frame {fmt} -> mp4, frames at hand (Extend of a boomerang)",
                         f"{joined.frames} frames", joined.size, timed(join, runs)))
            if fmt != "mp4":  # what an Extend of a GIF or WebP result writes (then fitted like any result)
                same = functools.partial(join_streaming, a, b, tmp / f"joined.{fmt}", fps=FPS, format=fmt)
                kept = same()
                rows.append((f"join 2 x {n}-frame {fmt} -> {fmt}, frame by frame (Extend)", f"{kept.frames} frames",
                             kept.size, timed(same, runs)))
            rows.append((f"boomerang {n}-frame {fmt} -> mp4", f"{made.frames} frames", made.size, timed(boomerang, runs)))
            rows.append((f"last frame of {n}-frame {fmt}", "1 frame", 0, timed(functools.partial(last_frame, a), runs)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--preset", default=DEFAULT_PRESET, help="libx264 preset of the written MP4")
    parser.add_argument("--formats", nargs="+", default=["mp4", "gif", "webp"], choices=["mp4", "gif", "webp"], help="input formats")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here (for python -m bench)")
    args = parser.parse_args(argv)
    rows = measure(args.runs, args.frames, args.preset, args.formats)
    if args.json is not None:
        args.json.write_text(json.dumps({"preset": args.preset, "runs": args.runs, "frames": args.frames, "rows": [
            {"operation": name, "result": result, "size": size, "median_ms": statistics.median(samples),
             "min_ms": min(samples), "max_ms": max(samples)} for name, result, size, samples in rows]}),
            encoding="utf-8")
    print(f"bot.media.clips, {SIZE[0]}x{SIZE[1]}, libx264 preset {args.preset}, crf 19, median of {args.runs} runs\n")
    print("| operation | result | output size | median ms | min ms | max ms |")
    print("|---|---|---:|---:|---:|---:|")
    for name, result, size, samples in rows:
        size_text = f"{size / 1024:.0f} KiB" if size else "-"
        print(f"| {name} | {result} | {size_text} | {statistics.median(samples):.0f} | {min(samples):.0f} | {max(samples):.0f} |")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
