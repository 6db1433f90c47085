"""How far one bot goes: one bot process, 64 ComfyUI test servers, 5,000 jobs from 500 members.

``python -m bench scale [--quick] [--servers N] [--jobs N] [--members M] [--in-flight K]``

The soak (:mod:`bench.soak`) at scale: ``python -m bot run`` as a child process logged into the
Discord stand-in (in this, the driver's, process), the ComfyUI test servers all in ONE separate
process on as many ports (:mod:`bench.server_host`, the ``shared`` layout), step time 0 so what is
measured is the bot's own cost. The bot runs with ``METRICS_ADDRESS`` set, as an operator at this
size would, and its ``/metrics`` is read at the end.

Reported: jobs delivered exactly once, jobs/s, bot CPU ms per job, bot RSS, event-loop lag p99
(the SIGUSR1 diagnostics' 10 ms timer over the measured phase), websockets per server (each test
server counts the websocket connections it accepted; the bot's metrics count reconnections), the
REST requests each job cost at Discord, and the submit and deliver legs from the bot's own
histograms. ``--quick``: 600 jobs from 100 members on 16 servers (a couple of minutes).
Report in ``bench/results/scale.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR, write_report

REPO = Path(__file__).resolve().parents[1]

FULL = {"servers": 64, "jobs": 5000, "members": 500, "in_flight_per_server": 4}
QUICK = {"servers": 16, "jobs": 600, "members": 100, "in_flight_per_server": 4}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile (0..1) of a Prometheus histogram from its cumulative ``(le, count)``
    buckets, interpolated inside the bucket as ``histogram_quantile`` does."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, count
    return lower


def read_metrics(text: str) -> dict[str, Any]:
    """What the report takes from the bot's ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {"ended": {}, "reconnects": 0.0, "servers_up": 0.0, "servers": 0, "refusals": 0.0,
                           "rate_limited": 0.0, "edit_failures": 0.0}
    histograms: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "animate_bot_jobs_ended_total" and value:
                out["ended"][labels["state"]] = out["ended"].get(labels["state"], 0) + int(value)
            elif name == "animate_bot_server_ws_reconnects_total":
                out["reconnects"] += value
            elif name == "animate_bot_server_up":
                out["servers_up"] += value
                out["servers"] += 1
            elif name == "animate_bot_refusals_total":
                out["refusals"] += value
            elif name == "animate_bot_discord_rate_limited_total":
                out["rate_limited"] += value
            elif name == "animate_bot_discord_edit_failures_total":
                out["edit_failures"] += value
            for base in ("animate_bot_submit_seconds", "animate_bot_deliver_seconds", "animate_bot_event_loop_lag",
                         "animate_bot_job_total_seconds"):
                if not name.startswith(base + "_"):
                    continue
                h = histograms.setdefault(base, {"buckets": {}, "sum": 0.0, "count": 0.0})
                if name == base + "_bucket":
                    le = float(labels["le"])
                    h["buckets"][le] = h["buckets"].get(le, 0.0) + value
                elif name == base + "_sum":
                    h["sum"] += value
                elif name == base + "_count":
                    h["count"] += value
    for base, h in histograms.items():
        short = base.removeprefix("animate_bot_")
        pairs = list(h["buckets"].items())
        out[short] = {"count": h["count"], "mean": h["sum"] / h["count"] if h["count"] else math.nan,
                      "p50": bucket_quantile(pairs, 0.50), "p99": bucket_quantile(pairs, 0.99)}
    return out


