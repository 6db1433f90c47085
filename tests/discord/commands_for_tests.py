"""A test-only extension: commands that fail on purpose or check permissions, to drive the error path."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import LimitReached
from bot.discord.permissions import ensure_app_permissions
from bot.discord.tree import BotView

release = asyncio.Event()


class TooFastView(BotView):
    @discord.ui.button(label="Again", custom_id="again")
    async def again(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        raise LimitReached("Please wait a minute before asking again.", retry_after=60)


async def quote(interaction: discord.Interaction[Any], message: discord.Message) -> None:
    await interaction.response.send_message(f"quoted: {message.content}", ephemeral=True)


class ForTests(commands.Cog):
    def __init__(self) -> None:
        self.context_menus = [app_commands.ContextMenu(name="Quote", callback=quote)]

    @app_commands.command(name="buttons", description="Sends a button that refuses")
    async def buttons(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message("press it", view=TooFastView(timeout=30))

    @app_commands.command(name="boom", description="Fails unexpectedly")
    async def boom(self, interaction: discord.Interaction[Any]) -> None:
        raise RuntimeError("secret-detail http://10.0.0.5:8188 token=abc")

    @app_commands.command(name="slow-boom", description="Defers, waits, then fails")
    async def slow_boom(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(thinking=True)
        await release.wait()
        release.clear()
        raise RuntimeError("late failure")

    @app_commands.command(name="needs-files", description="Needs to attach files")
    @app_commands.describe(image="An image", caption="Some text")
    async def needs_files(self, interaction: discord.Interaction[Any], image: discord.Attachment,
                          caption: str | None = None) -> None:
        ensure_app_permissions(interaction)
        data = await image.read()
        await interaction.response.send_message(f"got {image.filename} ({len(data)} bytes): {caption}")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ForTests())
