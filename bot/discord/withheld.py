"""Release and Delete on withheld results: what the buttons do (:class:`WithheldReview`).

A result the safety check withheld (:mod:`bot.safety.gate`) is kept for moderators. Its audit-log
record carries two ``DynamicItem`` buttons (custom id ``safety:<release|delete>:<job id>``), and
``/mod withheld`` lists the guild's withheld results with the same buttons (for guilds without an
audit channel); the buttons are in :mod:`bot.discord.withheld_buttons`. A click finds its handler on
the client it came to: ``interaction.client.withheld_buttons``, the bot's :class:`WithheldReview`.

Only moderators of the result's guild (Manage Server or a moderator role:
:func:`bot.moderation.policy.is_moderator`) may press them; every answer is private and every
decision is audited:

* **Release** overrides the verdict and posts the kept file as a spoiler in a *new* message in the
  job's channel (the member's interaction token has usually expired), mentioning the member.
* **Delete** removes the kept file.

The withheld record moves once (:meth:`bot.storage.withheld.WithheldStore.decide`): two moderators
pressing at once cannot both release, and a release that fails to post is undone.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import discord

from bot.discord.audit import AuditLog
from bot.discord.buttons import RELEASED_ACTIONS, job_view
from bot.discord.delivery import HOPELESS_POST_CODES, MIN_VIDEO_BUDGET, upload_limit_for
from bot.discord.posters import POSTER_MARGIN
from bot.discord.requester import requester_from
from bot.discord.status import file_note, result_embed
from bot.errors import InvalidInput, NotAllowed
from bot.jobs.models import Job
from bot.jobs.service import JobService
from bot.media.video import fit_video_async
from bot.moderation import messages
from bot.moderation.audit_text import SafetyActions, message_link
from bot.moderation.policy import AdmissionPolicy, is_moderator
from bot.safety import messages as safety_messages
from bot.storage import WithheldResult, WithheldStore, remove_files
from bot.storage.withheld import DELETED, RELEASED, WITHHELD

log = logging.getLogger(__name__)

__all__ = ["WithheldReview"]

class WithheldReview:
    """What Release and Delete do (see the module docstring)."""

    def __init__(self, client: discord.Client, *, withheld: WithheldStore, jobs: JobService, policy: AdmissionPolicy,
                 audit: AuditLog) -> None:
        self.client = client
        self.withheld = withheld
        self.jobs = jobs
        self.policy = policy
        self.audit = audit

    async def on_withheld_button(self, interaction: discord.Interaction[Any], action: str, job_id: str) -> None:
        record = await self.withheld.get(job_id)
        if record is None:
            raise InvalidInput("That withheld result is no longer kept (results are deleted after the retention period).")
        await self._require_moderator(interaction, record)
        if record.state != WITHHELD:
            word = "released" if record.state == RELEASED else "deleted"
            raise InvalidInput(f"That result was already {word}" + (f" by {messages.user_mention(record.decided_by)}."
                                                                     if record.decided_by else "."))
        await interaction.response.defer(ephemeral=True, thinking=True)
        if action == "release":
            text = await self.release(record, by=interaction.user.id)
        else:
            text = await self.delete(record, by=interaction.user.id)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())

    async def _require_moderator(self, interaction: discord.Interaction[Any], record: WithheldResult) -> None:
        requester = requester_from(interaction)
        if record.guild_id is None or requester.guild_id != record.guild_id:
            raise NotAllowed("Only this server's moderators can review that result.")
        if not is_moderator(requester, await self.policy.settings_for(requester)):
            raise NotAllowed(messages.not_moderator(), detail=f"user {requester.user_id} is not a moderator")

    async def release(self, record: WithheldResult, *, by: int) -> str:
        """Post the kept result as a spoiler in a new channel message; audited. Returns the answer."""
        path = Path(record.result_path) if record.result_path else None
        if path is None or not await asyncio.to_thread(path.exists):
            raise InvalidInput("The withheld file is no longer kept, so it cannot be released.")
        job = await self.jobs.get(record.job_id)
        if job is None:
            raise InvalidInput("That job is no longer known.")
        claimed = await self.withheld.decide(record.job_id, RELEASED, by=by, at=self.audit.store.clock.now())
        if claimed is None:
            raise InvalidInput("Another moderator decided about that result just now.")
        try:
            message_id = await self._post(job, path)
        except BaseException:
            await self.withheld.decide(record.job_id, WITHHELD, by=by, at=self.audit.store.clock.now(),
                                       expect=RELEASED)  # undo the claim: it can be pressed again
            raise
        await self.withheld.decide(record.job_id, RELEASED, by=by, at=claimed.decided_at or 0.0, message_id=message_id,
                                   expect=RELEASED)
        link = message_link(record.guild_id, record.channel_id, message_id)
        await self.audit.record(guild_id=record.guild_id or 0, actor_id=by, action=SafetyActions.RELEASED,
                                job_id=record.job_id, details={"user_id": record.user_id,
                                                               "channel_id": record.channel_id, "link": link})
        log.info("job %s: withheld result released by %s (message %s)", record.job_id, by, message_id)
        return f"Released as a spoiler: {link}"

    async def _post(self, job: Job, path: Path) -> int:
        limit = upload_limit_for(job)
        fitted = await fit_video_async(path, max(MIN_VIDEO_BUDGET, limit - POSTER_MARGIN))
        video = fitted.data if fitted.data is not None else await asyncio.to_thread(fitted.read)
        embed = discord.Embed.from_dict(result_embed(job, member_options=self.jobs.member_option_names(job.workflow),
                                                     note=file_note(fitted, limit)))
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(id=job.user_id)])
        try:
            message = await channel.send(
                safety_messages.released(job.user_id), embed=embed, view=job_view(job.id, RELEASED_ACTIONS),
                file=discord.File(io.BytesIO(video), filename=f"SPOILER_animation_{job.id}.{fitted.format}"),
                allowed_mentions=mentions)
        except discord.HTTPException as exc:
            if exc.code in HOPELESS_POST_CODES or exc.status == 413:
                raise InvalidInput("I can't post that result in its channel any more.",
                                   detail=f"HTTP {exc.status}, code {exc.code}") from None
            raise
        return message.id

    async def delete(self, record: WithheldResult, *, by: int) -> str:
        """Remove the kept file; audited. Returns the answer."""
        decided = await self.withheld.decide(record.job_id, DELETED, by=by, at=self.audit.store.clock.now())
        if decided is None:
            raise InvalidInput("Another moderator decided about that result just now.")
        removed = await remove_files([Path(record.result_path)]) if record.result_path else 0
        await self.audit.record(guild_id=record.guild_id or 0, actor_id=by, action=SafetyActions.DELETED,
                                job_id=record.job_id, details={"user_id": record.user_id,
                                                               "channel_id": record.channel_id})
        log.info("job %s: withheld result deleted by %s (%d file removed)", record.job_id, by, removed)
        return "Deleted: the withheld file is gone."
