"""``/queue``, ``/cancel`` and ``/history``: a thin adapter over the job service.

``/queue`` shows the running jobs, the line with positions (the member's own highlighted, with
the jobs ahead of each and its estimated wait) and each server's load by name; ``/cancel``
cancels the member's latest active job or one picked by autocomplete; ``/history`` lists the
member's recent jobs with links to their results.
Every answer is ephemeral; the text comes from :mod:`bot.discord.status`.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.discord.requester import job_moderation
from bot.discord.status import QueueLine, ServerLoad, history_text, queue_text, wait_words
from bot.errors import InvalidInput
from bot.jobs.models import Job, JobState
from bot.jobs.service import JobService
from bot.moderation.policy import AdmissionPolicy

log = logging.getLogger(__name__)

HISTORY_LIMIT = 10


class Queue(commands.Cog):
    """``/queue``, ``/cancel`` and ``/history``."""

    def __init__(self, *, jobs: JobService, policy: AdmissionPolicy) -> None:
        self.jobs = jobs
        self.policy = policy

    async def _active_jobs(self, user_id: int, guild_id: int | None) -> list[Job]:
        recent = await self.jobs.recent_jobs(user_id, guild_id, limit=HISTORY_LIMIT * 2)
        return [j for j in recent if not j.is_terminal]

    @app_commands.command(name="queue", description="Show the line of animations and each server's load")
    async def queue(self, interaction: discord.Interaction[Any]) -> None:
        viewer = interaction.user.id
        waiting = [QueueLine(job_id=job_id, user_id=user_id, position=i + 1,
                             wait=self._wait(job_id) if user_id == viewer else None)
                   for i, (job_id, user_id) in enumerate(self.jobs.waiting_order())]
        running = []
        for job in await self.jobs.running_jobs():
            latest = self.jobs.latest_progress(job.id)
            started = job.state is not JobState.SUBMITTED
            running.append(QueueLine(job_id=job.id, user_id=job.user_id, position=None, server=job.server,
                                     step=latest.step if latest else None, steps=latest.steps if latest else None,
                                     started=started,
                                     wait=self._wait(job.id) if job.user_id == viewer and not started else None))
        statuses = [view.status for view in self.jobs.server_views()]
        servers = [ServerLoad(name=s.name, healthy=s.healthy, in_flight=s.in_flight, capacity=s.capacity,
                              queue_remaining=s.queue_remaining) for s in statuses]
        text = queue_text(running, waiting, servers, viewer)
        await interaction.response.send_message(text, ephemeral=True,
                                                allowed_mentions=discord.AllowedMentions.none())

    def _wait(self, job_id: str) -> str | None:
        found = self.jobs.wait_estimate(job_id)
        return wait_words(found.ahead, found.seconds) if found is not None else None

    @app_commands.command(name="cancel", description="Cancel your latest animation, or the one you pick")
    @app_commands.describe(job="The job to cancel (default: your latest one)")
    async def cancel(self, interaction: discord.Interaction[Any], job: Optional[str] = None) -> None:
        if job:
            target = await self.jobs.get(job.strip())
            if target is None:
                raise InvalidInput("I don't know that job. Pick one from the list.")
        else:
            active = await self._active_jobs(interaction.user.id, interaction.guild_id)
            if not active:
                raise InvalidInput("You have no animation waiting or running.")
            target = active[0]  # newest first
        _allowed, moderator = await job_moderation(self.policy, interaction, target)
        await interaction.response.defer(ephemeral=True, thinking=True)
        # a refusal (not theirs, already ended) goes to the tree's error path, which follows up
        ended = await self.jobs.cancel(target.id, by_user=interaction.user.id, moderator=moderator)
        word = "Cancelled" if ended.is_terminal else "Cancelling"
        await interaction.followup.send(f"{word} job `{target.id}`.", ephemeral=True)

    @cancel.autocomplete("job")
    async def cancel_autocomplete(self, interaction: discord.Interaction[Any],
                                  current: str) -> list[app_commands.Choice[str]]:
        active = await self._active_jobs(interaction.user.id, interaction.guild_id)
        choices = []
        for job in active:  # newest first
            label = f"{job.id} · {job.state.value} · seed {job.options.get('seed', '?')}"
            if current.lower() in label.lower():
                choices.append(app_commands.Choice(name=label[:100], value=job.id))
        return choices[:25]

    @app_commands.command(name="history", description="Your recent animations, with links to the results")
    async def history(self, interaction: discord.Interaction[Any]) -> None:
        jobs = await self.jobs.recent_jobs(interaction.user.id, interaction.guild_id, limit=HISTORY_LIMIT)
        await interaction.response.send_message(history_text(jobs), ephemeral=True,
                                                allowed_mentions=discord.AllowedMentions.none())


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Queue(jobs=bot.jobs, policy=bot.policy))
