"""A test-only extension: commands that fail on purpose or check permissions, to drive the error path."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.permissions import ensure_app_permissions

release = asyncio.Event()


class ForTests(commands.Cog):
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
