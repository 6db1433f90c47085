"""The Discord permissions the bot needs, the check made before accepting work, and the invite link.

Before a command accepts work it checks ``interaction.app_permissions`` (what the bot may do
in this channel) and raises :class:`bot.errors.MissingPermissions` naming what is missing,
which the command tree turns into a plain message for the member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import discord
from discord import app_commands

from bot.errors import MissingPermissions

T = TypeVar("T")

# (discord.Permissions flag, the name members see in Discord's settings)
WORK_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("send_messages", "Send Messages"),
    ("attach_files", "Attach Files"),
    ("embed_links", "Embed Links"),
)

# What the invite link asks for: see the channel, post results (text, embeds, files) also in
# threads, and read the history so replies to earlier messages work.
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
)


def missing_permissions(granted: discord.Permissions, required: Sequence[tuple[str, str]] = WORK_PERMISSIONS) -> list[str]:
    """The member-facing names of the ``required`` permissions ``granted`` lacks."""
    return [label for flag, label in required if not getattr(granted, flag)]


def ensure_app_permissions(interaction: discord.Interaction[Any],
                           required: Sequence[tuple[str, str]] = WORK_PERMISSIONS) -> None:
    """Raise :class:`MissingPermissions` when the bot cannot post its results in this channel."""
    missing = missing_permissions(interaction.app_permissions, required)
    if missing:
        raise MissingPermissions(missing)


class AppPermissionsMissing(app_commands.CheckFailure):
    """A check failure carrying the member-facing :class:`MissingPermissions` (see ``bot.discord.tree``)."""

    def __init__(self, original: MissingPermissions) -> None:
        super().__init__(original.user_message)
        self.original = original


def needs_app_permissions(required: Sequence[tuple[str, str]] = WORK_PERMISSIONS) -> Callable[[T], T]:
    """An ``app_commands`` check: refuse the command (with the missing names) before it runs."""

    def predicate(interaction: discord.Interaction[Any]) -> bool:
        try:
            ensure_app_permissions(interaction, required)
        except MissingPermissions as exc:
            raise AppPermissionsMissing(exc) from None
        return True

    return app_commands.check(predicate)


def invite_url(application_id: int) -> str:
    """The link that adds the bot to a server with the permissions it needs and its slash commands."""
    return discord.utils.oauth_url(application_id, permissions=INVITE_PERMISSIONS,
                                   scopes=("bot", "applications.commands"))
