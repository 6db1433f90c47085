"""Build a moderation :class:`~bot.moderation.policy.Requester` from a Discord interaction.

The moderation core knows nothing about Discord: it gets the member's ids, role ids and two
resolved permissions. This module reads them from a ``discord.Interaction`` (roles from the
member payload, so a role the bot has not cached still counts; a thread counts as its parent
channel) and answers "may this member cancel or delete this job?" with the bot's
:class:`~bot.moderation.policy.AdmissionPolicy`.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.jobs.models import Job
from bot.moderation.policy import AdmissionPolicy, Requester, can_moderate_job

log = logging.getLogger(__name__)

__all__ = ["requester_from", "job_moderation"]


def _member_role_ids(user: Any) -> frozenset[int]:
    """The role ids a guild member holds (from the payload, cached or not); none for a user."""
    ids: set[int] = set()
    if isinstance(user, discord.Member):
        raw = getattr(user, "_roles", None)  # the ids from the payload, cached roles or not
        if raw is not None:
            ids.update(int(r) for r in raw)
        else:
            ids.update(r.id for r in user.roles if not r.is_default())
    return frozenset(ids)


def requester_from(interaction: discord.Interaction[Any]) -> Requester:
    """The member asking, as the moderation core sees them."""
    permissions = interaction.permissions
    admin = bool(permissions.administrator)
    channel = interaction.channel
    parent_id: int | None = None
    if isinstance(channel, discord.Thread) or getattr(channel, "type", None) in (
        discord.ChannelType.public_thread, discord.ChannelType.private_thread, discord.ChannelType.news_thread
    ):
        parent_id = getattr(channel, "parent_id", None)
    return Requester(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        role_ids=_member_role_ids(interaction.user) if interaction.guild_id is not None else frozenset(),
        can_manage_guild=admin or bool(permissions.manage_guild),
        can_manage_messages=admin or bool(permissions.manage_messages),
        parent_channel_id=int(parent_id) if parent_id else None,
    )


async def job_moderation(policy: AdmissionPolicy, interaction: discord.Interaction[Any], job: Job) -> tuple[bool, bool]:
    """(allowed, acting as a moderator) for cancelling or deleting ``job``.

    A moderator may act only on jobs of the guild they moderate.
    """
    requester = requester_from(interaction)
    if requester.user_id == job.user_id:
        return True, False
    if job.guild_id is None or job.guild_id != requester.guild_id:
        return False, False
    allowed = can_moderate_job(requester, job.user_id, await policy.settings_for(requester))
    return allowed, allowed
