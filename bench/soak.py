"""Soak: thousands of ``/animate`` jobs through the whole bot, watching that nothing accumulates.

``python -m bench soak [--quick] [--jobs N] [--members M] [--servers S] [--layout separate|shared]
[--channels C] [--in-flight K] [--warmup W] [--max-pending P]``

The bot runs as ``python -m bot run`` in a child process (:class:`standins.bot_process.BotProcess`)
logged into the Discord stand-in; the stand-in runs in this (the driver's) process and the
ComfyUI test servers in processes of their own (:mod:`bench.servers` layouts), so none of their
bookkeeping counts as the bot's. The driver sends ``/animate`` slash commands with a distinct
small image each, from ``members`` members spread over ``channels`` channels, keeping at most
``in_flight`` jobs between the command and its result (steady state rather than one burst).

Measured from outside the bot: its RSS (``/proc/<pid>/status``, sampled as jobs finish) and CPU
time; every job's result uploads counted in the stand-in (each must be delivered exactly once).
Measured inside, via SIGUSR1 (:mod:`bot.observability.diagnostics`): asyncio tasks, open file descriptors,
event-loop lag and the job service's per-job records (``memory_counts()``).

Phases: start and log in -> diagnostics "before the first job" -> ``warmup`` jobs -> settle ->
"idle" diagnostics and RSS -> the other jobs (RSS sampled) -> diagnostics right after the last
job (loop lag of the measured phase) -> settle -> "end" diagnostics, compared with idle.
Settling waits past aiohttp's 15 s keep-alive (pooled connections are fds), then until two
readings agree. The RSS slope (MB per 1,000 jobs) is a least-squares fit over the samples
taken after warm-up; the goal is under 5.

Built to be reused with other sizes: ``--servers 64 --layout shared --members 500`` runs the
same soak against 64 test servers hosted in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import re
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR, percentile, write_report

from PIL import Image

REPO = Path(__file__).resolve().parents[1]

GOAL_SLOPE_MB_PER_1000 = 5.0
# aiohttp closes a pooled connection idle for 15 s at its next clean-up, which runs every 15 s:
# so 15 to 30 s after its last use. Counts are compared only after this long without jobs.
KEEPALIVE_SECONDS = 31.0
ANIMATION_FILE = re.compile(r"animation_([A-Za-z0-9_-]+)\.\w+$")
EPHEMERAL = 64
#: Small, fast generations (as the other benchmarks): frames and steps only size the outputs.
JOB_OPTIONS: dict[str, Any] = {"frames": 4, "steps": 3}


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SoakConfig:
    jobs: int = 5000
    members: int = 50
    servers: int = 4
    layout: str = "separate"
    channels: int = 0  # 0: one per 2 members (edits are paced per channel, as Discord limits them)
    in_flight: int = 0  # 0: 8 per server
    warmup: int = 0  # 0: a tenth of the jobs, at least 100 (at most half)
    max_pending: int | None = None  # COMFYUI_MAX_PENDING (None: the bot's default)
    rss_samples: int = 50
    stall_seconds: float = 120.0  # a job with no result by then is counted lost and its slot freed
    settle_timeout: float = 60.0
    quick: bool = False

    @property
    def n_channels(self) -> int:
        return self.channels or max(1, self.members // 2)

    @property
    def n_in_flight(self) -> int:
        return self.in_flight or 8 * self.servers

    @property
    def n_warmup(self) -> int:
        return self.warmup or min(self.jobs // 2, max(100, self.jobs // 10))

    @property
    def per_member_limit(self) -> int:
        """``MAX_JOBS_PER_MEMBER``: room for the driver's in-flight jobs spread over the members."""
        return max(2, math.ceil(self.n_in_flight / self.members))

    @property
    def waiting_limit(self) -> int:
        """``MAX_WAITING_JOBS``: every in-flight job may be waiting in the bot's line."""
        return max(50, self.n_in_flight + 10)

    def bot_env(self, urls: list[str], token: str, guild_id: int, data_dir: Path) -> dict[str, str]:
        env = {
            "DISCORD_TOKEN": token,
            "COMFYUI_URLS": ",".join(f"gpu{i + 1}={url}" for i, url in enumerate(urls)),
            "DEV_GUILD_ID": str(guild_id),
            "DATA_DIR": str(data_dir),
            "WORKFLOWS_DIR": str(REPO / "workflows"),
            "MAX_JOBS_PER_MEMBER": str(self.per_member_limit),
            "MAX_WAITING_JOBS": str(self.waiting_limit),
            "LOG_LEVEL": "INFO",
        }
        if self.max_pending is not None:
            env["COMFYUI_MAX_PENDING"] = str(self.max_pending)
        return env


