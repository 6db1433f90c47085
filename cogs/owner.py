"""``/owner``: commands for whoever runs the bot (``OWNER_IDS`` or the application's owner).

- ``/owner reload-workflows`` loads ``WORKFLOWS_DIR`` again into the running job service and
  reports what loaded and what did not. Jobs already queued keep their workflow if it still
  exists. ``/animate``'s options are built at start: when the default workflow's member options
  changed, they change on Discord only after a restart (or ``python -m bot run --sync``).
- ``/owner servers`` shows each ComfyUI server by *name*: health, queue, our jobs on it, last
  contact and the last error (scrubbed). Never a URL or a credential.

The commands are registered like any other (so they sync everywhere) and refuse anyone who is
not an owner, privately.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.errors import NotAllowed
from bot.jobs.service import JobService
from bot.moderation.audit_text import scrub
from bot.settings import Settings
from bot.workflows import Workflow
from bot.workflows.loader import load_registry

log = logging.getLogger(__name__)

__all__ = ["Owner", "options_signature", "setup"]

OWNER_ONLY = "Only the bot's owner can use this command."
MAX_REPORT = 1900


def options_signature(workflow: Workflow | None) -> tuple[Any, ...]:
    """What ``/animate``'s parameters are built from (to tell whether a restart is needed)."""
    if workflow is None:
        return ()
    return tuple((o.name, o.type, o.min, o.max, tuple(o.choices or ()), o.default, o.description)
                 for o in workflow.member_options)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


class Owner(commands.Cog):
    """The ``/owner`` command group."""

    owner = app_commands.Group(name="owner", description="Commands for the bot's owner")

    def __init__(self, *, bot: commands.Bot | commands.AutoShardedBot, jobs: JobService, settings: Settings) -> None:
        self.bot = bot
        self.jobs = jobs
        self.settings = settings

    async def _require_owner(self, interaction: discord.Interaction[Any]) -> None:
        user = interaction.user
        if user.id in self.settings.owner_ids:
            return
        try:
            if await self.bot.is_owner(user):
                return
        except discord.HTTPException as exc:
            log.warning("Could not ask Discord who owns the application (HTTP %s)", exc.status)
        raise NotAllowed(OWNER_ONLY, detail=f"user {user.id} is not an owner")

    @owner.command(name="reload-workflows", description="Load the workflows folder again")
    async def reload_workflows(self, interaction: discord.Interaction[Any]) -> None:
        await self._require_owner(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        result = await asyncio.to_thread(load_registry, self.settings.workflows_dir)
        before = options_signature(self.jobs.workflows.default)
        lines: list[str] = []
        if len(result.registry):
            self.jobs.replace_workflows(result.registry)
            default = result.registry.default
            names = ", ".join(f"**{n}**" for n in result.registry.names())
            lines.append(f"Loaded {len(result.registry)} workflow(s): {names} (default: {default.name if default else '—'}).")
            if options_signature(default) != before:
                lines.append("The default workflow's options changed: /animate shows the new options after a "
                             "restart (`python -m bot run --sync`).")
        else:
            lines.append("No usable workflow was found; the workflows already loaded stay in use.")
        for error in result.errors:
            lines.append(f"⚠️ {scrub(str(error), limit=300)}")
        log.info("Workflows reloaded by %s: %d loaded, %d error(s)", interaction.user.id, len(result.registry),
                 len(result.errors))
        text = "\n".join(lines)
        await interaction.followup.send(text[:MAX_REPORT], ephemeral=True)

    @owner.command(name="servers", description="Each image server's health and load")
    async def servers(self, interaction: discord.Interaction[Any]) -> None:
        await self._require_owner(interaction)
        lines = []
        for view in self.jobs.server_views():
            status = view.status
            if not status.healthy:
                state = "🔴 down"
            elif status.consecutive_failures or status.last_seen is None:
                state = "🟠 not answering"
            else:
                state = "🟢 up"
            socket = "connected" if view.websocket_connected else "not connected"
            line = (f"**{scrub(status.name, limit=60)}**: {state} · our jobs {status.in_flight}/{status.capacity} · "
                    f"queue {status.queue_remaining} · websocket {socket} · last seen {_ago(view.seen_ago)}")
            if status.consecutive_failures:
                line += f" · {status.consecutive_failures} failed check(s)"
            if view.last_error and not status.healthy:
                line += f" · last error: {scrub(view.last_error, limit=150)}"
            for found in view.workflow_problems:
                if found.blocking:
                    more = f" (+{len(found.blocking) - 1} more)" if len(found.blocking) > 1 else ""
                    line += f"\n  ⛔ can't run **{found.workflow}**: {scrub(found.blocking[0], limit=200)}{more}"
                elif found.partial:
                    more = f" (+{len(found.partial) - 1} more)" if len(found.partial) > 1 else ""
                    line += f"\n  ⚠️ **{found.workflow}** runs, but refuses: {scrub(found.partial[0], limit=200)}{more}"
            lines.append(line)
        waiting = len(self.jobs.waiting_order())
        running = len(await self.jobs.running_jobs())
        lines.append(f"Jobs: {running} running, {waiting} waiting in the bot's line.")
        text = "\n".join(lines) if lines else "No image server is configured."
        await interaction.response.send_message(text[:MAX_REPORT], ephemeral=True,
                                                allowed_mentions=discord.AllowedMentions.none())


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Owner(bot=bot, jobs=bot.jobs, settings=bot.settings))
