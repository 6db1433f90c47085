"""Run every benchmark and print one Markdown report (also written to ``bench/results/latest.md``).

``python -m bench [--quick] [--skip-discord] [--skip-latency]`` (or ``python bench/run.py``); ``python -m
bench soak ...`` runs the soak instead (:mod:`bench.soak`, see ``python -m bench soak --help``),
``python -m bench scale ...`` one bot against 64 ComfyUI test servers (:mod:`bench.scale`),
``python -m bench latency ...`` the latency legs through the whole bot (:mod:`bench.latency`) and
``python -m bench parity ...`` the bot against a direct client on one busy server
(:mod:`bench.parity`). The runner starts four
ComfyUI test servers in their own processes (step time 0, so the servers answer as fast as they
can and what is measured is the bot's cost), then runs each scenario in a fresh process of its
own (:mod:`bench.scenario`), so peak memory and loop lag belong to that scenario alone:

1. overhead per job (:mod:`bench.overhead`), 1 MB PNG and 12 MP JPEG inputs;
2. load (:mod:`bench.load`): 500 jobs from 100 members over the 4 servers, at the service level
   (with the default ``COMFYUI_MAX_PENDING`` and with 2), then through the Discord stand-in (the
   default safety mode, then again with ``/mod safety`` off: the bot's own CPU without NudeNet);
3. the example-script pattern (:mod:`bench.baseline`) on the same servers, same jobs;
4. Extend's join (:mod:`bench.bench_clips`): two 25-frame 1024x576 clips (MP4 and GIF, as
   ComfyUI's output nodes write them) into one 49-frame H.264 MP4, in a process of its own;
5. unless ``--skip-latency``: ``python -m bench latency --quick`` (the deliver and submit legs in
   each safety mode) and ``python -m bench parity --quick`` (bot / direct), each in a process of
   its own with its own servers; their reports are appended (and written as
   ``bench/results/latency-quick.md`` and ``parity-quick.md``).

These are benchmarks, not tests: nothing here fails a build; the report says OK/MISSED per goal.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "latest.md"

GOAL_LEG_MS = 50.0
GOAL_LAG_MS = 50.0
GOAL_RSS_MB = 250.0


@dataclass(frozen=True)
class Sizes:
    overhead_jobs: int
    load_jobs: int
    members: int
    channels: int
    sequential_jobs: int


FULL = Sizes(overhead_jobs=50, load_jobs=500, members=100, channels=25, sequential_jobs=500)
QUICK = Sizes(overhead_jobs=10, load_jobs=100, members=20, channels=10, sequential_jobs=100)


def _scenario(name: str, urls: list[str], work: Path, *extra: str) -> dict[str, Any]:
    out = work / f"{name}-{time.monotonic_ns()}.json"
    args = [sys.executable, "-m", "bench.scenario", name, "--servers", ",".join(urls), "--work", str(work),
            "--out", str(out), *extra]
    sys.stderr.write(f"bench: running {name} {' '.join(extra)}\n")
    completed = subprocess.run(args, cwd=REPO, check=False)  # noqa: S603 - our own module
    if completed.returncode != 0 or not out.exists():
        return {"error": f"scenario {name} exited with {completed.returncode}"}
    return json.loads(out.read_text(encoding="utf-8"))


def _clips(work: Path, *, runs: int) -> dict[str, Any]:
    """Extend's join, boomerang and last frame (:mod:`bench.bench_clips`), in a process of its own."""
    out = work / "clips.json"
    args = [sys.executable, "-m", "bench.bench_clips", "--runs", str(runs), "--formats", "mp4", "gif", "--json", str(out)]
    sys.stderr.write("bench: running bench.bench_clips\n")
    completed = subprocess.run(args, cwd=REPO, check=False, stdout=subprocess.DEVNULL)  # noqa: S603 - our own module
    if completed.returncode != 0 or not out.exists():
        return {"error": f"bench.bench_clips exited with {completed.returncode}"}
    return dict(json.loads(out.read_text(encoding="utf-8")))


