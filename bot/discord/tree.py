"""The one place that turns a failed interaction into a reply for the member.

:class:`BotTree` (passed to the bot as ``tree_cls``) and :class:`BotView` / :class:`BotModal`
hand every error to :func:`report_error`:

- :class:`bot.errors.UserFacingError` -> its ``user_message``;
- app command check failures (cooldown, missing permissions, DMs, roles) -> a plain sentence;
- anything else -> logged with its traceback under a short error id, and a generic reply
  carrying that id. Never a traceback, a token or a server URL.

The reply is ephemeral and goes through ``response.send_message`` when the interaction is
not answered yet, ``followup.send`` when it is, and ``channel.send`` (mentioning the member)
when the interaction token has expired or Discord refuses it.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot.discord.permissions import AppPermissionsMissing
from bot.errors import UserFacingError

log = logging.getLogger(__name__)

GENERIC_MESSAGE = "Something went wrong on our side. It has been logged (error id `{error_id}`); please try again later."

#: Discord error codes meaning "this interaction token cannot be used any more" (unknown webhook,
#: unknown interaction, invalid webhook token).
DEAD_TOKEN_CODES = frozenset({10015, 10062, 50027})


def _permission_names(names: list[str]) -> str:
    return ", ".join(n.replace("_", " ").replace("guild", "server").title() for n in names)


def _unwrap(error: BaseException) -> BaseException:
    if isinstance(error, (app_commands.CommandInvokeError, AppPermissionsMissing)):
        return error.original
    return error


def describe_error(error: BaseException, *, where: str = "interaction") -> str:
    """The member-facing text for ``error``; unexpected errors are logged here with an error id."""
    original = _unwrap(error)
    if isinstance(original, UserFacingError):
        log.info("%s refused: %s", where, original.detail or original.user_message)
        return original.user_message
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"You're going too fast: try again in {max(1, round(error.retry_after))} s."
    if isinstance(error, app_commands.MissingPermissions):
        return f"You need the {_permission_names(error.missing_permissions)} permission to use this command."
    if isinstance(error, app_commands.BotMissingPermissions):
        return f"I need the {_permission_names(error.missing_permissions)} permission in this channel."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server, not in direct messages."
    if isinstance(error, (app_commands.MissingRole, app_commands.MissingAnyRole)):
        return "You don't have the role needed to use this command."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    if isinstance(error, (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch)):
        log.warning("%s: commands out of date on Discord's side: %s", where, error)
        return "This command is out of date. Please try again in a minute."
    if isinstance(error, app_commands.TransformerError):
        return f"I could not use the value {str(error.value)[:100]!r} for this option."
    error_id = secrets.token_hex(4)
    log.error("Unexpected error in %s (error id %s)", where, error_id, exc_info=original)
    return GENERIC_MESSAGE.format(error_id=error_id)


async def send_ephemeral(interaction: discord.Interaction[Any], text: str) -> None:
    """Tell the member ``text``, by whichever route still works for this interaction."""
    if not interaction.is_expired():
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
            return
        except discord.HTTPException as exc:
            if exc.status not in (401, 404) and exc.code not in DEAD_TOKEN_CODES:
                log.warning("Could not send an error reply (HTTP %s, code %s)", exc.status, exc.code)
                return
            log.info("Interaction token no longer valid; replying in the channel instead")
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("Could not reach Discord to send an error reply: %s", type(exc).__name__)
            return
    channel = interaction.channel
    if not isinstance(channel, discord.abc.Messageable):
        log.warning("Could not reply to interaction %s: no channel to write to", interaction.id)
        return
    try:
        await channel.send(f"{interaction.user.mention} {text}",
                           allowed_mentions=discord.AllowedMentions(users=[interaction.user]))
    except discord.HTTPException as exc:
        log.warning("Could not send an error reply in channel %s (HTTP %s)", interaction.channel_id, exc.status)
    except (aiohttp.ClientError, OSError) as exc:
        log.warning("Could not reach Discord to send an error reply: %s", type(exc).__name__)


async def report_error(interaction: discord.Interaction[Any], error: BaseException, *, where: str | None = None) -> None:
    """Translate ``error`` for the member and send it; log unexpected errors. The one error path."""
    if where is None:
        command = interaction.command
        where = f"/{command.qualified_name}" if command is not None else f"interaction {interaction.type.name}"
    await send_ephemeral(interaction, describe_error(error, where=where))


class BotTree(app_commands.CommandTree):
    """The bot's command tree: every command error goes to :func:`report_error`."""

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        await report_error(interaction, error)


class BotView(discord.ui.View):
    """Base for the bot's views: errors in a component callback go to :func:`report_error`."""

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]) -> None:
        await report_error(interaction, error, where=f"{type(self).__name__} {type(item).__name__}")


class BotModal(discord.ui.Modal):
    """Base for the bot's modals: errors in ``on_submit`` go to :func:`report_error`."""

    async def on_error(  # type: ignore[override]  # discord.ui.Modal narrows BaseView's signature
        self, interaction: discord.Interaction[Any], error: Exception
    ) -> None:
        await report_error(interaction, error, where=type(self).__name__)
