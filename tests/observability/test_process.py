"""``python -m bot run`` as a real process with ``LOG_FORMAT=json`` and ``METRICS_ADDRESS`` set,
logged into a stand-in that announces two gateway shards.

Every line the process writes to stderr is one JSON object (time, level, logger, message; the
job id on a job's lines); no line and no metric carries a token, a password or a server address.
The test-only bootstrap points discord.py's REST base at the stand-in; the gateway URL comes
from the stand-in's own ``GET /gateway/bot`` answer (the bot is an AutoShardedBot).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from standins.discord_server import DiscordStandIn, point_discord_at
from standins.wait import wait_until
from tests.animate.conftest import png_bytes
from tests.suites.conftest import Secret, find_secrets

ROOT = Path(__file__).resolve().parents[2]
COMFY_TOKEN = "comfy-bearer-0123456789-secret"
USER, PASSWORD = "operator", "hunter2-secret-pw"
BOOTSTRAP = """
import sys, discord.http
discord.http.Route.BASE = sys.argv[1]
from bot.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def two_shards() -> AsyncIterator[DiscordStandIn]:
    stand_in = DiscordStandIn(shards=2)
    await stand_in.start()
    try:
        with point_discord_at(stand_in.api_base, stand_in.gateway_url):
            yield stand_in
    finally:
        await stand_in.stop()


@pytest.mark.timeout(60)
async def test_json_logs_and_metrics_of_a_real_process_carry_no_secret(
    two_shards: DiscordStandIn, comfy_server_factory: Any, tmp_path: Path
) -> None:
    stand_in = two_shards
    good = await comfy_server_factory(step_time=0.02, api_token=COMFY_TOKEN)
    down, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "DISCORD_TOKEN": stand_in.token,
        "COMFYUI_URLS": f"gpu-main={good.url},spare=http://{USER}:{PASSWORD}@127.0.0.1:{down}",
        "COMFYUI_TOKEN": COMFY_TOKEN,
        "DATA_DIR": str(tmp_path / "data"),
        "DEV_GUILD_ID": str(stand_in.guild.id),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "PYTHONPATH": str(ROOT),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BOOTSTRAP, stand_in.api_base, "--env-file", str(tmp_path / "no.env"), "run",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{metrics_port}"
    try:
        await asyncio.wait_for(stand_in.ready.wait(), 30)  # both shards identified
        assert sorted(stand_in.identified_shards) == [(0, 2), (1, 2)]
        record = await stand_in.slash(None, None, None, "animate", options={"steps": 3, "frames": 2},
                                      attachments={"image": ("cat.png", png_bytes(), "image/png")})
        await record.wait_for(lambda r: "ready" in str((r.original or {}).get("content")), timeout=20)
        async with aiohttp.ClientSession() as session:
            async def delivered() -> str | None:
                async with session.get(base + "/metrics") as resp:
                    text = await resp.text()
                return text if 'animate_bot_jobs_ended_total{state="delivered",workflow="svd_img2vid"} 1.0' in text else None

            metrics = await wait_until(delivered, timeout=10, what="the delivered job in /metrics")
            async with session.get(base + "/healthz") as resp:
                assert resp.status == 200

            async def ready() -> dict[str, Any] | None:  # discord.py says ready 2 s after the last GUILD_CREATE
                async with session.get(base + "/readyz") as resp:
                    body: dict[str, Any] = await resp.json()
                return body if resp.status == 200 else None

            readyz = await wait_until(ready, timeout=15, what="/readyz to say ready")
        assert readyz["checks"]["servers_up_running_default"] is True  # gpu-main runs the default workflow; spare is down
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = stderr.decode()
    assert proc.returncode == 0, text[-3000:]
    entries = []
    for line in text.splitlines():
        entry = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= set(entry), line
        assert entry["time"].endswith("Z") and "traceback" not in entry, line
        entries.append(entry)
    job_lines = [e for e in entries if e["message"].startswith("job ")]
    assert job_lines and all(e.get("job_id") == e["message"].split()[1] for e in job_lines)
    assert any(e["message"].endswith("delivered") for e in job_lines)
    assert any("metrics and health endpoints listening" in e["message"] for e in entries)
    assert any(e["message"] == "Gateway shard 1 ready" for e in entries)
    secrets = [Secret("Discord token", stand_in.token), Secret("ComfyUI token", COMFY_TOKEN),
               Secret("password", PASSWORD), Secret("user:password", f"{USER}:{PASSWORD}"),
               Secret("working server URL", good.url), Secret("working host:port", f"127.0.0.1:{good.port}"),
               Secret("down host:port", f"127.0.0.1:{down}")]
    leaks = [line for line in text.splitlines() if find_secrets(line, secrets)]
    assert not leaks, "\n".join(leaks)
    assert not find_secrets(metrics, [*secrets, Secret("guild id", str(stand_in.guild.id)),
                                      Secret("user id", str(stand_in.user.id)), Secret("interaction token", record.token)])
    assert 'animate_bot_server_up{server="spare"} 0.0' in metrics and 'animate_bot_server_up{server="gpu-main"} 1.0' in metrics