async def inspect_bot(metrics_url: str, server_urls: list[str]) -> dict[str, Any]:
    """The bot's /metrics and each test server's websocket counts."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(metrics_url) as resp:
            text = await resp.text()

        async def counts(url: str) -> dict[str, int]:
            async with session.get(url + "/_standin/websockets") as resp:
                data: dict[str, int] = await resp.json()
                return data

        sockets = await asyncio.gather(*(counts(url) for url in server_urls))
    opened = [s["opened"] for s in sockets]
    return {"metrics": read_metrics(text), "ws_opened": opened, "ws_open": [s["open"] for s in sockets]}


def _f(value: Any, digits: int = 1) -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return f"{value:,.{digits}f}"
    return "n/a"


def render(r: dict[str, Any], command: str) -> str:
    c, s = r["config"], r.get("settings", {})
    lines: list[str] = []
    add = lines.append
    add(f"### Scale: one bot, {c['servers']} ComfyUI servers, {c['jobs']:,} jobs from {c['members']} members")
    add("")
    if "error" in r:
        add(f"Not completed: {r['error']}")
        return "\n".join(lines) + "\n"
    env = r["env"]
    seen = r.get("inspected", {})
    m = seen.get("metrics", {})
    opened = seen.get("ws_opened", [])
    add(f"`{command}`: `python -m bot run` as a child process logged into the Discord stand-in (which runs in the "
        f"driver's process); {r['servers']} on {c['servers']} ports, step time 0. {c['members']} members over "
        f"{s['channels']} channels send `/animate` (frames 4, steps 3, a distinct 320x180 PNG each), "
        f"{s['in_flight']} jobs in flight at most; the first {s['warmup']} are warm-up. Bot settings: "
        f"`MAX_JOBS_PER_MEMBER`={env['MAX_JOBS_PER_MEMBER']}, `MAX_WAITING_JOBS`={env['MAX_WAITING_JOBS']} "
        f"(raised from 2 and 50 so the jobs in flight fit), `COMFYUI_MAX_PENDING`="
        f"{env.get('COMFYUI_MAX_PENDING', '1 (default)')}, `METRICS_ADDRESS` set (scraped once at the end), "
        "`LOG_LEVEL`=INFO, the rest default (real edit pacing, one gateway shard).")
    add("")
    once = r["delivered_jobs"] == r["jobs_sent"] and r["delivered_more_than_once"] == 0 \
        and r["result_messages_more_than_one"] == 0
    lag = r["diagnostics_right_after"]
    one_ws = bool(opened) and all(n == 1 for n in opened) and m.get("reconnects", 1) == 0
    per_job = r["rest_requests"] / max(1, r["jobs_sent"])
    routes = r.get("rest_by_route", {})
    edits = routes.get("webhook_message", 0) / max(1, r["jobs_sent"])
    sub, dlv = m.get("submit_seconds", {}), m.get("deliver_seconds", {})
    add("| Measure | Result |")
    add("|---|---|")
    add(f"| Jobs delivered exactly once | {'yes' if once else 'NO'}: {r['delivered_jobs']:,}/{r['jobs_sent']:,}, "
        f"{r['delivered_more_than_once']} twice, {r['failed']} failed, {r['refused']} refused, {r['stalled']} lost |")
    add(f"| Jobs/s (after warm-up) | {_f(r['jobs_per_second'])} ({r['measured_jobs']:,} jobs in "
        f"{_f(r['wall_seconds'])} s) |")
    add(f"| Bot CPU per job | {_f(r['bot_cpu_ms_per_job'])} ms |")
    add(f"| Bot RSS: before the first job / idle after warm-up / peak / end | {_f(r['rss_before_mb'])} / "
        f"{_f(r['rss_idle_mb'])} / {_f(r['rss_peak_mb'])} / {_f(r['rss_end_mb'])} MB (slope "
        f"{_f(r['rss_slope_mb_per_1000'], 2)} MB per 1,000 jobs) |")
    add(f"| Event-loop lag, p99 / max (10 ms timer, after warm-up) | {lag.get('lag_p99_ms', 'n/a')} / "
        f"{lag.get('lag_max_ms', 'n/a')} ms |")
    add(f"| Websockets per ComfyUI server | {'1' if one_ws else 'NOT 1'}: opened {min(opened, default=0)} to "
        f"{max(opened, default=0)} per server over the run, {int(m.get('reconnects', 0))} reconnections "
        f"(bot's `/metrics`); {int(m.get('servers_up', 0))} of {m.get('servers', 0)} servers up at the end |")
    add(f"| Job time, `/animate` to result, p50 / p99 | {_f(r['latency_p50_s'], 2)} / {_f(r['latency_p99_s'], 2)} s |")
    add(f"| Submit leg (upload → `POST /prompt` answered), mean / p99 | {_f(sub.get('mean', math.nan) * 1000)} / "
        f"{_f(sub.get('p99', math.nan) * 1000)} ms (bot's histogram) |")
    add(f"| Deliver leg (result posted to Discord), mean / p99 | {_f(dlv.get('mean', math.nan) * 1000)} / "
        f"{_f(dlv.get('p99', math.nan) * 1000)} ms (bot's histogram) |")
    add(f"| Discord REST requests per job | {_f(per_job, 2)} (status edits {_f(edits, 2)}); "
        f"{int(m.get('rate_limited', 0))} answered 429, {int(m.get('edit_failures', 0))} failed edits |")
    add(f"| Ack (defer) delay p50 / p99 | {_f(r['ack_p50_ms'])} / {_f(r['ack_p99_ms'])} ms |")
    add("")
    add(f"Job states in the bot's store: {r.get('job_states', {})}; stand-in rule violations: "
        f"{r['violations'] or 'none'}; bot exit status on SIGTERM {r.get('bot_exit_status')}; ERROR lines in the "
        f"bot's log: {len(r['bot_log_errors'])}; driver peak RSS {_f(r['driver_peak_rss_mb'])} MB. Every process "
        "(bot, driver with the Discord stand-in, the servers' process) shares the same 2 CPU cores.")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="600 jobs from 100 members on 16 servers")
    parser.add_argument("--servers", type=int, default=None, help="ComfyUI test servers, all in one process (default 64)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs in all, warm-up included (default 5000)")
    parser.add_argument("--members", type=int, default=None, help="members sending them (default 500)")
    parser.add_argument("--in-flight", type=int, default=0, help="jobs between command and result (default 4 per server)")
    parser.add_argument("--out", type=Path, default=None, help="report file (default bench/results/scale.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench.servers import start_layout
    from bench.soak import SoakConfig, run_soak

    sizes = QUICK if args.quick else FULL
    servers = args.servers or sizes["servers"]
    config = SoakConfig(jobs=args.jobs or sizes["jobs"], members=args.members or sizes["members"], servers=servers,
                        layout="shared", in_flight=args.in_flight or sizes["in_flight_per_server"] * servers,
                        quick=args.quick)
    command = "python -m bench scale" + (" " + " ".join(argv if argv is not None else sys.argv[2:])).rstrip()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="animate-scale-") as tmp:
        work = Path(tmp)
        layout = start_layout("shared", config.servers, work / "servers")
        urls = layout.urls

        async def inspect(bot: Any) -> dict[str, Any]:
            return await inspect_bot(f"http://127.0.0.1:{port}/metrics", urls)

        try:
            result = asyncio.run(run_soak(config, work, urls, layout.description,
                                          extra_env={"METRICS_ADDRESS": f"127.0.0.1:{port}"}, inspect=inspect))
        except Exception as exc:  # noqa: BLE001 - reported in the table
            result = {"config": asdict(config), "error": f"{type(exc).__name__}: {exc}"}
        finally:
            layout.stop()
    report = render(result, command)
    return write_report(result, report, args.out or RESULTS_DIR / ("scale-quick.md" if args.quick else "scale.md"))


if __name__ == "__main__":
    raise SystemExit(main())
