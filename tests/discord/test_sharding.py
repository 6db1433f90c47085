"""The bot as an AutoShardedBot against a stand-in that announces two shards.

discord.py asks ``GET /gateway/bot`` how many shards to open and where; the stand-in answers two,
with its own gateway URL, expects one IDENTIFY per shard and sends each guild's events on the
shard ``(guild_id >> 22) % 2``. The bot must answer commands from a guild on either shard, and
run a job for each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.app import build
from bot.services import Overrides
from bot.settings import ServerConfig, Settings
from standins.comfy_server.server import ComfyTestServer
from standins.discord_server import DiscordStandIn, message_text, point_discord_at
from tests.animate.conftest import EXTENSIONS, FAST_PACING, png_bytes, wait_job

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def two_shards() -> AsyncIterator[DiscordStandIn]:
    stand_in = DiscordStandIn(shards=2)
    await stand_in.start()
    try:
        with point_discord_at(stand_in.api_base, stand_in.gateway_url):
            yield stand_in
    finally:
        await stand_in.stop()
    assert not stand_in.unexpected_violations()
    assert not stand_in.unhandled_requests()


async def test_an_autosharded_bot_answers_guilds_on_both_shards(two_shards: DiscordStandIn, comfy_server: ComfyTestServer,
                                                                 tmp_path: Path) -> None:
    stand_in = two_shards
    guilds = [stand_in.add_guild("Shard Zero", shard=0), stand_in.add_guild("Shard One", shard=1)]
    assert [stand_in.shard_of(g.id) for g in guilds] == [0, 1]
    settings = Settings(discord_token=stand_in.token, comfyui_servers=(ServerConfig("gpu-1", comfy_server.url),),
                        data_dir=tmp_path / "data", workflows_dir=REPO / "workflows", comfyui_timeout=3.0)
    session = aiohttp.ClientSession()
    bot = await build(settings, session, extensions=EXTENSIONS, guild_ready_timeout=0.05,
                      overrides=Overrides(health_interval=0.5, sweep_interval=0.5, edit_pacing=FAST_PACING))
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    bot.add_listener(on_ready, "on_ready")
    task = asyncio.create_task(bot.start(settings.discord_token))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        assert stand_in.requests_to("GET", "/gateway/bot")
        assert sorted(stand_in.identified_shards) == [(0, 2), (1, 2)]
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        assert all(bot.get_guild(g.id) is not None for g in [stand_in.guild, *guilds])
        assert bot.discord_state() == (True, None)
        for guild in guilds:
            assert bot.get_guild(guild.id).shard_id == stand_in.shard_of(guild.id)  # type: ignore[union-attr]

        for guild in guilds:
            status = await stand_in.slash(guild, guild.channels[0], None, "status")
            text = message_text(await status.wait_message(timeout=10))
            assert status.shard == stand_in.shard_of(guild.id)
            assert "gpu-1" in text and "shard 0 connected" in text and "shard 1 connected" in text, text

        records = [await stand_in.slash(guild, guild.channels[0], None, "animate", options={"steps": 2, "frames": 2},
                                        attachments={"image": ("cat.png", png_bytes(), "image/png")})
                   for guild in guilds]
        for record in records:
            await record.wait_for(lambda r: any(a["filename"].startswith("animation_")
                                                for a in (r.original or {}).get("attachments", [])), timeout=20)
        assert [r.shard for r in records] == [0, 1]
        jobs = [job for guild in guilds for job in await bot.jobs.recent_jobs(stand_in.user.id, guild.id)]
        assert sorted(job.guild_id for job in jobs) == sorted(g.id for g in guilds)
        for job in jobs:
            await wait_job(bot.jobs, job.id, "delivered")
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)
        await session.close()


async def test_the_stand_in_refuses_an_identify_with_the_wrong_shard_count(two_shards: DiscordStandIn) -> None:
    stand_in = two_shards
    async with aiohttp.ClientSession() as session:
        async with session.get(stand_in.api_base + "/gateway/bot",
                               headers={"Authorization": f"Bot {stand_in.token}"}) as resp:
            body = await resp.json()
        assert body["shards"] == 2 and body["url"] == stand_in.gateway_url
        for shard, code in (([0, 1], 4011), ([2, 2], 4010)):
            async with session.ws_connect(stand_in.gateway_url) as ws:
                await ws.receive_json()  # HELLO
                await ws.send_json({"op": 2, "d": {"token": stand_in.token, "shard": shard, "intents": 1,
                                                   "properties": {}}})
                message = await ws.receive()
                assert ws.close_code == code, message
    assert stand_in.identifies == 0
