"""The ``world`` fixture: a Discord stand-in (in this process), a ComfyUI test server (its own
process) and the bot processes a test starts against them; everything stopped at teardown.
A test fails at teardown if the stand-in saw a Discord rule broken or an unhandled route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from standins.comfy_server.control import ComfyControl
from standins.comfy_server.fixtures import start_server_process
from standins.discord_server import DiscordStandIn
from tests.blackbox.harness import World

STEP_TIME = 0.01  # seconds per ComfyUI progress step: jobs take a fraction of a second


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    discord = DiscordStandIn()
    await discord.start()
    comfy = await asyncio.to_thread(start_server_process, tmp_path / "comfy", step_time=STEP_TIME)
    session = aiohttp.ClientSession()
    world = World(discord=discord, comfy=comfy, control=ComfyControl(session, comfy.url), session=session,
                  tmp=tmp_path)
    try:
        yield world
    finally:
        for bot in world.bots:
            await bot.kill()
        await session.close()
        await asyncio.to_thread(comfy.stop)
        await discord.stop()
    problems = [f"violation {v.kind}: {v.detail} ({v.method} {v.path})" for v in discord.unexpected_violations()]
    problems += [f"unhandled route: {r.method} {r.path}" for r in discord.unhandled_requests()]
    if problems:
        pytest.fail("Discord stand-in saw problems:\n" + "\n".join(problems), pytrace=False)
