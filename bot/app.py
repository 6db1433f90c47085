"""The Discord bot: :class:`AnimateBot` owns the shared resources; :func:`run_bot` runs it until a signal.

One ``aiohttp.ClientSession`` is made in :func:`run_bot` and handed to everything; the ComfyUI
clients are built from the settings, one per server, keyed by server name. Services (the job
service, the store...) go into ``services`` (name -> object); extensions listed in
``EXTENSIONS`` are loaded in ``setup_hook`` and build their cogs from ``bot.settings``,
``bot.comfy`` and ``bot.services`` explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.comfy.client import ComfyClient
from bot.discord.tree import BotTree
from bot.jobs.factory import open_job_service
from bot.logs import log_failure
from bot.observability.diagnostics import Diagnostics, bot_sources
from bot.settings import Settings

log = logging.getLogger(__name__)

# The extensions loaded at start, in order. Add new cogs here.
EXTENSIONS: tuple[str, ...] = ("cogs.meta", "cogs.animate", "cogs.queue", "cogs.mod", "cogs.owner")

COMMAND_HASH_FILE = "commands.sha256"


def bot_intents() -> discord.Intents:
    """No privileged intent: slash commands and components arrive as interactions anyway."""
    intents = discord.Intents.none()
    intents.guilds = True
    return intents


def command_digest(tree: discord.app_commands.CommandTree[Any]) -> str:
    """A hash of the global command payloads, to sync only when they changed."""
    payload = sorted((cmd.to_dict(tree) for cmd in tree.get_commands()), key=lambda c: (c.get("type", 1), c["name"]))
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class AnimateBot(commands.Bot):
    """The bot. It owns shared resources only: settings, the session, ComfyUI clients and services."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        *,
        comfy: Mapping[str, ComfyClient],
        services: Mapping[str, Any] | None = None,
        extensions: Sequence[str] = EXTENSIONS,
        sync: bool = False,
        **options: Any,
    ) -> None:
        options.setdefault("intents", bot_intents())
        # Mentions are off unless a message names whom it may ping (the requester of a result).
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(command_prefix=commands.when_mentioned, tree_cls=BotTree, help_command=None, **options)
        self.settings = settings
        self.session = session
        self.comfy: dict[str, ComfyClient] = dict(comfy)
        self.services: dict[str, Any] = dict(services or {})
        self.initial_extensions: tuple[str, ...] = tuple(extensions)
        self.force_sync = sync
        self.synced: str | None = None  # "guild", "global", "unchanged" or "failed" after setup_hook

    async def setup_hook(self) -> None:
        for name in self.initial_extensions:
            await self.load_extension(name)
        for cog in self.cogs.values():
            for menu in getattr(cog, "context_menus", ()):
                self.tree.add_command(menu)
        self.synced = await self.sync_commands()
        # Services start once the extensions wired them (e.g. the job service's delivery):
        # recovery may deliver results, which needs the logged-in HTTP client.
        for name, service in self.services.items():
            starter = getattr(service, "start", None)
            if starter is not None:
                log.info("Starting %s", name)
                await starter()

    async def sync_commands(self) -> str:
        """Sync to ``DEV_GUILD_ID`` when set; else globally with ``--sync`` or when the commands changed.

        A failure (Discord down, rate limited) is logged and the bot keeps running with the
        commands Discord already has; the next start tries again.
        """
        try:
            if self.settings.dev_guild_id is not None:
                guild = discord.Object(id=self.settings.dev_guild_id)
                self.tree.copy_global_to(guild=guild)
                commands_ = await self.tree.sync(guild=guild)
                log.info("Synced %d commands to the development guild %s", len(commands_), guild.id)
                return "guild"
            digest = command_digest(self.tree)
            path = self.settings.data_dir / COMMAND_HASH_FILE
            stored = await asyncio.to_thread(_read_text, path)
            if not self.force_sync and stored == digest:
                log.info("Slash commands unchanged since the last sync; not syncing")
                return "unchanged"
            commands_ = await self.tree.sync()
            await asyncio.to_thread(_write_text, path, digest)
            log.info("Synced %d commands globally (they can take a while to appear)", len(commands_))
            return "global"
        except discord.HTTPException as exc:
            log.error("Could not sync slash commands (HTTP %s); keeping the ones Discord has", exc.status)
            return "failed"

    async def on_ready(self) -> None:
        log.info("Logged in as %s (id %s) in %d servers", self.user, self.user.id if self.user else "?", len(self.guilds))

    async def close(self) -> None:
        """Close services (newest first) that have ``close()``, then the Discord connection."""
        for name, service in reversed(list(self.services.items())):
            closer = getattr(service, "close", None)
            if closer is None:
                continue
            try:
                await closer()
            except Exception:
                log_failure(log, logging.ERROR, "Closing service %s failed", name)
        await super().close()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def build_comfy_clients(settings: Settings, session: aiohttp.ClientSession) -> dict[str, ComfyClient]:
    return {
        server.name: ComfyClient(session, server, token=settings.comfyui_token, timeout=settings.comfyui_timeout)
        for server in settings.comfyui_servers
    }


async def serve(settings: Settings, *, sync: bool = False, stop: asyncio.Event | None = None) -> int:
    """Run the bot until ``stop`` is set (or SIGTERM/SIGINT), then close everything. Returns the exit status."""
    if not settings.discord_token:
        log.error("DISCORD_TOKEN is not set")
        return 2
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    status = 0
    try:
        async with aiohttp.ClientSession() as session:
            clients = build_comfy_clients(settings, session)
            jobs = await open_job_service(settings, session, clients)
            bot = AnimateBot(settings, session, comfy=clients, services={"jobs": jobs}, sync=sync)
            diagnostics = Diagnostics(bot_sources(bot))  # SIGUSR1 -> one line of counts (bot/observability/diagnostics.py)
            diagnostics.install(loop)
            bot_task = asyncio.create_task(bot.start(settings.discord_token), name="discord-bot")
            stop_task = asyncio.create_task(stop.wait(), name="stop-signal")
            try:
                await asyncio.wait({bot_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_task.cancel()
                if not bot_task.done():
                    log.info("Shutting down")
                await bot.close()
                diagnostics.uninstall()
            try:
                await bot_task
            except discord.LoginFailure:
                log.error("Discord refused the bot token: check DISCORD_TOKEN (Developer Portal, Bot tab)")
                status = 1
            except discord.PrivilegedIntentsRequired:
                log.error("Discord says a privileged intent is needed; this bot should need none")
                status = 1
            except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
                log.error("The Discord connection failed: %s", type(exc).__name__)
                status = 1
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return status


def run_bot(settings: Settings, sync: bool = False) -> int:
    """Entry point of ``python -m bot run``: run until SIGTERM/SIGINT, close gracefully."""
    return asyncio.run(serve(settings, sync=sync))