QUICK = {"jobs": 300}


# ---------------------------------------------------------------------------- the bot process, seen from outside


def proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return math.nan


def proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def own_peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class DiagnosticsProbe:
    """Sends SIGUSR1 to the bot and reads the ``diagnostics ...`` line it logs (bot/observability/diagnostics.py)."""

    def __init__(self, pid: int, log_path: Path) -> None:
        self.pid = pid
        self.log_path = log_path

    async def read(self, timeout: float = 15.0) -> dict[str, int]:
        from bot.observability.diagnostics import parse_line
        from standins.wait import wait_until

        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        os.kill(self.pid, signal.SIGUSR1)

        def line() -> dict[str, int] | None:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return parse_line(log.read().decode("utf-8", "replace"))

        return await wait_until(line, timeout=timeout, what="the bot's diagnostics line", interval=0.05)


def per_job_names(counts: dict[str, int]) -> list[str]:
    return [k for k in counts if k not in ("tasks", "fds", "rss_kb") and not k.startswith("lag_")]


def comparable(counts: dict[str, int]) -> dict[str, int]:
    """What must be back to idle: tasks, fds and the per-job records (not RSS or lag)."""
    return {k: counts[k] for k in ("tasks", "fds", *per_job_names(counts)) if k in counts}


async def settle(probe: DiagnosticsProbe, target: dict[str, int] | None, timeout: float) -> tuple[dict[str, int], float]:
    """Wait past the keep-alive, then until two readings agree (and equal ``target`` when given)."""
    start = time.perf_counter()
    await asyncio.sleep(KEEPALIVE_SECONDS)
    previous: dict[str, int] | None = None
    while True:
        reading = await probe.read()
        now = comparable(reading)
        if target is not None and now == comparable(target):
            return reading, time.perf_counter() - start
        if target is None and previous is not None and now == comparable(previous):
            return reading, time.perf_counter() - start
        if time.perf_counter() - start > KEEPALIVE_SECONDS + timeout:
            return reading, time.perf_counter() - start
        previous = reading
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------------------- driving jobs


def job_png(index: int) -> bytes:
    """A small PNG, different for every job (its index in the first pixels), so no upload is reused."""
    colour = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
    image = Image.new("RGB", (320, 180), colour)
    image.putpixel((0, 0), (index & 255, (index >> 8) & 255, (index >> 16) & 255))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Slot:
    index: int
    member: int
    sent: float


@dataclass
class Tally:
    """What the stand-in saw: result uploads per job id, endings without a result, refusals."""

    uploads: Counter[str] = field(default_factory=Counter)
    delivered: int = 0  # slots whose result arrived
    failed: list[str] = field(default_factory=list)  # slots that ended with a private notice
    refused: list[str] = field(default_factory=list)  # refused at once (ephemeral reply)
    stalled: int = 0  # no result within stall_seconds
    latencies: list[tuple[int, float]] = field(default_factory=list)  # (job index, slash -> result answered, s)
    scanned: int = 0


