"""Benchmark (not a test): the content-safety checks with the real NudeNet model, on CPU.

Run: ``python -m bench.bench_safety [--runs N] [--threads 1 2]``. Each thread count is measured in
a fresh process of its own (so RSS before/after loading the model belongs to it alone), and the
results are printed as one Markdown table. Goals on a 2-core machine:

* input check (decode a prepared 1024x576 PNG, detect, judge): median < 50 ms;
* result check (decode a 14-frame 1024x576 clip, detect on first/middle/last, judge): median < 150 ms.

Also: model load time and the RSS it costs (before load, after load, after the first image).
The pictures are the test photographs in ``tests/fixtures/images`` (a 1024x576 collage, and a
pan across it for the clip). Nothing is downloaded; the model is the one inside the nudenet wheel.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "tests" / "fixtures" / "images"
SIZE = (1024, 576)
GOAL_INPUT_MS = 50.0
GOAL_RESULT_MS = 150.0


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def collage(width: int, height: int) -> Any:
    """The three photographs side by side, ``width`` x ``height``, as a Pillow image."""
    from PIL import Image

    canvas = Image.new("RGB", (width, height))
    names = ("astronaut", "coffee", "chelsea")
    step = width // len(names)
    for i, name in enumerate(names):
        with Image.open(IMAGES / f"{name}.png") as im:
            canvas.paste(im.convert("RGB").resize((step, height), Image.Resampling.BICUBIC), (i * step, 0))
    return canvas


def prepared_png() -> bytes:
    buf = io.BytesIO()
    collage(*SIZE).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_clip(path: Path, fmt: str, frames: int = 14) -> Path:
    """A ``frames``-frame 1024x576 clip panning across a wider collage (MP4 with PyAV, GIF/WebP with Pillow)."""
    import av
    import numpy as np

    wide = np.asarray(collage(SIZE[0] + 4 * frames, SIZE[1]))
    pictures = [np.ascontiguousarray(wide[:, 4 * i : 4 * i + SIZE[0]]) for i in range(frames)]
    if fmt == "mp4":
        with av.open(str(path), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=8)
            stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
            for array in pictures:
                for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    else:
        from PIL import Image

        images = [Image.fromarray(array) for array in pictures]
        images[0].save(path, format=fmt.upper(), save_all=True, append_images=images[1:], duration=125, loop=0)
    return path


def timed(fn: Callable[[], object], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def worker(threads: int, runs: int) -> dict[str, Any]:
    """One fresh process: load the model with ``threads`` intra-op threads and time the checks."""
    sys.path.insert(0, str(REPO))
    from bot.safety import NudeNetDetector, Thresholds, check_input, check_result, decode_image

    thresholds = Thresholds()
    png = prepared_png()
    array = decode_image(png)
    with tempfile.TemporaryDirectory(prefix="bench-safety-") as tmp:
        clips = {fmt: write_clip(Path(tmp) / f"clip.{fmt}", fmt) for fmt in ("mp4", "gif", "webp")}
        rss_before = rss_mb()
        detector = NudeNetDetector(intra_op_threads=threads, inter_op_threads=1)
        start = time.perf_counter()
        detector.load_sync()
        load_ms = (time.perf_counter() - start) * 1000
        rss_loaded = rss_mb()
        detector.detect(array)
        rss_used = rss_mb()
        rows: dict[str, list[float]] = {
            "detect only (1024x576 RGB array)": timed(lambda: detector.detect(array), runs),
            "input check (1024x576 PNG: decode + detect + judge)": timed(lambda: check_input(detector, png, thresholds), runs),
        }
        for fmt, path in clips.items():
            check = functools.partial(check_result, detector, path, thresholds)
            rows[f"result check (14-frame 1024x576 {fmt.upper()}, 3 frames)"] = timed(check, max(5, runs // 2))
        sizes = {fmt: path.stat().st_size for fmt, path in clips.items()}
    return {
        "threads": threads,
        "name": detector.name,
        "load_ms": load_ms,
        "rss_before": rss_before,
        "rss_loaded": rss_loaded,
        "rss_used": rss_used,
        "rows": rows,
        "clip_sizes": sizes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        sys.stdout.write(json.dumps(worker(args.worker, args.runs)) + "\n")
        return 0
    results = []
    for threads in args.threads:
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_safety", "--worker", str(threads), "--runs", str(args.runs)],
            cwd=REPO, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [
        f"Content-safety checks: {results[0]['name']}, CPU only, {os.cpu_count()} cores, {args.runs} runs "
        f"(result checks: {max(5, args.runs // 2)}).",
        "",
        "| threads | measure | median ms | p95 ms | goal |",
        "|---|---|---|---|---|",
    ]
    ok = True
    for result in results:
        for label, times in result["rows"].items():
            median = statistics.median(times)
            goal = GOAL_INPUT_MS if label.startswith("input") else GOAL_RESULT_MS if label.startswith("result") else None
            verdict = ""
            if goal is not None:
                met = median < goal
                ok &= met or result["threads"] != 1
                verdict = f"< {goal:.0f} ms: {'OK' if met else 'MISSED'}"
            lines.append(f"| {result['threads']} | {label} | {median:.1f} | {p95(times):.1f} | {verdict} |")
    lines += ["", "| threads | model load ms | RSS before MB | after load MB | after first image MB | cost MB |", "|---|---|---|---|---|---|"]
    for result in results:
        lines.append(
            f"| {result['threads']} | {result['load_ms']:.0f} | {result['rss_before']:.0f} | {result['rss_loaded']:.0f} "
            f"| {result['rss_used']:.0f} | {result['rss_used'] - result['rss_before']:.0f} |"
        )
    sizes = results[0]["clip_sizes"]
    lines += ["", "Clip sizes: " + ", ".join(f"{fmt.upper()} {size / 1e6:.2f} MB" for fmt, size in sizes.items()) + "."]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
