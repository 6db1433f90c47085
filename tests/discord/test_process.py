"""``python -m bot run`` as a real process, pointed at the stand-in by a test-only bootstrap."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from standins.comfy_server.server import ComfyTestServer
from standins.discord_server import DiscordStandIn, message_text

ROOT = Path(__file__).resolve().parents[2]

# Redirects discord.py to the stand-in, then runs the real command line. Test-only: the
# product code has no hook for this.
BOOTSTRAP = """
import sys, yarl, discord.http, discord.gateway
discord.http.Route.BASE = sys.argv[1]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
from bot.cli import main
raise SystemExit(main(sys.argv[3:]))
"""


@pytest.mark.timeout(40)
async def test_python_m_bot_run_logs_in_syncs_answers_and_stops_on_sigterm(
    discord_stand_in: DiscordStandIn, comfy_server: ComfyTestServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DISCORD_TOKEN": discord_stand_in.token,
        "COMFYUI_URLS": f"main={comfy_server.url}",
        "DATA_DIR": str(tmp_path / "data"),
        "DEV_GUILD_ID": str(discord_stand_in.guild.id),
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BOOTSTRAP, discord_stand_in.api_base, discord_stand_in.gateway_url,
        "--env-file", str(tmp_path / "no.env"), "run",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.wait_for(discord_stand_in.ready.wait(), 20)  # READY sent to the child process
        assert discord_stand_in.command_syncs  # setup_hook synced before the gateway connection
        guild_id, payload = discord_stand_in.command_syncs[0]
        assert guild_id == discord_stand_in.guild.id
        assert {c["name"] for c in payload} == {
            "help", "status", "animate", "Animate image", "queue", "cancel", "history", "mod", "owner"
        }
        record = await discord_stand_in.slash(None, None, None, "status")
        message = await record.wait_message(timeout=10)
        assert "main" in message_text(message) and "up" in message_text(message)
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = stderr.decode()
    assert proc.returncode == 0, log
    assert "Shutting down" in log
    assert discord_stand_in.token not in log
    assert "Traceback" not in log
