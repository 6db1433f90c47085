"""A whole bot for the /animate tests: Discord stand-in, ComfyUI test server(s), job service, cogs.

``animate_bot`` is a factory: ``env = await animate_bot(servers=..., **settings_overrides)``
starts ComfyUI test servers (``step_time`` 0.02 by default), builds the settings (DATA_DIR in
tmp_path, the repository's workflows) and the bot with :func:`bot.app.build`, the wiring
``python -m bot run`` uses (shorter health and sweep intervals), and starts it against the
stand-in. Everything is closed at teardown. ``AnimateBot.setup_hook`` starts the services.
Status edits use :data:`FAST_PACING` unless ``pacing=None`` (Discord's real pacing). The safety
detector is the deterministic stand-in (``FakeSafetyDetector.with_markers()``: magenta images are
explicit, orange ones suggestive) unless ``safety=`` gives another (the real one, a failing one).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.app import AnimateBot, build
from bot.discord.delivery import DiscordDelivery
from bot.discord.edit_scheduler import EditPacing
from bot.jobs.service import JobService
from bot.safety import SafetyDetector
from bot.services import Overrides
from bot.settings import ServerConfig, Settings
from standins.comfy_server.server import ComfyTestServer
from standins.discord_server import DiscordStandIn
from standins.discord_server.fixtures import discord_stand_in
from standins.fake_safety import FakeSafetyDetector
from standins.wait import wait_until

__all__ = ["discord_stand_in", "AnimateEnv", "png_bytes"]

REPO = Path(__file__).resolve().parents[2]
# Faster than Discord's real pacing so short jobs show their phases; same shape of limits. The
# message budget stays Discord's (3 progress edits per 2 s): the stand-in's buckets run in real time.
FAST_PACING = EditPacing(running_interval=0.05, waiting_interval=0.2, channel_edits=20, channel_window=1.0)
EXTENSIONS = ("cogs.meta", "cogs.animate", "cogs.queue", "cogs.mod", "cogs.owner")


def png_bytes(width: int = 320, height: int = 192, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A PNG with a coloured block on the left half, so the first frame can be compared."""
    im = Image.new("RGB", (width, height), (20, 20, 220))
    im.paste(Image.new("RGB", (width // 2, height), colour), (0, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class AnimateEnv:
    bot: AnimateBot
    service: JobService
    stand_in: DiscordStandIn
    comfy: list[ComfyTestServer]
    settings: Settings
    extra: dict[str, Any] = field(default_factory=dict)
    stop: Callable[[], Awaitable[None]] | None = None  # close this bot now (e.g. to restart on the same DATA_DIR)

    @property
    def delivery(self) -> DiscordDelivery:
        return self.bot.delivery


AnimateFactory = Callable[..., Awaitable[AnimateEnv]]


@pytest.fixture
async def animate_bot(discord_stand_in: DiscordStandIn, comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]],
                      tmp_path: Path) -> AsyncIterator[AnimateFactory]:
    running: list[tuple[AnimateBot, asyncio.Task[None], aiohttp.ClientSession]] = []
    stopped: set[int] = set()

    async def stop_bot(bot: AnimateBot, task: asyncio.Task[None], session: aiohttp.ClientSession) -> None:
        if id(bot) in stopped:
            return
        stopped.add(id(bot))
        await bot.close()
        await asyncio.wait_for(task, 5)
        await session.close()

    async def factory(*, servers: int = 1, step_time: float = 0.02, server_urls: tuple[str, ...] = (),
                      pacing: EditPacing | None = FAST_PACING, comfy: list[ComfyTestServer] | None = None,
                      safety: SafetyDetector | None = None, **overrides: Any) -> AnimateEnv:
        """``comfy``: reuse running test servers (a restarted bot); else start ``servers`` new ones.
        ``safety``: the detector (default: a fresh ``FakeSafetyDetector.with_markers()``)."""
        if comfy is None:
            comfy = [await comfy_server_factory(step_time=step_time) for _ in range(servers)]
        configs = tuple(ServerConfig(f"gpu-{i + 1}", s.url) for i, s in enumerate(comfy))
        configs += tuple(ServerConfig(f"down-{i + 1}", url) for i, url in enumerate(server_urls))
        values: dict[str, Any] = dict(
            discord_token=discord_stand_in.token,
            comfyui_servers=configs,
            data_dir=tmp_path / "data",
            workflows_dir=REPO / "workflows",
            dev_guild_id=discord_stand_in.guild.id,
            comfyui_timeout=3.0,
            max_jobs_per_member=3,
        )
        values.update(overrides)
        settings = Settings(**values)
        session = aiohttp.ClientSession()
        bot = await build(settings, session, extensions=EXTENSIONS, guild_ready_timeout=0.05,
                          overrides=Overrides(health_interval=0.5, sweep_interval=0.5, edit_pacing=pacing,
                                              safety_detector=safety or FakeSafetyDetector.with_markers()))
        service = bot.jobs
        ready = asyncio.Event()

        async def on_ready() -> None:
            ready.set()

        bot.add_listener(on_ready, "on_ready")
        task = asyncio.create_task(bot.start(settings.discord_token))
        running.append((bot, task, session))
        await asyncio.wait_for(ready.wait(), 10)  # setup_hook started the service
        return AnimateEnv(bot=bot, service=service, stand_in=discord_stand_in, comfy=comfy, settings=settings,
                          stop=lambda: stop_bot(bot, task, session))

    yield factory
    for bot, task, session in running:
        await stop_bot(bot, task, session)


async def wait_job(service: JobService, job_id: str, *states: str, timeout: float = 10.0) -> Any:
    """Wait until the stored job is in one of ``states`` (its value names); returns the job."""
    seen: list[Any] = [None]

    async def reached() -> Any:
        seen[0] = job = await service.get(job_id)
        return job if job is not None and job.state.value in states else None

    return await wait_until(reached, timeout=timeout, what=f"job {job_id} to be {' or '.join(states)}",
                            describe=lambda: seen[0].state.value if seen[0] else "unknown")
