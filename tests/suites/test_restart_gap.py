"""A prompt that ends while the bot is down is delivered by the next bot (found by the mixed-fault run)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.animate.conftest import AnimateFactory, png_bytes, wait_job
from standins.discord_server import DiscordStandIn


@pytest.mark.timeout(40)
async def test_prompt_finished_while_the_bot_was_down_is_delivered_after_restart(
    animate_bot: AnimateFactory, discord_stand_in: DiscordStandIn
) -> None:
    env = await animate_bot(step_time=0.05)
    record = await discord_stand_in.slash(None, None, None, "animate", options={"steps": 8, "frames": 2},
                                          attachments={"image": ("cat.png", png_bytes(), "image/png")})
    await record.wait_ack()
    jobs: list = []
    for _ in range(200):
        jobs = await env.service.recent_jobs(discord_stand_in.user.id, discord_stand_in.guild.id)
        if jobs:
            break
        await asyncio.sleep(0.05)
    job = await wait_job(env.service, jobs[0].id, "running")
    await env.bot.close()
    async with aiohttp.ClientSession() as session:  # the server finishes the prompt meanwhile
        for _ in range(200):
            async with session.get(f"{env.comfy[0].url}/history/{job.prompt_id}") as response:
                if await response.json():
                    break
            await asyncio.sleep(0.05)
    second = await animate_bot(servers=0, comfyui_servers=env.settings.comfyui_servers)
    delivered = await wait_job(second.service, job.id, "delivered", "failed", timeout=10)
    assert delivered.state.value == "delivered"