class Driver:
    """Keeps up to ``in_flight`` ``/animate`` jobs going and notices, from the stand-in's records, when each ends."""

    def __init__(self, stand_in: Any, config: SoakConfig, members: list[Any], channels: list[Any]) -> None:
        self.stand_in = stand_in
        self.config = config
        self.members = members
        self.channels = channels
        self.pending: dict[str, Slot] = {}  # interaction token -> slot
        self.per_member: Counter[int] = Counter()
        self.tally = Tally()
        self.sent = 0
        self.ended = 0
        self._next_member = 0
        self._app = str(stand_in.application_id)

    def _pick_member(self) -> int:
        for _ in range(len(self.members)):
            m = self._next_member
            self._next_member = (self._next_member + 1) % len(self.members)
            if self.per_member[m] < self.config.per_member_limit:
                return m
        raise RuntimeError("every member is at the per-member limit (in_flight too high for members)")

    async def _send(self) -> None:
        m = self._pick_member()
        index = self.sent
        self.sent += 1
        record = await self.stand_in.slash(
            None, self.channels[m % len(self.channels)], self.members[m], "animate",
            options=JOB_OPTIONS, attachments={"image": (f"m{m}-{index}.png", job_png(index), "image/png")},
        )
        self.pending[record.token] = Slot(index=index, member=m, sent=time.perf_counter())
        self.per_member[m] += 1

    def _end(self, token: str) -> Slot | None:
        slot = self.pending.pop(token, None)
        if slot is not None:
            self.per_member[slot.member] -= 1
            self.ended += 1
        return slot

    def scan(self) -> None:
        requests = self.stand_in.requests
        i = self.tally.scanned
        while i < len(requests):
            rec = requests[i]
            if not rec.status:  # still being answered: look again next time
                break
            i += 1
            if not 200 <= rec.status < 300:
                continue
            parts = rec.path.strip("/").split("/")
            token = None
            if parts[:2] == ["webhooks", self._app] and len(parts) >= 3:
                token = parts[2]
            elif parts[:1] == ["interactions"] and len(parts) == 4:
                token = parts[2]
            job_ids = [m.group(1) for _f, name, _d in rec.files if (m := ANIMATION_FILE.search(name))]
            for job_id in job_ids:
                self.tally.uploads[job_id] += 1
            if token is None or token not in self.pending:
                continue
            if job_ids:
                slot = self._end(token)
                if slot is not None:
                    self.tally.latencies.append((slot.index, time.perf_counter() - slot.sent))
                self.tally.delivered += 1
                continue
            body = rec.json if isinstance(rec.json, dict) else {}
            data = body.get("data") if rec.route == "interaction_callback" else body
            flags = int((data or {}).get("flags") or 0) if isinstance(data, dict) else 0
            if flags & EPHEMERAL and rec.method == "POST":
                text = str((data or {}).get("content") or (data or {}).get("embeds") or "")[:160]
                (self.tally.refused if rec.route == "interaction_callback" else self.tally.failed).append(text)
                self._end(token)
        self.tally.scanned = i
        now = time.perf_counter()
        for token, slot in list(self.pending.items()):
            if now - slot.sent > self.config.stall_seconds:
                self._end(token)
                self.tally.stalled += 1

    async def run(self, count: int, on_end: Any = None) -> None:
        """Send ``count`` more jobs (keeping ``in_flight`` going) and wait until every job sent has ended."""
        target = self.sent + count
        while self.sent < target or self.pending:
            while self.sent < target and len(self.pending) < self.config.n_in_flight:
                await self._send()
            await asyncio.sleep(0.02)
            before = self.ended
            self.scan()
            if on_end is not None and self.ended != before:
                on_end(self.ended)


# ---------------------------------------------------------------------------- numbers


