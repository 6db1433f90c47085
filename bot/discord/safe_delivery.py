"""The result check on the Discord side: the channel's age-restricted flag, read again at delivery.

:class:`ResultGate` is what :class:`~bot.discord.delivery.DiscordDelivery` calls right before it
posts a result: it reads the channel's NSFW flag from the client's cache (kept current by the
gateway's channel updates; a thread follows its parent; a DM or a channel the bot does not know
counts as an ordinary channel, the stricter case), and has the
:class:`~bot.safety.gate.SafetyGate` judge the job's original output file. It returns whether the
result must be posted as a spoiler, or raises :class:`~bot.safety.gate.ResultWithheld` (the job
then ends with the withheld notice; the gate has recorded the result for moderators).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import discord

from bot.jobs.models import Job
from bot.safety.gate import ResultWithheld, SafetyGate
from bot.safety.messages import Rule
from bot.safety.policy import Decision

log = logging.getLogger(__name__)

__all__ = ["ResultGate", "age_restricted", "channel_age_restricted"]


def age_restricted(channel: Any) -> bool:
    """Whether a channel object is age-restricted (Discord's NSFW flag; a DM never is)."""
    if channel is None or isinstance(channel, (discord.DMChannel, discord.GroupChannel)):
        return False
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def channel_age_restricted(client: discord.Client, channel_id: int, guild_id: int | None) -> bool:
    """The NSFW flag of a channel as the client knows it now (False in DMs and when unknown)."""
    if guild_id is None:
        return False
    channel = client.get_channel(channel_id)
    if channel is None:
        guild = client.get_guild(guild_id)
        channel = guild.get_channel_or_thread(channel_id) if guild is not None else None
    if channel is None:
        log.debug("channel %s is not cached; judging it as an ordinary channel", channel_id)
    return age_restricted(channel)


class ResultGate:
    """Judges a result before it is posted (see the module docstring)."""

    def __init__(self, client: discord.Client, safety: SafetyGate) -> None:
        self.client = client
        self.safety = safety

    async def __call__(self, job: Job, result: Path) -> bool:
        """True: post it as a spoiler. Raises :class:`ResultWithheld`."""
        nsfw = channel_age_restricted(self.client, job.channel_id, job.guild_id)
        judgement = await self.safety.check_result(job, result, age_restricted=nsfw)
        if judgement.decision is Decision.WITHHOLD:
            raise ResultWithheld(judgement.rule or Rule.UNCHECKED, judgement.verdict)
        return judgement.spoiler
