"""Run ONE benchmark scenario in this process and write its numbers as JSON.

``python -m bench.scenario NAME --servers URL[,URL...] --work DIR --out FILE [--jobs N] [--members M]``

The runner (:mod:`bench.run`) starts each scenario in a fresh process, so the peak memory
(``ru_maxrss``) and the event loop measured are the bot's alone for that scenario; the ComfyUI
test servers are other processes started by the runner.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.common import peak_rss_mb, quiet_logs

SCENARIOS = ("overhead", "load", "discord", "baseline-threads", "baseline-sequential")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    urls = [u for u in args.servers.split(",") if u]
    work = Path(args.work)
    if args.name == "overhead":
        from bench import overhead

        return await overhead.run(urls, work, jobs=args.jobs)
    if args.name == "load":
        from bench import load

        return await load.run_service(urls, work, jobs=args.jobs, members=args.members, max_pending=args.max_pending)
    if args.name == "discord":
        from bench import load

        return await load.run_discord(urls, work, jobs=args.jobs, members=args.members, channels=args.channels,
                                      rate=args.rate, safety=args.safety)
    from bench import baseline

    mode = args.name.removeprefix("baseline-")
    return await asyncio.to_thread(baseline.run, urls, jobs=args.jobs, mode=mode)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scenario", description=__doc__)
    parser.add_argument("name", choices=SCENARIOS)
    parser.add_argument("--servers", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--channels", type=int, default=25)
    parser.add_argument("--rate", type=float, default=0.0, help="discord: slash commands per second (0 = burst)")
    parser.add_argument("--safety", default=None, help="discord: the guild's safety mode (default: the bot's)")
    parser.add_argument("--max-pending", type=int, default=None, help="COMFYUI_MAX_PENDING (default: the setting's)")
    args = parser.parse_args(argv)
    quiet_logs()
    start = time.perf_counter()
    result = asyncio.run(_run(args))
    result["scenario_seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = peak_rss_mb()
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
