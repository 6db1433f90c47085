"""What every benchmark shares for its numbers and its report, without importing the bot.

The soak, scale and latency runs drive ``python -m bot run`` as a child process, so this module
stays free of the bot's own packages: a nearest-rank percentile, and writing a run's report as
Markdown and JSON into ``bench/results/`` (and to stdout).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_DIR", "percentile", "write_report"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def write_report(result: Mapping[str, Any], report: str, out: Path) -> int:
    """Write ``report`` (Markdown) to ``out`` and ``result`` beside it as JSON, print the report;
    the exit status: 0, or 1 when the run recorded an ``error``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    sys.stdout.write(report)
    return 0 if "error" not in result else 1
