"""``/help`` (generated from the registered commands) and ``/status`` (each ComfyUI server by name).

The cog is a thin adapter: it gets the command tree, the ComfyUI clients and the gateway shards'
health explicitly, so a test can build it without a whole bot. ``/status`` never shows a URL:
only the server's name; its footer says how the bot's gateway shards are doing.
``/help`` starts with the content-safety mode that applies where it is asked, then this server's
caps and defaults for ``/animate`` options when a moderator set any (``/mod caps``, ``/mod defaults``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.comfy.errors import ComfyAuthError, ComfyTimeout
from bot.discord.shards import ShardHealth, shard_summary
from bot.moderation.caps import OptionRules, describe_rules
from bot.safety.gate import SafetyGate
from bot.safety.messages import ALWAYS_STRICT, mode_summary

log = logging.getLogger(__name__)

STATUS_TIMEOUT = 5.0
EMBED_COLOUR = discord.Colour.blurple()
# Discord's embed limits (a little margin on the total).
MAX_FIELD_VALUE, MAX_FIELDS, MAX_EMBED_TOTAL, MAX_EMBEDS = 1024, 25, 5800, 10

_OPTION_TYPES = {
    discord.AppCommandOptionType.string: "text",
    discord.AppCommandOptionType.integer: "whole number",
    discord.AppCommandOptionType.number: "number",
    discord.AppCommandOptionType.boolean: "yes/no",
    discord.AppCommandOptionType.user: "member",
    discord.AppCommandOptionType.channel: "channel",
    discord.AppCommandOptionType.role: "role",
    discord.AppCommandOptionType.mentionable: "member or role",
    discord.AppCommandOptionType.attachment: "file",
}


class StatusSource(Protocol):
    """What ``/status`` needs from a ComfyUI client."""

    async def system_stats(self) -> Any: ...

    async def queue_remaining(self) -> int: ...


@dataclass(frozen=True)
class ServerStatus:
    """One server's health as members see it (no URL)."""

    name: str
    up: bool
    queue: int | None = None
    gpu: str | None = None
    vram_free: int | None = None
    vram_total: int | None = None
    version: str | None = None
    problem: str | None = None


async def probe(name: str, client: StatusSource, timeout: float) -> ServerStatus:
    """Ask one server for ``/system_stats`` and ``/prompt`` (queue), within ``timeout`` seconds."""
    try:
        stats, queue = await asyncio.wait_for(asyncio.gather(client.system_stats(), client.queue_remaining()), timeout)
    except (TimeoutError, ComfyTimeout):
        return ServerStatus(name=name, up=False, problem="not answering")
    except ComfyAuthError:
        log.warning("ComfyUI server %s refused our credentials", name)
        return ServerStatus(name=name, up=False, problem="refused our credentials")
    except Exception as exc:  # any failure means "down" for members; the detail goes to the log
        log.info("ComfyUI server %s is down: %s", name, type(exc).__name__)
        return ServerStatus(name=name, up=False, problem="unreachable")
    devices = list(getattr(stats, "devices", []) or [])
    device = next((d for d in devices if getattr(d, "type", "") != "cpu"), devices[0] if devices else None)
    return ServerStatus(
        name=name,
        up=True,
        queue=queue,
        gpu=getattr(device, "name", None),
        vram_free=getattr(device, "vram_free", None),
        vram_total=getattr(device, "vram_total", None),
        version=getattr(stats, "comfyui_version", None),
    )


async def gather_status(clients: Mapping[str, StatusSource], timeout: float = STATUS_TIMEOUT) -> list[ServerStatus]:
    """Probe every server at once."""
    return list(await asyncio.gather(*(probe(name, client, timeout) for name, client in clients.items())))


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024**3:.1f} GiB"


def status_embed(statuses: Sequence[ServerStatus], shards: Sequence[ShardHealth] | None = None) -> discord.Embed:
    up = sum(s.up for s in statuses)
    embed = discord.Embed(title="ComfyUI servers", colour=EMBED_COLOUR,
                          description=f"{up} of {len(statuses)} up" if statuses else "No ComfyUI server is configured.")
    for s in statuses[:MAX_FIELDS]:
        if s.up:
            lines = [
                "🟢 up",
                f"Queue: {s.queue}",
                f"GPU: {s.gpu or 'unknown'}",
                f"VRAM: {_gib(s.vram_free)} free of {_gib(s.vram_total)}",
                f"ComfyUI {s.version or 'version unknown'}",
            ]
        else:
            lines = [f"🔴 down ({s.problem or 'unreachable'})"]
        embed.add_field(name=s.name[:256], value="\n".join(lines)[:MAX_FIELD_VALUE], inline=True)
    if shards is not None:
        embed.set_footer(text=shard_summary(shards)[:2048])
    return embed


def _option_line(param: app_commands.Parameter) -> str:
    kind = _OPTION_TYPES.get(param.type, param.type.name)
    need = "required" if param.required else "optional"
    line = f"• `{param.display_name}` ({kind}, {need}): {param.description}"
    if param.choices:
        line += " Choices: " + ", ".join(c.name for c in param.choices[:10])
    if param.min_value is not None or param.max_value is not None:
        line += f" Range: {param.min_value if param.min_value is not None else '…'}–" \
                f"{param.max_value if param.max_value is not None else '…'}."
    return line


