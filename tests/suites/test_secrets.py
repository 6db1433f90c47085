"""Secrets suite: tokens, passwords and ComfyUI URLs never reach Discord or the logs at INFO and above.

The bot runs with a recognisable Discord token, a ``COMFYUI_TOKEN`` (server with ``api_token``)
or basic-auth credentials in the ComfyUI URLs (server with ``basic_auth``), named servers, and a
second server that is down (closed port, credentials in its URL). Then failures are provoked:
an execution error, a validation failure (missing checkpoint), a corrupt image, Discord 503s,
interaction tokens that Discord stops accepting, the only server stopping, and an unexpected
exception whose message carries the URL and the tokens. Everything the bot sent to the Discord
stand-in (bodies, file names, file bytes) and every bot log record at INFO+ is searched.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Any

import pytest

import bot.jobs.runner as runner_module
import bot.jobs.service as service_module
from bot.jobs.models import JobState
from bot.settings import load_settings
from tests.animate.conftest import AnimateEnv, AnimateFactory, png_bytes
from standins.comfy_server.server import ComfyTestServer
from standins.discord_server import DiscordStandIn, InteractionRecord, Member
from standins.wait import wait_until
from tests.suites.conftest import Secret, discord_payloads, find_secrets, log_texts

COMFY_TOKEN = "comfy-tok-5e1d7a9b3c"
USER = "render-admin"
PASSWORD = "Pw-s3cr3t-9f2c"
TERMINAL = {"delivered", "failed", "cancelled", "timed_out"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class World:
    env: AnimateEnv
    good: ComfyTestServer
    secrets: list[Secret]


async def start_world(mode: str, animate_bot: AnimateFactory, comfy_server_factory: Any,
                      stand_in: DiscordStandIn, **overrides: Any) -> World:
    """The bot against one working server (auth per ``mode``) and one down server with credentials."""
    if mode == "token":
        good = await comfy_server_factory(step_time=0.02, api_token=COMFY_TOKEN)
        good_url = good.url
    else:
        good = await comfy_server_factory(step_time=0.02, basic_auth=(USER, PASSWORD))
        good_url = good.url.replace("http://", f"http://{USER}:{PASSWORD}@")
    down = closed_port()
    env_vars = {
        "DISCORD_TOKEN": stand_in.token,
        "COMFYUI_URLS": f"gpu-main={good_url}, spare=http://{USER}:{PASSWORD}@127.0.0.1:{down}/comfy",
    }
    if mode == "token":
        env_vars["COMFYUI_TOKEN"] = COMFY_TOKEN
    settings = load_settings(env_vars)
    env = await animate_bot(servers=0, comfyui_servers=settings.comfyui_servers,
                            comfyui_token=settings.comfyui_token, **overrides)
    secrets = [
        Secret("Discord token", stand_in.token),
        Secret("ComfyUI token", COMFY_TOKEN),
        Secret("password", PASSWORD),
        Secret("user:password", f"{USER}:{PASSWORD}"),
        Secret("ComfyUI username", USER),
        Secret("working server URL", good.url),
        Secret("working server host:port", f"127.0.0.1:{good.port}"),
        Secret("down server host:port", f"127.0.0.1:{down}"),
        Secret("down server URL", f"http://127.0.0.1:{down}/comfy"),
    ]
    return World(env=env, good=good, secrets=secrets)


async def animate(env: AnimateEnv, user: Member, image: bytes | None = None) -> InteractionRecord:
    return await env.stand_in.slash(None, None, user, "animate", options={"steps": 4, "frames": 2},
                                    attachments={"image": ("cat.png", image or png_bytes(), "image/png")})


async def job_end(env: AnimateEnv, user: Member, timeout: float = 20.0) -> Any:
    """Wait until ``user``'s only job is stored as ended; returns it."""

    async def jobs() -> list[Any]:
        return await env.service.recent_jobs(user.id, env.stand_in.guild.id)

    async def ended() -> Any:
        found = await jobs()
        return found[0] if found and found[0].state.value in TERMINAL else None

    async def states() -> list[str]:
        return [j.state.value for j in await jobs()]

    return await wait_until(ended, timeout=timeout, what=f"{user.username}'s job to end", describe=states,
                            interval=0.05)


async def settled(record: InteractionRecord, predicate: Any, timeout: float = 10.0) -> None:
    await record.wait_for(predicate, timeout)


