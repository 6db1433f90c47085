"""From a member's interaction to a job and back: :class:`AnimateFlow`, and the job buttons' handler.

The bot builds one :class:`AnimateFlow` (:class:`bot.app.AnimateBot`) from the job service, the
delivery, the admission policy and the settings. ``/animate`` and the "Animate image" menu
(:mod:`cogs.animate`) hand it the attachment; the job buttons (:mod:`bot.discord.buttons`)
reach it as the bot's ``job_buttons``.

Starting a job: the member's access (DMs, ban, pause, channel, role, others' images) is checked
with the :class:`~bot.moderation.policy.AdmissionPolicy`, then what the payload tells
(permissions, attachment type and size, options), and refused privately (a
:class:`~bot.errors.UserFacingError`; the tree replies). Then the policy admits the job (jobs in
flight, cooldown, quotas: counted at once) and the same in-flight limit goes to the job service.
The interaction is deferred publicly: that message becomes the job's status message, edited by
:class:`bot.discord.delivery.DiscordDelivery`; the image is downloaded from Discord's CDN at the
same time, so the two round trips overlap. A job refused after admission gives its use back
(:meth:`AdmissionPolicy.refund`); a failure after the defer turns the status into a one-line
notice and the reason goes in an ephemeral followup. When a daily quota applies, the member is
told privately how many generations are left.

Buttons: Cancel and Delete are allowed to the job's owner and the guild's moderators
(:func:`bot.discord.requester.job_moderation`); Re-roll, More motion and Less motion start a new
job from the old one's input, admitted like ``/animate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import discord

from bot.discord.delivery import PREMIUM_TIER_KEY, UPLOAD_LIMIT_KEY, DiscordDelivery
from bot.discord.permissions import ensure_app_permissions
from bot.discord.requester import job_moderation, requester_from
from bot.discord.status import clamp_motion
from bot.discord.tree import describe_error
from bot.errors import InvalidInput, NotAllowed
from bot.jobs.models import Job
from bot.jobs.service import JobRequest, JobService
from bot.logs import log_failure
from bot.media.images import ACCEPTED_TEXT, check_declared_size
from bot.moderation.policy import Admission, AdmissionPolicy, Requester
from bot.settings import Settings
from bot.tasks import cancel_and_wait
from bot.workflows import resolve_options

log = logging.getLogger(__name__)

MOTION_OPTION = "motion"
MOTION_STEP = 40
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")

__all__ = ["AnimateFlow", "is_image_attachment"]


def is_image_attachment(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type:
        return content_type.startswith("image/")
    return attachment.filename.lower().endswith(IMAGE_EXTENSIONS)


class AnimateFlow:
    """Starts jobs from interactions and handles the job buttons (see the module docstring)."""

    def __init__(self, *, jobs: JobService, delivery: DiscordDelivery, policy: AdmissionPolicy,
                 settings: Settings) -> None:
        self.jobs = jobs
        self.delivery = delivery
        self.policy = policy
        self.settings = settings

    # ------------------------------------------------------------------ starting a job

    async def animate_attachment(self, interaction: discord.Interaction[Any], image: discord.Attachment, *,
                                 workflow: str | None, options: Mapping[str, Any], others_image: bool = False) -> None:
        """Check access and the payload, admit (count) the job, defer publicly, download, submit, follow.

        ``others_image``: the "Animate image" menu on someone else's message (it checked access already).
        """
        requester = requester_from(interaction)
        if not others_image:  # the context menu checked already
            await self.policy.check_access(requester)
        ensure_app_permissions(interaction)
        if not is_image_attachment(image):
            raise InvalidInput(f"That file is not an image. Please send a {ACCEPTED_TEXT} image.",
                               detail=f"content type {image.content_type!r}")
        check_declared_size(image.size, self.settings.max_input_bytes)
        options = {k: v for k, v in options.items() if v is not None}
        chosen = self.jobs.workflow_for(workflow, options)
        resolve_options(chosen, options)  # range and type check again before accepting
        self.jobs.require_runnable(chosen, options)
        admission = await self._admit(requester, others_image=others_image)
        download = asyncio.ensure_future(image.read())  # fetched while the interaction is deferred
        try:
            status_id = await self._defer_admitted(interaction, admission)
        except BaseException:
            with contextlib.suppress(Exception):  # the defer's failure is the one to report
                await cancel_and_wait(download)
            raise
        try:
            data = await download
            job = await self.jobs.submit(JobRequest(
                user_id=interaction.user.id,
                channel_id=interaction.channel_id or 0,
                guild_id=interaction.guild_id,
                image=data,
                workflow=chosen.name,
                options=options,
                max_in_flight=admission.max_in_flight,
                **self._interaction_fields(interaction, status_id),
            ))
        except discord.HTTPException as exc:
            await self._refund(admission)
            await self._failed_after_defer(interaction, InvalidInput(
                "I could not download that image from Discord. Please try again.", detail=f"HTTP {exc.status}"))
            return
        except Exception as exc:
            await self._refund(admission)
            await self._failed_after_defer(interaction, exc)
            return
        self.delivery.follow(job)
        await self._tell_quota(interaction, admission)

    # ------------------------------------------------------------------ buttons

    async def on_job_button(self, interaction: discord.Interaction[Any], action: str, job_id: str) -> None:
        job = await self.jobs.get(job_id)
        if job is None:
            raise InvalidInput("That job is no longer known.")
        if action == "cancel":
            await self._cancel(interaction, job)
        elif action == "delete":
            await self._delete(interaction, job)
        else:
            await self._variation(interaction, job, action)

    async def _require_owner_or_mod(self, interaction: discord.Interaction[Any], job: Job, what: str) -> bool:
        """Owner or a moderator of the job's guild; returns whether acting as a moderator."""
        allowed, moderator = await job_moderation(self.policy, interaction, job)
        if not allowed:
            raise NotAllowed(f"Only the member who started this animation, or a moderator, can {what} it.")
        return moderator

    async def _cancel(self, interaction: discord.Interaction[Any], job: Job) -> None:
        moderator = await self._require_owner_or_mod(interaction, job, "cancel")
        if job.is_terminal:
            raise InvalidInput("That animation has already ended.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.jobs.cancel(job.id, by_user=interaction.user.id, moderator=moderator)  # a refusal: the error path
        await interaction.followup.send("Cancelled.", ephemeral=True)

    async def _delete(self, interaction: discord.Interaction[Any], job: Job) -> None:
        await self._require_owner_or_mod(interaction, job, "delete")
        await interaction.response.defer()
        try:
            await self.jobs.mark_deleted(job.id, by=interaction.user.id)
        except Exception:
            log_failure(log, logging.WARNING, "job %s: could not mark it deleted", job.id)
        await interaction.delete_original_response()

    async def _variation(self, interaction: discord.Interaction[Any], job: Job, action: str) -> None:
        requester = requester_from(interaction)
        await self.policy.check_access(requester)
        ensure_app_permissions(interaction)
        overrides: dict[str, Any] = {}
        new_seed = True
        if action in ("more", "less"):
            workflow = self.jobs.workflows.get(job.workflow)
            spec = workflow.options.get(MOTION_OPTION) if workflow is not None else None
            if spec is None or MOTION_OPTION not in job.options:
                raise InvalidInput("This workflow has no motion setting to change.")
            current = int(job.options[MOTION_OPTION])
            value = clamp_motion(current, MOTION_STEP if action == "more" else -MOTION_STEP, spec.min, spec.max)
            if value == current:
                edge = "most" if action == "more" else "least"
                raise InvalidInput(f"Motion is already at its {edge} ({current}).")
            overrides[MOTION_OPTION] = value
            new_seed = False  # same seed: only the motion changes
        admission = await self._admit(requester)
        status_id = await self._defer_admitted(interaction, admission)
        try:
            new_job = await self.jobs.reroll(
                job.id,
                user_id=interaction.user.id,
                channel_id=interaction.channel_id or job.channel_id,
                guild_id=interaction.guild_id,
                overrides=overrides,
                new_seed=new_seed,
                max_in_flight=admission.max_in_flight,
                **self._interaction_fields(interaction, status_id),
            )
        except Exception as exc:
            await self._refund(admission)
            await self._failed_after_defer(interaction, exc)
            return
        self.delivery.follow(new_job)
        await self._tell_quota(interaction, admission)

    # ------------------------------------------------------------------ helpers

    async def _admit(self, requester: Requester, *, others_image: bool = False) -> Admission:
        """Every moderation check and limit; counts the job. Refunded if the queue then refuses it."""
        admission = await self.policy.admit(requester, animating_others_image=others_image,
                                            in_flight=self.jobs.in_flight(requester.user_id))
        try:
            self.jobs.check_can_accept(requester.user_id, admission.max_in_flight)
        except BaseException:
            await self._refund(admission)
            raise
        return admission

    async def _defer_admitted(self, interaction: discord.Interaction[Any], admission: Admission) -> int:
        try:
            return await self._defer(interaction)
        except BaseException:
            await self._refund(admission)
            raise

    async def _refund(self, admission: Admission) -> None:
        try:
            await self.policy.refund(admission)
        except Exception:
            log_failure(log, logging.WARNING, "could not refund a generation to user %s", admission.user_id)

    async def _tell_quota(self, interaction: discord.Interaction[Any], admission: Admission) -> None:
        """With a daily quota, tell the member privately what is left ("2 of 5 generations left today...")."""
        if not admission.note:
            return
        try:
            await interaction.followup.send(f"{admission.note}.", ephemeral=True)
        except discord.HTTPException as exc:
            log.info("could not send the quota note (HTTP %s)", exc.status)

    async def _defer(self, interaction: discord.Interaction[Any]) -> int:
        """Defer publicly (thinking); the deferred message is the status message. Returns its id."""
        response = await interaction.response.defer(thinking=True)
        message_id = getattr(response, "message_id", None)
        if message_id is None:
            message_id = (await interaction.original_response()).id
        return int(message_id)

    def _interaction_fields(self, interaction: discord.Interaction[Any], status_id: int) -> dict[str, Any]:
        extra: dict[str, Any] = {UPLOAD_LIMIT_KEY: interaction.filesize_limit}
        if interaction.guild is not None and getattr(interaction.guild, "premium_tier", None) is not None:
            extra[PREMIUM_TIER_KEY] = interaction.guild.premium_tier
        return {
            "interaction_token": interaction.token,
            "application_id": interaction.application_id,
            "interaction_created_at": interaction.created_at.timestamp(),
            "status_message_id": status_id,
            "extra": extra,
        }

    async def _failed_after_defer(self, interaction: discord.Interaction[Any], error: BaseException) -> None:
        """The status becomes a one-line notice; the reason goes privately to the member."""
        text = describe_error(error, where="/animate")
        notice = "❌ I couldn't start this animation."
        try:
            await interaction.edit_original_response(content=notice)
            await interaction.followup.send(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("Could not report a failed /animate (HTTP %s)", exc.status)