def help_entries(commands_: Sequence[app_commands.Command[Any, ..., Any] | app_commands.Group | app_commands.ContextMenu]
                 ) -> list[tuple[str, str]]:
    """(title, text) for every command, subcommand and context menu, with every option."""
    out: list[tuple[str, str]] = []
    for cmd in sorted(commands_, key=lambda c: c.name):
        if isinstance(cmd, app_commands.ContextMenu):
            where = "message" if cmd.type is discord.AppCommandType.message else "member"
            out.append((f"Apps → {cmd.name}", f"Right-click a {where}, then Apps → {cmd.name}."))
        elif isinstance(cmd, app_commands.Group):
            out += help_entries(list(cmd.commands))
        else:
            lines = [cmd.description] + [_option_line(p) for p in cmd.parameters]
            for i, chunk in enumerate(_chunks(lines)):
                out.append((f"/{cmd.qualified_name}" + (" (continued)" if i else ""), chunk))
    return out


def _chunks(lines: Sequence[str]) -> list[str]:
    """Lines joined into texts that each fit one embed field (a long option list takes several)."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        if current and len(current) + 1 + len(line) > MAX_FIELD_VALUE:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    chunks.append(current)
    return chunks


def help_pages(entries: Sequence[tuple[str, str]]) -> list[list[discord.Embed]]:
    """Pack the entries into messages of embeds that respect Discord's limits.

    Discord counts the 6000 characters over all the embeds of one message (and allows 10
    embeds, 25 fields each), so a long help is split over several messages.
    """
    pages: list[list[discord.Embed]] = []
    page: list[discord.Embed] = []
    current = discord.Embed(title="Commands", colour=EMBED_COLOUR)
    page_total = len(current)
    for title, text in entries:
        title = title[:256]
        text = text if len(text) <= MAX_FIELD_VALUE else text[: MAX_FIELD_VALUE - 1] + "…"
        size = len(title) + len(text)
        if page_total + size > MAX_EMBED_TOTAL:
            pages.append(page + [current])
            page, current, page_total = [], discord.Embed(colour=EMBED_COLOUR), 0
        elif len(current.fields) >= MAX_FIELDS:
            page.append(current)
            current = discord.Embed(colour=EMBED_COLOUR)
            if len(page) >= MAX_EMBEDS:
                pages.append(page)
                page, page_total = [], 0
        current.add_field(name=title, value=text, inline=False)
        page_total += size
    pages.append(page + [current])
    return pages


class Meta(commands.Cog):
    """``/help`` and ``/status``."""

    def __init__(self, *, tree: app_commands.CommandTree[Any], comfy: Mapping[str, StatusSource],
                 status_timeout: float = STATUS_TIMEOUT,
                 shards: Callable[[], Sequence[ShardHealth]] | None = None,
                 safety: SafetyGate | None = None,
                 option_rules: Callable[[int | None], Awaitable[OptionRules]] | None = None) -> None:
        self.tree = tree
        self.option_rules = option_rules
        self.comfy = comfy
        self.status_timeout = status_timeout
        self.shards = shards
        self.safety = safety

    async def safety_entry(self, guild_id: int | None) -> tuple[str, str] | None:
        """The help entry that says which content-safety mode applies here."""
        if self.safety is None:
            return None
        if guild_id is None:
            return ("Content safety", f"In direct messages: {mode_summary('strict')}.")
        mode = (await self.safety.settings_for(guild_id)).mode
        return ("Content safety", f"On this server: {mode_summary(mode)}. {ALWAYS_STRICT}")

    async def options_entry(self, guild_id: int | None) -> tuple[str, str] | None:
        """The help entry with this server's caps and defaults, when its moderators set any."""
        if self.option_rules is None or guild_id is None:
            return None
        rules = await self.option_rules(guild_id)
        if rules.is_default:
            return None
        caps, defaults = describe_rules(rules)
        return ("This server's /animate options",
                f"Caps: {caps}.\nDefaults: {defaults}.\n/animate shows each workflow's full range; "
                "a value above a cap is refused.")

    def registered(self, guild: discord.abc.Snowflake | None) -> list[Any]:
        """Commands a member can use here: global ones plus this guild's, once each."""
        seen: dict[tuple[str, int], Any] = {}
        for cmd in list(self.tree.get_commands()) + (list(self.tree.get_commands(guild=guild)) if guild else []):
            kind = cmd.type.value if isinstance(cmd, app_commands.ContextMenu) else 1
            seen[(cmd.name, kind)] = cmd
        return list(seen.values())

    @app_commands.command(name="help", description="Show every command and its options")
    async def help(self, interaction: discord.Interaction[Any]) -> None:
        entries = help_entries(self.registered(interaction.guild))
        first = [await self.safety_entry(interaction.guild_id), await self.options_entry(interaction.guild_id)]
        pages = help_pages([entry for entry in first if entry is not None] + entries)
        await interaction.response.send_message(embeds=pages[0], ephemeral=True)
        for page in pages[1:]:
            await interaction.followup.send(embeds=page, ephemeral=True)

    @app_commands.command(name="status", description="Show whether each ComfyUI server is up, its queue and GPU")
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        statuses = await gather_status(self.comfy, self.status_timeout)
        shards = self.shards() if self.shards is not None else None
        await interaction.followup.send(embed=status_embed(statuses, shards), ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    timeout = min(STATUS_TIMEOUT, bot.settings.comfyui_timeout)
    await bot.add_cog(Meta(tree=bot.tree, comfy=bot.comfy, status_timeout=timeout, shards=bot.shard_health,
                           safety=bot.safety, option_rules=bot.policy.option_rules))
