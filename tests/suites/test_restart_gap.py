"""A prompt that ends while the bot is down is delivered by the next bot (found by the mixed-fault run)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.animate.conftest import AnimateFactory, png_bytes, wait_job
from standins.discord_server import DiscordStandIn
from standins.wait import wait_until


@pytest.mark.timeout(40)
async def test_prompt_finished_while_the_bot_was_down_is_delivered_after_restart(
    animate_bot: AnimateFactory, discord_stand_in: DiscordStandIn
) -> None:
    env = await animate_bot(step_time=0.05)
    record = await discord_stand_in.slash(None, None, None, "animate", options={"steps": 8, "frames": 2},
                                          attachments={"image": ("cat.png", png_bytes(), "image/png")})
    await record.wait_ack()
    jobs = await wait_until(lambda: env.service.recent_jobs(discord_stand_in.user.id, discord_stand_in.guild.id),
                            timeout=10, what="the job to be stored")
    job = await wait_job(env.service, jobs[0].id, "running")
    await env.bot.close()
    async with aiohttp.ClientSession() as session:  # the server finishes the prompt meanwhile

        async def finished() -> bool:
            async with session.get(f"{env.comfy[0].url}/history/{job.prompt_id}") as response:
                return bool(await response.json())

        await wait_until(finished, timeout=10, what="the prompt to finish on the server", interval=0.05)
    second = await animate_bot(servers=0, comfyui_servers=env.settings.comfyui_servers)
    delivered = await wait_job(second.service, job.id, "delivered", "failed", timeout=10)
    assert delivered.state.value == "delivered"
