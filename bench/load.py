"""Load: many jobs from many members over several ComfyUI test servers (each in its own process).

- :func:`run_service`: the job service alone with a recording delivery; every job is
  submitted at once (``asyncio.gather``), as a burst of members would.
- :func:`run_discord`: the whole bot (built by :func:`bot.app.build`, as ``python -m bot run``
  builds it, with the real discord.py client) against the loopback Discord stand-in; jobs are ``/animate`` slash
  commands with an attachment, members spread over channels. The product's own edit pacing
  (Discord's per-channel limits, :class:`bot.discord.edit_scheduler.EditPacing` defaults) stays on,
  and so do the stand-in's rule checks (ack deadline, token expiry, message limits) and its rate
  limits: every 429 it answers is counted (the goal is none).

Both record: wall time and jobs/s, deliveries per job (must be exactly one), event-loop lag
(a task sleeping 10 ms records its overshoot), peak RSS of this process, and the hubs'
websocket connections (must stay one per server).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    FAST_OPTIONS,
    LoopWatch,
    RecordingDelivery,
    bench_settings,
    cpu_seconds,
    current_rss_mb,
    median,
    open_service,
    percentile,
    small_png,
)
from bot.jobs.service import JobRequest, JobService

ANIMATION_FILE = re.compile(r"animation_([A-Za-z0-9_-]+)\.\w+$")


def _lag_summary(watch: LoopWatch) -> dict[str, Any]:
    return {
        "lag_p50_ms": median(watch.lags_ms),
        "lag_p99_ms": percentile(watch.lags_ms, 99),
        "lag_max_ms": max(watch.lags_ms, default=math.nan),
        "max_ws_connections_per_server": watch.max_connections,
        "samples_with_a_socket_down": watch.disconnected_samples,
        "peak_rss_sampled_mb": watch.peak_rss_sampled,
    }


async def _states(service: JobService, job_ids: list[str]) -> dict[str, int]:
    states: Counter[str] = Counter()
    for job_id in job_ids:
        job = await service.get(job_id)
        states[job.state.value if job else "missing"] += 1
    return dict(states)


async def run_service(
    urls: list[str], work: Path, *, jobs: int, members: int, max_pending: int | None = None
) -> dict[str, Any]:
    per_member = math.ceil(jobs / members)
    delivery = RecordingDelivery()
    extra = {} if max_pending is None else {"comfyui_max_pending": max_pending}
    settings = bench_settings(
        urls, work / f"load{max_pending or ''}", max_jobs_per_member=per_member, max_waiting_jobs=jobs + 10, **extra
    )
    async with aiohttp.ClientSession() as session:
        service = await open_service(settings, session, delivery)
        await service.start()
        for hub in service.hubs.values():
            await hub.wait_connected(10)
        watch = LoopWatch(list(service.hubs.values()))
        watch.start()
        rss_idle = current_rss_mb()
        images = [small_png(m) for m in range(members)]
        requests = [
            JobRequest(user_id=10_000 + m, channel_id=500 + m % 25, guild_id=2, image=images[m], options=FAST_OPTIONS)
            for _ in range(per_member)
            for m in range(members)
        ][:jobs]
        try:
            start = time.perf_counter()
            cpu_start = cpu_seconds()
            results = await asyncio.gather(*(service.submit(r) for r in requests), return_exceptions=True)
            submitted = time.perf_counter() - start
            accepted = [r.id for r in results if not isinstance(r, BaseException)]
            refused = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
            delivery.expected = len(accepted)
            delivery._check()
            await asyncio.wait_for(delivery.done.wait(), 300)
            wall = time.perf_counter() - start
            cpu = cpu_seconds() - cpu_start
        finally:
            await watch.stop()
            states = await _states(service, [r.id for r in results if not isinstance(r, BaseException)])
            connections = {name: hub.connections for name, hub in service.hubs.items()}
            await service.close()
    counts = Counter(delivery.counts.values())
    return {
        "load_service": {
            "jobs": len(requests),
            "members": members,
            "servers": len(urls),
            "max_pending": settings.comfyui_max_pending,
            "refused": refused[:5],
            "refused_count": len(refused),
            "submit_seconds": submitted,
            "wall_seconds": wall,
            "jobs_per_second": len(accepted) / wall,
            "cpu_ms_per_job": cpu / max(1, len(accepted)) * 1000,
            "delivered_jobs": len(delivery.delivered),
            "delivered_more_than_once": sum(n for times, n in counts.items() if times > 1),
            "ended_not_delivered": list(delivery.ended.values())[:5],
            "states": states,
            "hub_connections_at_end": connections,
            "rss_idle_mb": rss_idle,
            **_lag_summary(watch),
        }
    }


async def run_discord(
    urls: list[str], work: Path, *, jobs: int, members: int, channels: int, rate: float = 0.0,
    safety: str | None = None,
) -> dict[str, Any]:
    """``rate``: slash commands per second (0 = all at once); ``safety``: the guild's content-safety
    mode (default: the bot's default, strict)."""
    from bot.app import build
    from standins.discord_server import Channel, DiscordStandIn, point_discord_at

    per_member = math.ceil(jobs / members)
    stand_in = DiscordStandIn()
    await stand_in.start()
    channel_list = []
    for i in range(channels):
        channel = Channel(id=stand_in.snowflake(), guild_id=stand_in.guild.id, name=f"animate-{i}")
        stand_in.guild.channels.append(channel)
        channel_list.append(channel)
    people = [stand_in.add_member(f"member{m}") for m in range(members)]
    settings = bench_settings(
        urls,
        work / "discord",
        discord_token=stand_in.token,
        dev_guild_id=stand_in.guild.id,
        max_jobs_per_member=per_member,
        max_waiting_jobs=jobs + 10,
    )
    result: dict[str, Any] = {}
    with point_discord_at(stand_in.api_base, stand_in.gateway_url):
        session = aiohttp.ClientSession()
        bot = await build(settings, session, guild_ready_timeout=0.05)
        service = bot.jobs
        if safety is not None:
            await service.store.guilds.update_settings(stand_in.guild.id, safety_mode=safety)
        ready = asyncio.Event()

        async def on_ready() -> None:
            ready.set()

        bot.add_listener(on_ready, "on_ready")
        bot_task = asyncio.create_task(bot.start(settings.discord_token), name="bench-bot")
        watch = LoopWatch(list(service.hubs.values()))
        try:
            await asyncio.wait_for(ready.wait(), 20)
            for hub in service.hubs.values():
                await hub.wait_connected(10)
            watch.start()
            rss_idle = current_rss_mb()
            images = [small_png(m) for m in range(members)]
            records = []
            seen: Counter[str] = Counter()
            scanned = 0
            start = time.perf_counter()
            cpu_start = cpu_seconds()
            for round_ in range(per_member):
                for m, person in enumerate(people):
                    if len(records) >= jobs:
                        break
                    channel = channel_list[m % channels]
                    if rate > 0:
                        await asyncio.sleep(max(0.0, start + len(records) / rate - time.perf_counter()))
                    records.append(
                        await stand_in.slash(
                            None,
                            channel,
                            person,
                            "animate",
                            options=FAST_OPTIONS,
                            attachments={"image": (f"m{m}-{round_}.png", images[m], "image/png")},
                        )
                    )
            dispatched = time.perf_counter() - start
            deadline = time.perf_counter() + 600
            polls = 0
            last_stored, last_change = -1, time.perf_counter()
            while True:
                polls += 1
                requests = stand_in.requests
                for rec in requests[scanned:]:
                    if rec.status is not None and 200 <= rec.status < 300:
                        for _field, filename, _data in rec.files:
                            match = ANIMATION_FILE.search(filename)
                            if match:
                                seen[match.group(1)] += 1
                scanned = len(requests)
                if len(seen) >= len(records) or time.perf_counter() > deadline:
                    break
                if polls % 10 == 0:
                    # done when no job is active and no new job appeared for 3 s (refused or
                    # unacknowledged interactions never become jobs)
                    stored = len(await service.store.jobs.in_states(_all_states()))
                    if stored != last_stored:
                        last_stored, last_change = stored, time.perf_counter()
                    elif not await service.store.jobs.active() and time.perf_counter() - last_change > 3:
                        break
                await asyncio.sleep(0.2)
            wall = time.perf_counter() - start
            cpu = cpu_seconds() - cpu_start
            await watch.stop()
            await asyncio.sleep(0.5)  # late duplicates would show up here
            for rec in stand_in.requests[scanned:]:
                if rec.status is not None and 200 <= rec.status < 300:
                    for _field, filename, _data in rec.files:
                        match = ANIMATION_FILE.search(filename)
                        if match:
                            seen[match.group(1)] += 1
            acks = [r.ack_delay for r in records if r.ack_delay is not None]
            job_states = Counter(job.state.value for job in await service.store.jobs.in_states(list(_all_states())))
            result = {
                "load_discord": {
                    "jobs": len(records),
                    "members": members,
                    "channels": channels,
                    "rate_per_second": rate,
                    "safety_mode": safety or "strict",
                    "servers": len(urls),
                    "dispatch_seconds": dispatched,
                    "wall_seconds": wall,
                    "jobs_per_second": len(seen) / wall,
                    "cpu_ms_per_job": cpu / max(1, len(records)) * 1000,
                    "delivered_jobs": len(seen),
                    "delivered_more_than_once": sum(1 for n in seen.values() if n > 1),
                    "states": dict(job_states),
                    "not_acked": sum(1 for r in records if r.ack_delay is None),
                    "ack_p50_ms": median(acks) * 1000,
                    "ack_p99_ms": percentile(acks, 99) * 1000,
                    "violations": Counter(v.kind for v in stand_in.unexpected_violations()),
                    "rate_limited": len(stand_in.rate_limit_hits),
                    "rate_limited_buckets": dict(Counter(h.bucket for h in stand_in.rate_limit_hits)),
                    "unhandled_requests": len(stand_in.unhandled_requests()),
                    "rest_requests": len(stand_in.requests),
                    "hub_connections_at_end": {name: hub.connections for name, hub in service.hubs.items()},
                    "rss_idle_mb": rss_idle,
                    **_lag_summary(watch),
                }
            }
        finally:
            await watch.stop()
            await bot.close()
            try:
                await asyncio.wait_for(bot_task, 10)
            except Exception:  # noqa: BLE001 - the numbers are already taken
                bot_task.cancel()
            await session.close()
            await stand_in.stop()
    return result


def _terminal_states() -> list[Any]:
    from bot.jobs.models import TERMINAL_STATES

    return list(TERMINAL_STATES)


def _all_states() -> list[Any]:
    from bot.jobs.models import JobState

    return list(JobState)
