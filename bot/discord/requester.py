"""Build a moderation :class:`~bot.moderation.policy.Requester` from a Discord interaction.

The moderation core knows nothing about Discord: it gets the member's ids, role ids and two
resolved permissions. This module reads them from a ``discord.Interaction`` (roles from the
member payload, so a role the bot has not cached still counts; a thread counts as its parent
channel), builds the one :class:`~bot.moderation.policy.AdmissionPolicy` the cogs share
(``bot.services["policy"]``) and answers "may this member moderate this job?".
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import discord

from bot.jobs.models import Job
from bot.moderation.policy import AdmissionPolicy, Requester, can_moderate_job, is_moderator
from bot.settings import Settings
from bot.moderation.models import GuildSettings
from bot.storage import Storage

log = logging.getLogger(__name__)

POLICY_SERVICE = "policy"

__all__ = ["POLICY_SERVICE", "requester_from", "ensure_policy", "job_moderation", "is_guild_moderator"]


def _role_ids(user: Any) -> frozenset[int]:
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
        role_ids=_role_ids(interaction.user) if interaction.guild_id is not None else frozenset(),
        can_manage_guild=admin or bool(permissions.manage_guild),
        can_manage_messages=admin or bool(permissions.manage_messages),
        parent_channel_id=int(parent_id) if parent_id else None,
    )


def ensure_policy(services: MutableMapping[str, Any], store: Storage, settings: Settings) -> AdmissionPolicy:
    """The shared admission policy in ``services["policy"]``, made on first use."""
    policy = services.get(POLICY_SERVICE)
    if not isinstance(policy, AdmissionPolicy):
        policy = AdmissionPolicy(store.guilds, clock=store.clock, allow_dms=settings.allow_dms,
                                 default_max_in_flight=settings.max_jobs_per_member)
        services[POLICY_SERVICE] = policy
    return policy


async def _settings(store: Storage, requester: Requester) -> GuildSettings:
    return GuildSettings() if requester.guild_id is None else await store.guilds.get_settings(requester.guild_id)


async def job_moderation(store: Storage, interaction: discord.Interaction[Any], job: Job) -> tuple[bool, bool]:
    """(allowed, acting as a moderator) for cancelling or deleting ``job``.

    A moderator may act only on jobs of the guild they moderate.
    """
    requester = requester_from(interaction)
    if requester.user_id == job.user_id:
        return True, False
    if job.guild_id is None or job.guild_id != requester.guild_id:
        return False, False
    settings = await _settings(store, requester)
    allowed = can_moderate_job(requester, job.user_id, settings)
    return allowed, allowed


async def is_guild_moderator(store: Storage, interaction: discord.Interaction[Any]) -> bool:
    """Manage Server or a moderator role of this guild."""
    requester = requester_from(interaction)
    if requester.guild_id is None:
        return False
    return is_moderator(requester, await _settings(store, requester))
