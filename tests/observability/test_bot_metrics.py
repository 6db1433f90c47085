"""The whole bot with ``METRICS_ADDRESS`` set: /metrics after one job, /readyz through an outage, off by default.

The bot is built by the production wiring (:func:`bot.app.build`, via the animate tests'
factory) against the Discord stand-in and a ComfyUI test server; its endpoints listen on
127.0.0.1 with a port the system picks.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from bot.comfy.client import ComfyClient
from bot.observability.legs import TimedComfyClient
from standins.wait import wait_until
from tests.animate.conftest import AnimateEnv, AnimateFactory, png_bytes, wait_job

from .helpers import samples

pytestmark = pytest.mark.timeout(60)

WORKFLOW = "svd_img2vid"
METRICS_ON: dict[str, Any] = {"metrics_address": ("127.0.0.1", 0)}


def base_url(env: AnimateEnv) -> str:
    assert env.bot.observability is not None
    host, port = env.bot.observability.server.bound_address
    return f"http://{host}:{port}"


async def scrape(env: AnimateEnv) -> str:
    async with aiohttp.ClientSession() as session, session.get(base_url(env) + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def get_json(env: AnimateEnv, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(base_url(env) + path) as resp:
        return resp.status, await resp.json()


def ours(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The bot's own samples (prometheus-client's process, platform and GC collectors left out)."""
    return {key: v for key, v in samples(text).items() if key[0].startswith("animate_bot_")}


