"""SIGUSR1 diagnostics: ``python -m bot run`` as a real process logs one line of counts when asked.

The line (bot/observability/diagnostics.py) is what ``python -m bench soak`` reads; here it must appear even
at ``LOG_LEVEL=WARNING``, parse, carry tasks/fds/RSS and the job service's per-job records,
and carry loop lag from the second signal on. Plus the pure pieces: parsing and the lag watch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from bot.observability.diagnostics import LagWatch, format_line, memory_counts, parse_line
from standins.bot_process import BotProcess
from standins.comfy_server.server import ComfyTestServer
from standins.discord_server import DiscordStandIn
from standins.wait import wait_until

from .helpers import WORKFLOWS


def test_line_round_trips_and_the_last_one_wins() -> None:
    line = format_line({"tasks": 12, "fds": 22, "rss_kb": 98000, "progress_streams": 0})
    assert line == "diagnostics tasks=12 fds=22 rss_kb=98000 progress_streams=0"
    log = f"2026-01-01 INFO bot.observability.diagnostics: diagnostics tasks=1 fds=2\nother\n2026-01-01 INFO bot.observability.diagnostics: {line}\n"
    assert parse_line(log) == {"tasks": 12, "fds": 22, "rss_kb": 98000, "progress_streams": 0}
    assert parse_line("no such line") is None


def test_memory_counts_merge_and_prefix_a_clash() -> None:
    class Source:
        def __init__(self, counts: dict[str, int]) -> None:
            self.counts = counts

        def memory_counts(self) -> dict[str, int]:
            return self.counts

    class Broken:
        def memory_counts(self) -> dict[str, int]:
            raise RuntimeError("boom")

    merged = memory_counts([("jobs", Source({"followers": 1, "tasks": 3})), ("other", object()),
                            ("ui", Source({"followers": 2})), ("bad", Broken())])
    assert merged == {"followers": 1, "jobs.tasks": 3, "ui.followers": 2}


async def test_lag_watch_reports_a_blocked_loop_then_resets() -> None:
    watch = LagWatch(asyncio.get_running_loop(), interval=0.005)
    assert watch.take() == {}
    watch.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.06)  # block the loop: the next tick is at least ~55 ms late
        await asyncio.sleep(0.03)
        counts = watch.take()
        assert counts["lag_samples"] >= 3
        assert counts["lag_max_ms"] >= 50
        assert 1 <= counts["lag_p99_ms"] <= counts["lag_max_ms"]
        await asyncio.sleep(0.03)
        assert watch.take()["lag_max_ms"] < 50  # a new window
    finally:
        watch.stop()


@pytest.mark.timeout(60)
async def test_sigusr1_logs_one_parsable_line(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    stand_in = DiscordStandIn()  # the bot is another process: nothing to patch in this one
    await stand_in.start()
    env = {
        "DISCORD_TOKEN": stand_in.token,
        "COMFYUI_URLS": f"gpu1={comfy_server.url}",
        "DEV_GUILD_ID": str(stand_in.guild.id),
        "DATA_DIR": str(tmp_path / "data"),
        "WORKFLOWS_DIR": str(WORKFLOWS),
        "LOG_LEVEL": "WARNING",  # the line is shown anyway: it was asked for
    }
    bot = BotProcess(stand_in.api_base, stand_in.gateway_url, env, tmp_path / "bot.log")
    try:
        await bot.start()
        await wait_until(lambda: (bool(stand_in.command_syncs) and stand_in.ready.is_set()) or not bot.running,
                         timeout=30, what="the bot to log in", describe=lambda: bot.log()[-2000:])
        assert bot.running, bot.log()[-3000:]

        async def ask() -> dict[str, int]:
            before = bot.log().count(" diagnostics ")
            os.kill(bot.pid, signal.SIGUSR1)
            await wait_until(lambda: bot.log().count(" diagnostics ") > before, timeout=10,
                             what="the diagnostics line", describe=lambda: bot.log()[-2000:])
            counts = parse_line(bot.log())
            assert counts is not None
            return counts

        first = await ask()
        assert first["tasks"] > 0 and first["fds"] > 0 and first["rss_kb"] > 10_000
        assert "progress_streams" in first and "job_tasks" in first, first  # JobService.memory_counts()
        assert not any(name.startswith("lag_") for name in first)  # the first signal starts the watch
        await asyncio.sleep(0.2)
        second = await ask()
        assert second["lag_samples"] > 0 and second["lag_max_ms"] >= second["lag_p99_ms"] >= 0
        assert bot.running
        log = bot.log()
        lines = [line for line in log.splitlines() if " diagnostics " in line]
        assert len(lines) == 2 and all(" INFO " in line for line in lines), lines
        assert "Logged in as" not in log  # other INFO lines stay hidden at WARNING
    finally:
        status = await bot.terminate() if bot.process is not None else None
        await stand_in.stop()
    assert status == 0, bot.log()[-3000:]
    assert not stand_in.unexpected_violations() and not stand_in.unhandled_requests()
