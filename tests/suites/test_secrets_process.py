"""Secrets suite, as a real process: ``python -m bot run``'s stderr at INFO never shows a secret.

The process logs in to the Discord stand-in (a test-only bootstrap points discord.py at it),
with a ``COMFYUI_TOKEN``, a working server that requires it and a down server with a password
in its URL. One /animate is delivered, one fails inside ComfyUI, then SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.animate.conftest import png_bytes
from standins.discord_server import DiscordStandIn
from tests.suites.conftest import Secret, discord_payloads, find_secrets
from tests.suites.test_secrets import COMFY_TOKEN, PASSWORD, USER, closed_port

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = """
import sys, yarl, discord.http, discord.gateway
discord.http.Route.BASE = sys.argv[1]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
from bot.cli import main
raise SystemExit(main(sys.argv[3:]))
"""


@pytest.mark.timeout(60)
async def test_bot_process_stderr_at_info_shows_no_secret(
    discord_stand_in: DiscordStandIn, comfy_server_factory: Any, tmp_path: Path
) -> None:
    stand_in = discord_stand_in
    good = await comfy_server_factory(step_time=0.02, api_token=COMFY_TOKEN)
    down = closed_port()
    env = {
        **os.environ,
        "DISCORD_TOKEN": stand_in.token,
        "COMFYUI_URLS": f"gpu-main={good.url},spare=http://{USER}:{PASSWORD}@127.0.0.1:{down}",
        "COMFYUI_TOKEN": COMFY_TOKEN,
        "DATA_DIR": str(tmp_path / "data"),
        "DEV_GUILD_ID": str(stand_in.guild.id),
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BOOTSTRAP, stand_in.api_base, stand_in.gateway_url,
        "--env-file", str(tmp_path / "no.env"), "run",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.wait_for(stand_in.ready.wait(), 30)  # READY sent to the child process
        assert stand_in.command_syncs  # setup_hook synced before the gateway connection
        options = {"steps": 4, "frames": 2}
        image = {"image": ("cat.png", png_bytes(), "image/png")}
        ok = await stand_in.slash(None, None, None, "animate", options=options, attachments=image)
        await ok.wait_for(lambda r: "ready" in str((r.original or {}).get("content")), timeout=20)
        good.fail_at = "KSampler"
        failing = await stand_in.slash(None, None, None, "animate", options=options, attachments=image)
        await failing.wait_for(lambda r: bool(r.followups), timeout=20)
        await (await stand_in.slash(None, None, None, "status")).wait_message(timeout=10)
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = stderr.decode()
    assert proc.returncode == 0, log[-3000:]
    assert "delivered" in log and "failed" in log, log[-3000:]
    secrets = [Secret("Discord token", stand_in.token), Secret("ComfyUI token", COMFY_TOKEN),
               Secret("password", PASSWORD), Secret("user:password", f"{USER}:{PASSWORD}"),
               Secret("working server URL", good.url), Secret("working host:port", f"127.0.0.1:{good.port}"),
               Secret("down host:port", f"127.0.0.1:{down}")]
    lines = [line for line in log.splitlines() if find_secrets(line, secrets) or "Traceback" in line]
    assert not lines, "\n".join(lines)
    sent = [f"{where}: {label}" for where, what in discord_payloads(stand_in) for label in find_secrets(what, secrets)]
    assert not sent, "\n".join(sent)