def slope_per_1000(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (jobs, MB) points, in MB per 1,000 jobs."""
    if len(points) < 2:
        return math.nan
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in points) / sxx * 1000


def job_states(store: Path) -> dict[str, int]:
    if not store.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())


# ---------------------------------------------------------------------------- the run


#: Called with the bot's process once the end counts are taken, before it is stopped; what it
#: returns goes into the result under ``"inspected"`` (``python -m bench scale`` reads /metrics here).
Inspect = Callable[[Any], Awaitable[dict[str, Any]]]


async def run_soak(config: SoakConfig, work: Path, urls: list[str], layout_description: str, *,
                   extra_env: Mapping[str, str] | None = None, inspect: Inspect | None = None) -> dict[str, Any]:
    from standins.bot_process import BotProcess
    from standins.discord_server import Channel, DiscordStandIn
    from standins.wait import wait_until

    stand_in = DiscordStandIn(keep_file_bytes=False)
    await stand_in.start()
    channels = []
    for i in range(config.n_channels):
        channel = Channel(id=stand_in.snowflake(), guild_id=stand_in.guild.id, name=f"animate-{i}")
        stand_in.guild.channels.append(channel)
        channels.append(channel)
    members = [stand_in.add_member(f"member{m}") for m in range(config.members)]
    env = config.bot_env(urls, stand_in.token, stand_in.guild.id, work / "bot-data") | dict(extra_env or {})
    bot = BotProcess(stand_in.api_base, stand_in.gateway_url, env, work / "bot.log")
    result: dict[str, Any] = {"config": asdict(config), "servers": layout_description, "settings": {
        "channels": config.n_channels, "in_flight": config.n_in_flight, "warmup": config.n_warmup}, "env": {
        k: v for k, v in env.items() if k not in ("DISCORD_TOKEN", "COMFYUI_URLS", "DATA_DIR", "WORKFLOWS_DIR")}}
    try:
        await bot.start()
        await wait_until(lambda: bool(stand_in.command_syncs) and stand_in.ready.is_set() or not bot.running,
                         timeout=60, what="the bot to log in and sync its commands")
        if not bot.running:
            raise RuntimeError(f"the bot exited at start:\n{bot.log()[-3000:]}")
        probe = DiagnosticsProbe(bot.pid, bot.log_path)
        await probe.read()  # also starts the bot's loop-lag watch
        sys.stderr.write("soak: settling after start-up\n")
        before, _ = await settle(probe, None, config.settle_timeout)
        rss_before = proc_rss_mb(bot.pid)
        driver = Driver(stand_in, config, members, channels)

        sys.stderr.write(f"soak: warm-up, {config.n_warmup} jobs\n")
        warm_start = time.perf_counter()
        await driver.run(config.n_warmup)
        warm_seconds = time.perf_counter() - warm_start
        sys.stderr.write("soak: settling after warm-up\n")
        idle, idle_settle = await settle(probe, None, config.settle_timeout)
        rss_idle = proc_rss_mb(bot.pid)

        measured = config.jobs - config.n_warmup
        every = max(1, measured // max(1, config.rss_samples))
        samples: list[tuple[float, float]] = [(float(driver.ended), rss_idle)]
        next_sample = driver.ended + every

        def on_end(ended: int) -> None:
            nonlocal next_sample
            if ended >= next_sample:
                samples.append((float(ended), proc_rss_mb(bot.pid)))
                next_sample = ended + every

        sys.stderr.write(f"soak: {measured} jobs, {config.n_in_flight} in flight\n")
        cpu_start = proc_cpu_seconds(bot.pid)
        start = time.perf_counter()
        await driver.run(measured, on_end)
        wall = time.perf_counter() - start
        cpu = proc_cpu_seconds(bot.pid) - cpu_start
        samples.append((float(driver.ended), proc_rss_mb(bot.pid)))
        right_after = await probe.read()
        sys.stderr.write("soak: settling at the end\n")
        end, end_settle = await settle(probe, idle, config.settle_timeout)
        rss_end = proc_rss_mb(bot.pid)
        await asyncio.sleep(0.5)  # a late duplicate would show up here
        driver.scan()
        if inspect is not None:
            result["inspected"] = await inspect(bot)

        acks = [r.ack_delay for r in stand_in.interactions.values() if r.ack_delay is not None]
        tally = driver.tally
        twice = sum(1 for n in tally.uploads.values() if n > 1)
        messages_with_result: Counter[str] = Counter()
        for message in stand_in.messages.values():
            for att in message.get("attachments") or []:
                if (m := ANIMATION_FILE.search(att.get("filename", ""))):
                    messages_with_result[m.group(1)] += 1
        after_warmup = [p for p in samples if p[0] >= config.n_warmup]
        latencies = [seconds for index, seconds in tally.latencies if index >= config.n_warmup]
        result |= {
            "jobs_sent": driver.sent,
            "delivered_jobs": len(tally.uploads),
            "delivered_more_than_once": twice,
            "result_messages_more_than_one": sum(1 for n in messages_with_result.values() if n > 1),
            "result_messages": len(messages_with_result),
            "failed": len(tally.failed),
            "failed_examples": tally.failed[:5],
            "refused": len(tally.refused),
            "refused_examples": tally.refused[:5],
            "stalled": tally.stalled,
            "warmup_seconds": warm_seconds,
            "wall_seconds": wall,
            "measured_jobs": measured,
            "jobs_per_second": measured / wall if wall else math.nan,
            "bot_cpu_ms_per_job": cpu / max(1, measured) * 1000,
            "rss_before_mb": rss_before,
            "rss_idle_mb": rss_idle,
            "rss_peak_mb": max(y for _, y in samples),
            "rss_end_mb": rss_end,
            "rss_samples": samples,
            "rss_slope_mb_per_1000": slope_per_1000(after_warmup),
            "rss_slope_second_half_mb_per_1000": slope_per_1000(after_warmup[len(after_warmup) // 2:]),
            "diagnostics_before": before,
            "diagnostics_idle": idle,
            "idle_settle_seconds": idle_settle,
            "diagnostics_right_after": right_after,
            "diagnostics_end": end,
            "end_settle_seconds": end_settle,
            "latency_p50_s": percentile(latencies, 50),
            "latency_p99_s": percentile(latencies, 99),
            "ack_p50_ms": percentile(acks, 50) * 1000,
            "ack_p99_ms": percentile(acks, 99) * 1000,
            "violations": dict(Counter(v.kind for v in stand_in.unexpected_violations())),
            "rate_limited": dict(Counter(h.bucket for h in stand_in.rate_limit_hits)),
            "rest_requests": len(stand_in.requests),
            "rest_by_route": dict(Counter(str(r.route) for r in stand_in.requests)),
            "driver_peak_rss_mb": own_peak_rss_mb(),
        }
    finally:
        if bot.process is not None:
            result["bot_exit_status"] = await bot.terminate()
        await stand_in.stop()
    result["job_states"] = job_states(work / "bot-data" / "jobs.sqlite3")
    log_text = bot.log()
    result["bot_log_errors"] = [line for line in log_text.splitlines() if " ERROR " in line or "Traceback" in line][:10]
    warnings = [line for line in log_text.splitlines() if " WARNING " in line]
    result["bot_log_warnings"] = len(warnings)
    result["bot_log_warning_examples"] = warnings[:10]
    return result


# ---------------------------------------------------------------------------- the report


def _f(value: Any, digits: int = 1) -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return f"{value:.{digits}f}"
    return "n/a"


def render(r: dict[str, Any], command: str) -> str:
    c, s = r["config"], r.get("settings", {})
    lines: list[str] = []
    add = lines.append
    add(f"### Soak: {c['jobs']:,} jobs through the whole bot")
    add("")
    if "error" in r:
        add(f"Not completed: {r['error']}")
        return "\n".join(lines) + "\n"
    env = r["env"]
    pending = env.get("COMFYUI_MAX_PENDING", "1 (default)")
    add(f"`{command}`: `python -m bot run` as a child process logged into the Discord stand-in (which runs in "
        f"the driver's process); {r['servers']}, step time 0. {c['members']} members over "
        f"{s['channels']} channels send `/animate` (frames 4, steps 3, a distinct "
        f"320x180 PNG each), at most {s['in_flight']} jobs in flight. Bot settings: "
        f"`MAX_JOBS_PER_MEMBER`={env['MAX_JOBS_PER_MEMBER']}, `MAX_WAITING_JOBS`={env['MAX_WAITING_JOBS']} "
        f"(defaults 2 and 50, raised when the jobs in flight need more), `COMFYUI_MAX_PENDING`={pending}, "
        "`LOG_LEVEL`=INFO, "
        "the rest default (real edit pacing). "
        f"The first {s['warmup']} jobs are warm-up; then the bot is left to settle and its "
        "idle counts are taken (SIGUSR1 diagnostics).")
    add("")
    once = r["delivered_jobs"] == r["jobs_sent"] and r["delivered_more_than_once"] == 0 \
        and r["result_messages_more_than_one"] == 0
    slope = r["rss_slope_mb_per_1000"]
    lag = r["diagnostics_right_after"]
    add("| Measure | Result | Goal |")
    add("|---|---|---|")
    add(f"| Jobs delivered exactly once | {'yes' if once else 'NO'}: {r['delivered_jobs']}/{r['jobs_sent']}, "
        f"{r['delivered_more_than_once']} twice, {r['failed']} failed, {r['refused']} refused, {r['stalled']} lost "
        f"| all, once ({'OK' if once else 'MISSED'}) |")
    add(f"| Wall time, jobs after warm-up | {_f(r['wall_seconds'])} s for {r['measured_jobs']} jobs "
        f"(warm-up {_f(r['warmup_seconds'])} s) | |")
    add(f"| Jobs/s (after warm-up) | {_f(r['jobs_per_second'])} | |")
    add(f"| Job time, `/animate` to result, p50 / p99 (after warm-up) | {_f(r['latency_p50_s'], 2)} / "
        f"{_f(r['latency_p99_s'], 2)} s | |")
    add(f"| Bot CPU per job | {_f(r['bot_cpu_ms_per_job'])} ms | |")
    add(f"| Bot RSS: before the first job / idle after warm-up / peak / end | {_f(r['rss_before_mb'])} / "
        f"{_f(r['rss_idle_mb'])} / {_f(r['rss_peak_mb'])} / {_f(r['rss_end_mb'])} MB | |")
    add(f"| RSS slope after warm-up (least squares, {len([p for p in r['rss_samples'] if p[0] >= s['warmup']])} "
        f"samples) | {_f(slope, 2)} MB per 1,000 jobs (second half: "
        f"{_f(r['rss_slope_second_half_mb_per_1000'], 2)}) | < {GOAL_SLOPE_MB_PER_1000:g} "
        f"({'OK' if slope < GOAL_SLOPE_MB_PER_1000 else 'MISSED'}) |")
    add(f"| Bot loop lag after warm-up, p99 / max (10 ms timer) | {lag.get('lag_p99_ms', 'n/a')} / "
        f"{lag.get('lag_max_ms', 'n/a')} ms | |")
    add(f"| Ack (defer) delay p50 / p99 | {_f(r['ack_p50_ms'])} / {_f(r['ack_p99_ms'])} ms | < 3,000 |")
    add("")
    idle, end, before = r["diagnostics_idle"], r["diagnostics_end"], r["diagnostics_before"]
    add(f"Back to idle (end counts after the last job ended, settled in {_f(r['end_settle_seconds'], 0)} s; "
        f"idle settled in {_f(r['idle_settle_seconds'], 0)} s):")
    add("")
    add("| Count in the bot | Before the first job | Idle after warm-up | Right after the last job | End | Back to idle |")
    add("|---|---|---|---|---|---|")
    names = ["tasks", "fds", *sorted(set(per_job_names(idle)) | set(per_job_names(end)))]
    for name in names:
        ok = idle.get(name) == end.get(name)
        add(f"| {_label(name)} | {before.get(name, 'n/a')} | {idle.get(name, 'n/a')} | "
            f"{r['diagnostics_right_after'].get(name, 'n/a')} | {end.get(name, 'n/a')} | {'yes' if ok else 'NO'} |")
    if not per_job_names(idle):
        add("| per-job records | (the bot reports none: `JobService.memory_counts()` missing) | | | | |")
    add("")
    states = r.get("job_states", {})
    add(f"Job states in the bot's store: {states}; stand-in rule violations: {r['violations'] or 'none'}; "
        f"stand-in 429s: {r.get('rate_limited') or 'none'}; "
        f"{r['rest_requests']:,} REST requests; bot exit status on SIGTERM {r.get('bot_exit_status')}; "
        f"ERROR lines in the bot's log: {len(r['bot_log_errors'])}, WARNING lines: {r.get('bot_log_warnings', 'n/a')}; driver peak RSS {_f(r['driver_peak_rss_mb'])} MB.")
    return "\n".join(lines) + "\n"


def _label(name: str) -> str:
    return {"tasks": "asyncio tasks", "fds": "open file descriptors"}.get(name, f"`{name}`")


# ---------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['jobs']} jobs (warm-up 100)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs in all, warm-up included (default 5000)")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--servers", type=int, default=4, help="ComfyUI test servers")
    parser.add_argument("--layout", default="separate", help="server processes: separate (one each) or shared (one for all)")
    parser.add_argument("--channels", type=int, default=0, help="default: one per 2 members")
    parser.add_argument("--in-flight", type=int, default=0, help="jobs between command and result (default 8 per server)")
    parser.add_argument("--warmup", type=int, default=0, help="warm-up jobs (default a tenth, at least 100)")
    parser.add_argument("--max-pending", type=int, default=None, help="COMFYUI_MAX_PENDING (default: the bot's)")
    parser.add_argument("--out", type=Path, default=None, help="report file (default bench/results/soak.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench.servers import start_layout

    jobs = args.jobs or (QUICK["jobs"] if args.quick else 5000)
    config = SoakConfig(jobs=jobs, members=args.members, servers=args.servers, layout=args.layout,
                        channels=args.channels, in_flight=args.in_flight, warmup=args.warmup,
                        max_pending=args.max_pending, quick=args.quick)
    if config.n_warmup >= config.jobs:
        sys.stderr.write("error: --warmup must be smaller than --jobs\n")
        return 2
    command = "python -m bench soak" + (" " + " ".join(argv if argv is not None else sys.argv[2:])).rstrip()
    with tempfile.TemporaryDirectory(prefix="animate-soak-") as tmp:
        work = Path(tmp)
        layout = start_layout(config.layout, config.servers, work / "servers")
        try:
            result = asyncio.run(run_soak(config, work, layout.urls, layout.description))
        except Exception as exc:  # noqa: BLE001 - reported in the table
            result = {"config": asdict(config), "error": f"{type(exc).__name__}: {exc}"}
        finally:
            layout.stop()
    report = render(result, command)
    return write_report(result, report, args.out or RESULTS_DIR / ("soak-quick.md" if args.quick else "soak.md"))


if __name__ == "__main__":
    raise SystemExit(main())