def leaks(stand_in: DiscordStandIn, records: list[logging.LogRecord], secrets: list[Secret]) -> list[str]:
    found = []
    for where, what in discord_payloads(stand_in):
        for label in find_secrets(what, secrets):
            found.append(f"Discord {where}: {label}")
        if isinstance(what, str) and "Traceback" in what:
            found.append(f"Discord {where}: Traceback")
    for name, text in log_texts(records):
        for label in find_secrets(text, secrets):
            found.append(f"log {name}: {label}: {text[:300]!r}")
        if "Traceback" in text:
            found.append(f"log {name}: Traceback: {text[:300]!r}")
    return found


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["token", "basic"])
async def test_secrets_stay_out_of_discord_and_info_logs_through_failures(
    mode: str, animate_bot: AnimateFactory, comfy_server_factory: Any, discord_stand_in: DiscordStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    stand_in = discord_stand_in
    world = await start_world(mode, animate_bot, comfy_server_factory, stand_in)
    env, good = world.env, world.good
    members = {name: stand_in.add_member(name) for name in
               ("ok", "exec", "valid", "corrupt", "slow503", "expired", "offline")}

    # a result, with one 503 on the first status edit (discord.py retries webhooks on 5xx)
    stand_in.add_fault("PATCH", f"/webhooks/{stand_in.application_id}/*/messages/*", 503, times=1)
    record = await animate(env, members["ok"])
    assert (await job_end(env, members["ok"])).state is JobState.DELIVERED

    # an execution error inside ComfyUI
    good.fail_at = "KSampler"
    record = await animate(env, members["exec"])
    assert (await job_end(env, members["exec"])).state is JobState.FAILED
    await settled(record, lambda r: bool(r.followups))
    good.fail_at = None

    # a validation failure: the server has no checkpoint
    good.checkpoints = []
    record = await animate(env, members["valid"])
    job = await job_end(env, members["valid"])
    assert job.state is JobState.FAILED and "model is missing" in (job.error or "")
    await settled(record, lambda r: bool(r.followups))
    good.checkpoints = ["svd_xt_1_1.safetensors"]

    # a corrupt image
    record = await animate(env, members["corrupt"], image=png_bytes()[:60])
    await settled(record, lambda r: bool(r.followups))

    # Discord stops accepting the interaction token mid-job: the result goes to the channel
    stand_in.allow_violation("token_expired")  # Discord expired the tokens early: the bot cannot know
    good.step_time = 0.2
    record = await animate(env, members["expired"])
    await record.wait_ack()
    stand_in.expire_tokens()
    assert (await job_end(env, members["expired"])).state is JobState.DELIVERED
    good.step_time = 0.02

    # /status and /queue (they name the servers; never their addresses)
    for command in ("status", "queue"):
        await (await stand_in.slash(None, None, None, command)).wait_message(timeout=10)

    # the only working server stops: once the bot has noticed, /animate is refused as offline
    # (an /animate in the gap before it notices would be accepted and fail: not this case)
    noticed = asyncio.Event()
    env.service.pool.add_listener(lambda backend, healthy: noticed.set() if backend.name == "gpu-main"
                                  and not healthy else None)
    await good.stop()
    await asyncio.wait_for(noticed.wait(), 10)
    assert not any(b.healthy for b in env.service.pool)
    offline_record = await animate(env, members["offline"])
    await offline_record.wait_for(lambda r: r.original is not None and not (r.original.get("flags", 0) & 128)
                                  or bool(r.followups), timeout=10)
    assert "offline" in str([offline_record.original, offline_record.followups])
    assert not await env.service.recent_jobs(members["offline"].id, stand_in.guild.id)

    assert len(stand_in.requests) > 30
    found = leaks(stand_in, caplog.records, world.secrets)
    assert not found, "\n".join(found)


@pytest.mark.timeout(30)
async def test_unexpected_exception_shows_members_nothing_secret(
    animate_bot: AnimateFactory, comfy_server_factory: Any, discord_stand_in: DiscordStandIn,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    world = await start_world("basic", animate_bot, comfy_server_factory, discord_stand_in)
    env = world.env
    message = (f"cannot reach http://{USER}:{PASSWORD}@127.0.0.1:{world.good.port} "
               f"(token {COMFY_TOKEN}, bot {discord_stand_in.token})")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(message)

    monkeypatch.setattr(runner_module, "build_graph", broken)
    member = discord_stand_in.add_member("unlucky")
    record = await animate(env, member)
    job = await job_end(env, member)
    assert job.state is JobState.FAILED and job.error == service_module.GENERIC_FAILURE
    await record.wait_for(lambda r: bool(r.followups), timeout=10)
    assert "went wrong on our side" in record.followups[-1]["content"]
    sent = [f"Discord {where}: {label}" for where, what in discord_payloads(discord_stand_in)
            for label in find_secrets(what, world.secrets)]
    assert not sent, "\n".join(sent)


@pytest.mark.timeout(30)
async def test_unexpected_exception_keeps_secrets_and_traceback_out_of_info_logs(
    animate_bot: AnimateFactory, comfy_server_factory: Any, discord_stand_in: DiscordStandIn,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    world = await start_world("token", animate_bot, comfy_server_factory, discord_stand_in)
    message = f"cannot reach {world.good.url} with token {COMFY_TOKEN} as {USER}:{PASSWORD}"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(message)

    monkeypatch.setattr(runner_module, "build_graph", broken)
    member = discord_stand_in.add_member("unlucky")
    await animate(world.env, member)
    assert (await job_end(world.env, member)).state is JobState.FAILED
    found = leaks(discord_stand_in, caplog.records, world.secrets)
    assert not found, "\n".join(found)


@pytest.mark.timeout(30)
async def test_discord_503_during_delivery_is_retried_and_logged_without_traceback(
    animate_bot: AnimateFactory, comfy_server_factory: Any, discord_stand_in: DiscordStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    stand_in = discord_stand_in
    world = await start_world("token", animate_bot, comfy_server_factory, stand_in)
    stand_in.allow_violation("token_expired")  # Discord expired the tokens early: the bot cannot know
    world.good.step_time = 0.2
    member = stand_in.add_member("late")
    record = await animate(world.env, member)
    await record.wait_ack()
    stand_in.expire_tokens()
    fault = stand_in.add_fault("POST", "/channels/*/messages", 503, times=1)  # not retried by discord.py
    assert (await job_end(world.env, member)).state is JobState.DELIVERED
    assert fault.hits == 1
    results = [m for m in stand_in.channel_messages() if f"<@{member.id}>" in m["content"]
               and any(a["filename"].startswith("animation_") for a in m["attachments"])]
    assert len(results) == 1
    found = leaks(stand_in, caplog.records, world.secrets)
    assert not found, "\n".join(found)
