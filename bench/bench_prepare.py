"""Benchmark (not a test): prepare a 12 MP JPEG for the workflow and print the median time.

Run: ``.venv/bin/python bench/bench_prepare.py [--runs N]``. Goal: median under 150 ms.
The picture is photo-like (gradients plus grain) at 4000x3000, JPEG quality 90.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from bot.media.images import prepare_image  # noqa: E402


def make_jpeg(size: tuple[int, int] = (4000, 3000)) -> bytes:
    w, h = size
    rgb = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((w, h)),
            Image.radial_gradient("L").resize((w, h)),
            Image.effect_noise((w, h), 24),
        ),
    )
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--fit", default="crop", choices=("crop", "pad", "stretch"))
    args = parser.parse_args(argv)
    data = make_jpeg()
    prepare_image(data, fit=args.fit)  # warm-up
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        prepared = prepare_image(data, fit=args.fit)
        times.append((time.perf_counter() - start) * 1000)
    median = statistics.median(times)
    sys.stdout.write(
        f"prepare_image 4000x3000 JPEG ({len(data) / 1e6:.1f} MB) -> {prepared.width}x{prepared.height} PNG "
        f"({len(prepared.png) / 1e6:.2f} MB): median {median:.1f} ms, min {min(times):.1f} ms, max {max(times):.1f} ms "
        f"over {args.runs} runs; goal < 150 ms: {'OK' if median < 150 else 'MISSED'}\n"
    )
    return 0 if median < 150 else 1


if __name__ == "__main__":
    raise SystemExit(main())