def _ok(value: float, goal: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "OK" if value < goal else "MISSED"


def _f(value: Any, digits: int = 1) -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return f"{value:.{digits}f}"
    return "n/a"


def _ms(pair: Mapping[str, float]) -> str:
    return f"{_f(pair['median'])} / {_f(pair['p99'])}"


def render(results: Mapping[str, Mapping[str, Any]], sizes: Sizes, total_seconds: float) -> str:
    lines: list[str] = []
    add = lines.append
    add("## Benchmarks")
    add("")
    add(f"`python -m bench{' --quick' if sizes is QUICK else ''}`: 4 ComfyUI test servers in their own processes, "
        "step time 0; each scenario in a fresh process. Times in ms unless said; `median / p99`.")
    add("")

    overhead = results.get("overhead", {})
    add(f"### Overhead per job (one job at a time, {sizes.overhead_jobs} jobs per input after 3 warm-up jobs)")
    add("")
    if "overhead" in overhead:
        add("| Input | Image preparation (thread) | (a) request → `POST /prompt` sent, excl. preparation "
            "| (b) completion on the websocket → result handed to delivery | Goal: median < 50 ms per leg |")
        add("|---|---|---|---|---|")
        for row in overhead["overhead"]:
            verdict = "OK" if row["leg_a"]["median"] < GOAL_LEG_MS and row["leg_b"]["median"] < GOAL_LEG_MS else "MISSED"
            add(f"| {row['input']} ({row['input_bytes'] / 1e6:.2f} MB) | {_ms(row['prepare'])} | {_ms(row['leg_a'])} "
                f"| {_ms(row['leg_b'])} | {verdict} |")
        add("")
        add("Where the legs go (medians): (a) = checks, store, queue, dispatch, read input "
            "+ upload to ComfyUI + graph, store, `POST`; (b) = `/history` + state, download of the result, "
            "stat + store.")
        add("")
        add("| Input | (a) before upload | (a) upload | (a) upload → POST | (b) → download start | (b) download "
            "| (b) download → delivery |")
        add("|---|---|---|---|---|---|---|")
        for row in overhead["overhead"]:
            add(f"| {row['input']} | {_f(row['a_before_upload']['median'])} | {_f(row['a_upload']['median'])} "
                f"| {_f(row['a_upload_to_post']['median'])} | {_f(row['b_to_download']['median'])} "
                f"| {_f(row['b_download']['median'])} | {_f(row['b_after_download']['median'])} |")
    else:
        add(f"(not run: {overhead.get('error', 'skipped')})")
    add("")

    add(f"### Load: {sizes.load_jobs} jobs from {sizes.members} members over 4 servers")
    add("")
    add("| Run | Delivered exactly once | Wall (s) | Jobs/s | Loop lag p99 (goal < 50) | Peak RSS MB (goal < 250) "
        "| Websockets per server (goal 1) |")
    add("|---|---|---|---|---|---|---|")
    for label, key in (
        ("Job service, recording delivery, `COMFYUI_MAX_PENDING`=1 (default)", "load"),
        ("Job service, recording delivery, `COMFYUI_MAX_PENDING`=2", "load2"),
        (f"Whole bot via the Discord stand-in (`/animate` at {_rate(results)}, {sizes.channels} channels, "
         "real edit pacing)", "discord"),
    ):
        res = results.get(key, {})
        row = res.get("load_service") or res.get("load_discord")
        if row is None:
            add(f"| {label} | not run: {res.get('error', 'skipped')} | | | | | |")
            continue
        once = row["delivered_jobs"] == row["jobs"] and row["delivered_more_than_once"] == 0
        ws_ok = row["max_ws_connections_per_server"] == 1 and row["samples_with_a_socket_down"] == 0
        add(f"| {label} | {'yes' if once else 'NO'}: {row['delivered_jobs']}/{row['jobs']}, "
            f"{row['delivered_more_than_once']} twice | {_f(row['wall_seconds'])} | {_f(row['jobs_per_second'])} "
            f"| {_f(row['lag_p99_ms'])} ({_ok(row['lag_p99_ms'], GOAL_LAG_MS)}; max {_f(row['lag_max_ms'])}) "
            f"| {_f(res['peak_rss_mb'])} ({_ok(res['peak_rss_mb'], GOAL_RSS_MB)}; idle {_f(row['rss_idle_mb'])}) "
            f"| {row['max_ws_connections_per_server']} ({'OK' if ws_ok else 'MISSED'}) |")
    discord_row = results.get("discord", {}).get("load_discord")
    off_row = results.get("discord_off", {}).get("load_discord")
    if discord_row is not None:
        add("")
        add(f"Discord run (safety `strict`, the default): ack (defer) delay {_f(discord_row['ack_p50_ms'])} / {_f(discord_row['ack_p99_ms'])} ms, "
            f"{discord_row['not_acked']} not acked, bot CPU {_f(discord_row['cpu_ms_per_job'])} ms per job, "
            f"job states {discord_row['states']}, stand-in rule violations: "
            f"{dict(discord_row['violations']) or 'none'}, stand-in 429s: "
            f"{discord_row.get('rate_limited_buckets') or discord_row.get('rate_limited', 'n/a') or 'none'}, "
            f"{discord_row['rest_requests']} REST requests; "
            "loop lag and RSS there include the stand-in, which runs in the bot's process.")
    if off_row is not None:
        add("")
        add(f"Discord run again with safety `off` (no NudeNet): {off_row['delivered_jobs']}/{off_row['jobs']} delivered "
            f"in {_f(off_row['wall_seconds'])} s, bot CPU **{_f(off_row['cpu_ms_per_job'])} ms per job** "
            f"(goal < 25: {_ok(off_row['cpu_ms_per_job'], 25.0)}), ack delay {_f(off_row['ack_p50_ms'])} / "
            f"{_f(off_row['ack_p99_ms'])} ms, stand-in 429s: {off_row.get('rate_limited') or 'none'}.")
    add("")

    add("### Side by side with the example-script pattern (same servers, same jobs)")
    add("")
    add("| Pattern | Jobs | Done | Wall (s) | Jobs/s | Bot ÷ pattern (jobs/s) | Client CPU ms per job |")
    add("|---|---|---|---|---|---|---|")
    bot_row = results.get("load", {}).get("load_service")
    bot_rate = bot_row["jobs_per_second"] if bot_row else math.nan
    if bot_row:
        add(f"| Bot: job service, one websocket per server, fair queue | {bot_row['jobs']} | {bot_row['delivered_jobs']} "
            f"| {_f(bot_row['wall_seconds'])} | {_f(bot_rate)} | 1.00 | {_f(bot_row['cpu_ms_per_job'])} |")
    for label, key, inner in (
        ("Example: new websocket + blocking urllib per job, a thread per job", "threads", "baseline_threads"),
        ("Example: new websocket + blocking urllib per job, sequential", "sequential", "baseline_sequential"),
    ):
        row = results.get(key, {}).get(inner)
        if row is None:
            add(f"| {label} | not run: {results.get(key, {}).get('error', 'skipped')} | | | | | |")
            continue
        ratio = bot_rate / row["jobs_per_second"] if row["jobs_per_second"] else math.nan
        add(f"| {label} | {row['jobs']} | {row['completed']} ({row['failed']} failed) | {_f(row['wall_seconds'])} "
            f"| {_f(row['jobs_per_second'])} | {_f(ratio, 2)} | {_f(row['cpu_ms_per_job'])} |")
    add("")
    add("Client CPU = user + system CPU time of the bot's (or the script's) process during the run, per job; "
        "both prepare the image (Pillow) and build the same graph. The servers share the same CPUs.")
    add("")
    clips = results.get("clips", {})
    add("### Extend: joining two 25-frame 1024x576 clips (`bot.media.clips`, one thread)")
    add("")
    if "rows" in clips:
        add(f"libx264 preset {clips['preset']}, crf 19; median of {clips['runs']} runs after a warm-up.")
        add("")
        add("| Operation | Result | Output | Median ms | Min ms | Max ms |")
        add("|---|---|---|---|---|---|")
        for row in clips["rows"]:
            size = f"{row['size'] / 1024:.0f} KiB" if row["size"] else "-"
            add(f"| {row['operation']} | {row['result']} | {size} | {_f(row['median_ms'], 0)} | {_f(row['min_ms'], 0)} "
                f"| {_f(row['max_ms'], 0)} |")
    else:
        add(f"(not run: {clips.get('error', 'skipped')})")
    add("")
    add(f"Whole run: {total_seconds:.0f} s on {_cpu_count()} CPU(s).")
    return "\n".join(lines) + "\n"


def _rate(results: Mapping[str, Mapping[str, Any]]) -> str:
    rate = float(results.get("args", {}).get("discord_rate", 0.0))
    return f"{rate:g}/s" if rate > 0 else "once, all together"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from bench.soak import main as soak_main

        return soak_main(argv[1:])
    if argv[:1] == ["latency"]:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from bench.latency import main as latency_main

        return latency_main(argv[1:])
    if argv[:1] == ["parity"]:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from bench.parity import main as parity_main

        return parity_main(argv[1:])
    if argv[:1] == ["scale"]:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from bench.scale import main as scale_main

        return scale_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     epilog="The soak: python -m bench soak --help; "
                                            "the 64-server run: python -m bench scale --help; "
                                            "latency: python -m bench latency --help; parity: python -m bench parity --help",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller run (about a minute)")
    parser.add_argument("--discord-rate", type=float, default=50.0,
                        help="slash commands per second in the Discord run (0 = all at once; default 50)")
    parser.add_argument("--skip-discord", action="store_true", help="leave out the run through the Discord stand-in")
    parser.add_argument("--skip-latency", action="store_true",
                        help="leave out python -m bench latency --quick and python -m bench parity --quick")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench.common import ServerFarm

    start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {"args": {"discord_rate": args.discord_rate}}
    with tempfile.TemporaryDirectory(prefix="animate-bench-") as tmp:
        work = Path(tmp)
        farm = ServerFarm.start(4, work / "servers")
        try:
            urls = farm.urls
            load_args = ("--jobs", str(sizes.load_jobs), "--members", str(sizes.members))
            results["overhead"] = _scenario("overhead", urls, work, "--jobs", str(sizes.overhead_jobs))
            results["load"] = _scenario("load", urls, work, *load_args)
            results["load2"] = _scenario("load", urls, work, *load_args, "--max-pending", "2")
            if not args.skip_discord:
                results["discord"] = _scenario("discord", urls, work, *load_args, "--channels", str(sizes.channels),
                                               "--rate", str(args.discord_rate))
                results["discord_off"] = _scenario("discord", urls, work, *load_args, "--channels",
                                                   str(sizes.channels), "--rate", str(args.discord_rate),
                                                   "--safety", "off")
            results["threads"] = _scenario("baseline-threads", urls, work, "--jobs", str(sizes.load_jobs))
            results["sequential"] = _scenario("baseline-sequential", urls, work, "--jobs", str(sizes.sequential_jobs))
        finally:
            farm.stop()
        results["clips"] = _clips(work, runs=3 if args.quick else 5)
    if not args.skip_latency:
        for name in ("latency", "parity"):
            sys.stderr.write(f"bench: running python -m bench {name} --quick\n")
            (RESULTS.parent / f"{name}-quick.md").unlink(missing_ok=True)  # never a stale report
            subprocess.run([sys.executable, "-m", "bench", name, "--quick"], cwd=REPO, check=False,  # noqa: S603
                           stdout=subprocess.DEVNULL)
    report = render(results, sizes, time.perf_counter() - start)
    if not args.skip_latency:
        for name in ("latency", "parity"):
            path = RESULTS.parent / f"{name}-quick.md"
            report += "\n" + (path.read_text(encoding="utf-8") if path.exists() else f"({name}: no report)\n")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report, encoding="utf-8")
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