def moved(before: str, after: str) -> dict[str, float]:
    """Every one of the bot's samples that changed, as ``name{labels}`` -> change (gauges too)."""
    old, new = ours(before), ours(after)
    out = {}
    for key, value in new.items():
        change = value - old.get(key, 0.0)
        if change == change and change != 0:  # NaN (an unknown queue length) never counts as a move
            name, labels = key
            out[name + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"] = change
    return out


async def test_metrics_show_exactly_one_job_and_nothing_secret(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(**METRICS_ON)
    stand_in = env.stand_in
    comfy = env.comfy[0]
    assert isinstance(env.bot.jobs.hubs["gpu-1"].client, TimedComfyClient)
    before = await scrape(env)
    record = await stand_in.slash(None, None, None, "animate", options={"steps": 4, "frames": 4},
                                  attachments={"image": ("cat.png", png_bytes(), "image/png")})
    await record.wait_for(lambda r: any(a["filename"].startswith("animation_")
                                        for a in (r.original or {}).get("attachments", [])), timeout=20)
    job = (await env.service.recent_jobs(stand_in.user.id, stand_in.guild.id))[0]
    await wait_job(env.service, job.id, "delivered")

    async def counted() -> str | None:
        text = await scrape(env)
        ended = samples(text).get(("animate_bot_jobs_ended_total", (("state", "delivered"), ("workflow", WORKFLOW))))
        return text if ended == 1 else None

    after = await wait_until(counted, timeout=10, what="the delivered job in /metrics")
    changes = moved(before, after)
    # exactly this job: one delivered, each of its times observed once, one submit and one deliver leg
    histograms = {name: value for name, value in changes.items() if not name.startswith("animate_bot_event_loop_lag")}
    counts = {name: value for name, value in histograms.items() if "_count{" in name or "_total{" in name}
    assert counts == {
        f"animate_bot_jobs_ended_total{{state=delivered,workflow={WORKFLOW}}}": 1,
        f"animate_bot_job_wait_seconds_count{{workflow={WORKFLOW}}}": 1,
        f"animate_bot_job_run_seconds_count{{workflow={WORKFLOW}}}": 1,
        f"animate_bot_job_total_seconds_count{{workflow={WORKFLOW}}}": 1,
        "animate_bot_submit_seconds_count{}": 1,
        "animate_bot_deliver_seconds_count{}": 1,
    }, changes
    # besides those histograms' buckets and sums, nothing moved (no refusal, no 429, no failed edit,
    # no reconnect, no job left active); a server's queue length may read differently
    bases = {re.sub(r"_(count|total)\{.*", "", name) for name in counts}
    others = {name for name in histograms if name not in counts
              and not (re.sub(r"_(bucket|sum)\{.*", "", name) in bases and re.search(r"_(bucket|sum)\{", name))}
    assert others <= {"animate_bot_server_queue_depth{server=gpu-1}"}, others
    now = samples(after)
    total = now[("animate_bot_job_total_seconds_sum", (("workflow", WORKFLOW),))]
    waited = now[("animate_bot_job_wait_seconds_sum", (("workflow", WORKFLOW),))]
    ran = now[("animate_bot_job_run_seconds_sum", (("workflow", WORKFLOW),))]
    assert 0 < ran <= total and 0 <= waited <= total
    assert now[("animate_bot_server_up", (("server", "gpu-1"),))] == 1
    assert all(now[("animate_bot_jobs_active", (("state", s),))] == 0 for s in ("waiting", "submitted", "running", "delivering"))
    assert all(v == 0 for (name, _), v in now.items() if name in ("animate_bot_refusals_total",
                                                                   "animate_bot_discord_edit_failures_total",
                                                                   "animate_bot_server_ws_reconnects_total"))
    assert now[("animate_bot_event_loop_lag_count", ())] >= 1
    # nothing that identifies a member, a guild, a server's address or a credential
    for secret in (stand_in.token, comfy.url, f"127.0.0.1:{comfy.port}", str(stand_in.user.id),
                   str(stand_in.guild.id), str(stand_in.channel.id), record.token, str(job.user_id), job.id):
        assert secret not in after, secret
    labels = {value for (_name, pairs) in ours(after) for _key, value in pairs}
    assert all(re.fullmatch(r"[A-Za-z0-9_.:/@ +-]+", value) for value in labels), labels


async def test_refusals_and_discord_429s_are_counted(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(**METRICS_ON)
    stand_in = env.stand_in
    stand_in.add_fault("POST", "/interactions/*/callback", 429, times=1)  # discord.py waits and retries
    record = await stand_in.slash(None, None, None, "animate", options={},
                                  attachments={"image": ("notes.txt", b"not an image", "text/plain")})
    await record.wait_message(timeout=10)
    assert record.ephemeral
    await env.bot.store.guilds.update_settings(stand_in.guild.id, paused=True)
    record = await stand_in.slash(None, None, None, "animate", options={},
                                  attachments={"image": ("cat.png", png_bytes(), "image/png")})
    await record.wait_message(timeout=10)
    text = await scrape(env)
    now = samples(text)
    assert now[("animate_bot_refusals_total", (("reason", "bad_input"),))] == 1
    assert now[("animate_bot_refusals_total", (("reason", "moderation"),))] == 1
    assert now[("animate_bot_discord_rate_limited_total",
                (("route", "POST /interactions/:id/:id/callback"), ("scope", "user")))] == 1
    assert record.token not in text and str(record.id) not in text


async def test_readyz_follows_the_only_comfyui_server_down_and_back(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(**METRICS_ON)
    comfy = env.comfy[0]
    assert await get_json(env, "/healthz") == (200, {"status": "ok"})
    status, body = await get_json(env, "/readyz")
    assert status == 200 and body["ready"] is True, body
    port = comfy.port
    await comfy.stop()

    async def not_ready() -> dict[str, Any] | None:
        status, body = await get_json(env, "/readyz")
        return body if status == 503 else None

    body = await wait_until(not_ready, timeout=15, what="/readyz to say not ready")
    assert body["ready"] is False and body["checks"]["servers_up_running_default"] is False
    assert body["checks"]["discord_logged_in"] is True and body["checks"]["store_open"] is True
    assert body["reasons"] == ["ComfyUI server gpu-1 is down"]
    assert str(port) not in str(body)
    assert await get_json(env, "/healthz") == (200, {"status": "ok"})  # liveness does not depend on ComfyUI
    assert samples(await scrape(env))[("animate_bot_server_up", (("server", "gpu-1"),))] == 0

    await comfy.start(port)

    async def ready() -> bool:
        status, _ = await get_json(env, "/readyz")
        return status == 200

    await wait_until(ready, timeout=15, what="/readyz to say ready again")
    assert samples(await scrape(env))[("animate_bot_server_up", (("server", "gpu-1"),))] == 1

    async def reconnected() -> bool:
        return samples(await scrape(env))[("animate_bot_server_ws_reconnects_total", (("server", "gpu-1"),))] == 1

    await wait_until(reconnected, timeout=15, what="the websocket reconnection in /metrics")


async def test_metrics_and_health_are_off_unless_metrics_address_is_set(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    assert env.settings.metrics_address is None
    assert env.bot.observability is None
    assert env.bot.job_delivery is env.bot.delivery
    assert type(env.bot.jobs.hubs["gpu-1"].client) is ComfyClient
    assert env.bot.animate_flow.on_refused is None
