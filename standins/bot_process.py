"""``python -m bot run`` as a real child process, logged into the Discord stand-in.

Black-box suites and benchmarks use this to run the whole bot the way an operator does,
with nothing of the bot imported into the caller. A small bootstrap points discord.py's REST
base and default gateway at the stand-in (the product itself has no hook for that), sets the
loggers named in ``debug_loggers`` to DEBUG (a benchmark reads the bot's ``bot.timing`` marks
that way while the rest logs at ``LOG_LEVEL``), then runs the real command line. The bot's log (stderr) goes to a file so a test can read it after a
SIGKILL; stdout is discarded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Redirects discord.py to the stand-in (shorter reconnect back-off too), then runs the real CLI.
BOOTSTRAP = """
import logging, os, sys, yarl, discord.backoff, discord.http, discord.gateway
for _name in filter(None, os.environ.get("BOT_PROCESS_DEBUG_LOGGERS", "").split(",")):
    logging.getLogger(_name).setLevel(logging.DEBUG)  # these log at DEBUG whatever LOG_LEVEL says
discord.http.Route.BASE = sys.argv[1]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
_init = discord.backoff.ExponentialBackoff.__init__
def _fast(self, base=1, *, integral=False):
    _init(self, base, integral=integral)
    if not integral:
        self._base = 0.05
discord.backoff.ExponentialBackoff.__init__ = _fast
from bot.cli import main
raise SystemExit(main(sys.argv[3:]))
"""


@dataclass
class BotProcess:
    """One run of the bot as a child process. ``start()``, then ``kill()`` or ``terminate()``."""

    api_base: str
    gateway_url: str
    env: Mapping[str, str]
    log_path: Path
    args: tuple[str, ...] = ("run",)
    debug_loggers: tuple[str, ...] = ()  # loggers that log at DEBUG whatever LOG_LEVEL says (e.g. "bot.timing")
    process: asyncio.subprocess.Process | None = field(default=None, init=False)

    async def start(self) -> None:
        """Start ``python -m bot run`` (environment: the caller's plus ``env``; no ``.env`` file is read)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **self.env,
               "BOT_PROCESS_DEBUG_LOGGERS": ",".join(self.debug_loggers)}
        with self.log_path.open("ab") as log:
            log.write(f"--- test harness: starting python -m bot {' '.join(self.args)} ---\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", BOOTSTRAP, self.api_base, self.gateway_url,
                "--env-file", str(self.log_path.parent / "no-such.env"), *self.args,
                cwd=REPO_ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> int:
        """SIGKILL: no clean-up runs in the bot; returns once the process is gone (its exit status).
        A line in the log marks where the killed run ends."""
        running = self.running
        status = await self._signal(signal.SIGKILL, timeout=10.0)
        if running:
            with self.log_path.open("ab") as log:
                log.write(f"--- test harness: process {self.pid} killed (SIGKILL) ---\n".encode())
        return status

    async def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for a clean exit (SIGKILL after ``timeout``). Returns the exit status."""
        try:
            return await self._signal(signal.SIGTERM, timeout=timeout)
        except TimeoutError:
            return await self.kill()

    async def _signal(self, sig: signal.Signals, *, timeout: float) -> int:
        assert self.process is not None, "not started"
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout)

    def log(self) -> str:
        """Everything the bot has logged so far (all runs that shared this log file)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
