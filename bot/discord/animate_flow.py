"""From a member's interaction to a job and back: :class:`AnimateFlow`, and the job buttons' handler.

The bot builds one :class:`AnimateFlow` (:class:`bot.app.AnimateBot`) from the job service, the
delivery, the admission policy and the settings. ``/animate`` and the "Animate image" menu
(:mod:`cogs.animate`) hand it the attachment; the job buttons (:mod:`bot.discord.buttons`)
reach it as the bot's ``job_buttons``.

Every refusal of a new job (before or after the defer: moderation, limits, bad input, missing
permissions, no server) is also handed to ``on_refused`` when given (the bot's metrics count
them by reason); cancel and delete refusals are not new jobs and are not handed over.

Starting a job: the member's access (DMs, ban, pause, channel, role, others' images) is checked
with the :class:`~bot.moderation.policy.AdmissionPolicy`, then what the payload tells
(permissions, attachment type and size, options), and refused privately (a
:class:`~bot.errors.UserFacingError`; the tree replies). Then the policy admits the job (jobs in
flight, cooldown, quotas: counted at once) and the job service reserves the member's slot under
the same in-flight limit (:meth:`~bot.jobs.service.JobService.reserve`): from then on the job
counts as in flight, while its image is downloaded and prepared, so a burst of requests is refused
privately instead of being deferred and failing later. The interaction is deferred publicly: that
message becomes the job's status message, edited by :class:`bot.discord.delivery.DiscordDelivery`;
the image is downloaded from Discord's CDN at the same time, so the two round trips overlap.
The reservation becomes the queued job, or is released however the request ends. A job refused
after admission gives its use back (:meth:`AdmissionPolicy.refund`); a failure after the defer
turns the status into a one-line notice and the reason goes in an ephemeral followup. When a
daily quota applies, the member is told privately how many generations are left.

Content safety (issue 16): when the detector is unavailable and the guild's mode (or a forced strict)
needs it, the request is refused privately before anything is counted; otherwise the job service's
input check judges the prepared image. The request tells it whether the channel is age-restricted
and whether the image is another member's (``JobRequest.extra``). A refused input turns the status
into the neutral :data:`~bot.safety.messages.NOT_RUN` notice, with the rule sent privately and the use
given back.

Buttons: Cancel and Delete are allowed to the job's owner and the guild's moderators
(:func:`bot.discord.requester.job_moderation`); Re-roll, More motion and Less motion start a new
job from the old one's input, admitted like ``/animate``; Extend starts one from the last frame of
the old one's result (:mod:`bot.jobs.extend`), admitted the same way, after the server's limit of
extensions (``/mod caps max_extensions``, read through ``extension_limit``) is checked, so a refusal
costs nothing.

Option defaults and caps (``/mod defaults``, ``/mod caps``; :mod:`bot.moderation.caps`): ``/animate``
refuses privately a value above the guild's cap before anything is counted, and fills what the
member left out with the guild's defaults (then the workflow's, lowered to the caps). A variation
(or an Extend) of an older result whose options exceed a cap lowered since uses the cap, and its
result says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import discord

from bot.discord.delivery import CAPS_NOTES_KEY, PREMIUM_TIER_KEY, UPLOAD_LIMIT_KEY, DiscordDelivery
from bot.discord.permissions import ensure_app_permissions
from bot.discord.requester import job_moderation, requester_from
from bot.discord.safe_delivery import age_restricted
from bot.discord.status import clamp_motion
from bot.discord.tree import describe_error
from bot.errors import InvalidInput, LimitReached, NotAllowed, UserFacingError
from bot.jobs.extend import EXTENDABLE, ExtensionLimit
from bot.jobs.models import Job
from bot.jobs.service import JobRequest, JobService, Reservation
from bot.logs import log_failure
from bot.media.images import ACCEPTED_TEXT, check_declared_size
from bot.moderation import messages
from bot.moderation.caps import apply_defaults, cap_workflow_defaults, check_caps, clamp_to_caps
from bot.moderation.policy import Admission, AdmissionPolicy, Requester
from bot.safety.gate import AGE_RESTRICTED_KEY, OTHERS_IMAGE_KEY, SAFETY_KEY, SafetyGate, SafetyRefused
from bot.safety.messages import NOT_RUN
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
                 settings: Settings, safety: SafetyGate | None = None,
                 on_refused: Callable[[BaseException], None] | None = None,
                 extension_limit: ExtensionLimit | None = None) -> None:
        self.jobs = jobs
        # the most extensions of one result, per server (default: the guild's /mod caps max_extensions)
        self.extension_limit = extension_limit or self._caps_max_extensions
        self.delivery = delivery
        self.policy = policy
        self.settings = settings
        self.safety = safety
        self.on_refused = on_refused

    def _refused(self, error: BaseException) -> None:
        if self.on_refused is not None:
            try:
                self.on_refused(error)
            except Exception:
                log_failure(log, logging.WARNING, "counting a refusal failed")

    @contextlib.contextmanager
    def _counting_refusals(self) -> Iterator[None]:
        """Hand a member-facing refusal raised inside to ``on_refused`` (it still propagates)."""
        try:
            yield
        except UserFacingError as exc:
            self._refused(exc)
            raise

    # ------------------------------------------------------------------ starting a job

    async def animate_attachment(self, interaction: discord.Interaction[Any], image: discord.Attachment, *,
                                 workflow: str | None, options: Mapping[str, Any], others_image: bool = False) -> None:
        """Check access and the payload, admit (count) the job, defer publicly, download, submit, follow.

        ``others_image``: the "Animate image" menu on someone else's message (it checked access already).
        """
        with self._counting_refusals():
            await self._animate_attachment(interaction, image, workflow=workflow, options=options,
                                           others_image=others_image)

    async def animate_message(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        """The "Animate image" menu: access (animating someone else's image is a moderator's
        choice), then the first image of ``message`` like ``/animate`` with default options."""
        others = message.author.id != interaction.user.id
        with self._counting_refusals():
            await self.policy.check_access(requester_from(interaction), animating_others_image=others)
            image = next((a for a in message.attachments if is_image_attachment(a)), None)
            if image is None:
                raise InvalidInput("That message has no image to animate. Use it on a message with an image attached.")
        await self.animate_attachment(interaction, image, workflow=None, options={}, others_image=others)

    async def _animate_attachment(self, interaction: discord.Interaction[Any], image: discord.Attachment, *,
                                  workflow: str | None, options: Mapping[str, Any], others_image: bool) -> None:
        requester = requester_from(interaction)
        if not others_image:  # the context menu checked already
            await self.policy.check_access(requester)
        ensure_app_permissions(interaction)
        if not is_image_attachment(image):
            raise InvalidInput(f"That file is not an image. Please send a {ACCEPTED_TEXT} image.",
                               detail=f"content type {image.content_type!r}")
        check_declared_size(image.size, self.settings.max_input_bytes)
        options = {k: v for k, v in options.items() if v is not None}
        rules = await self.policy.option_rules(requester.guild_id)
        check_caps(rules.caps, options)  # above a server's cap: refused before anything is counted
        options = apply_defaults(rules, options, self.jobs.workflows)
        chosen = self.jobs.workflow_for(workflow, options)
        options = cap_workflow_defaults(chosen, rules.caps, options)
        resolve_options(chosen, options)  # range and type check again before accepting
        self.jobs.require_runnable(chosen, options)
        await self._require_safety(interaction, others_image=others_image)
        admission, reservation = await self._admit(requester, others_image=others_image)
        try:
            download = asyncio.ensure_future(image.read())  # fetched while the interaction is deferred
            try:
                status_id = await self._defer_admitted(interaction, admission)
            except BaseException:
                with contextlib.suppress(Exception):  # the defer's failure is the one to report
                    await cancel_and_wait(download)
                raise
            fields = self._interaction_fields(interaction, status_id)
            if others_image:
                fields["extra"][OTHERS_IMAGE_KEY] = True
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
                    reservation=reservation,
                    **fields,
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
        finally:
            reservation.release()  # nothing once it became the job
        self.delivery.follow(job, note=quota_note(admission))

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
            with self._counting_refusals():
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
        others = action == "extend" and interaction.user.id != job.user_id  # its last frame: another's picture
        await self.policy.check_access(requester, animating_others_image=others)
        ensure_app_permissions(interaction)
        overrides: dict[str, Any] = {}
        new_seed = True
        workflow = self.jobs.workflows.get(job.workflow)
        if action in ("more", "less"):
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
        # an older result's options above a cap lowered since: the cap is used, and the result says so
        clamped = clamp_to_caps(workflow, await self.policy.caps_for(interaction.guild_id), job.options | overrides)
        overrides.update(clamped.changed)
        limit = await self._extension_limit(interaction, job) if action == "extend" else 0
        stored = job.result_meta.get(SAFETY_KEY) or {}
        await self._require_safety(interaction, others_image=others or bool(stored.get(OTHERS_IMAGE_KEY)))
        admission, reservation = await self._admit(requester, others_image=others)
        try:
            status_id = await self._defer_admitted(interaction, admission)
            try:
                who: dict[str, Any] = dict(user_id=interaction.user.id, guild_id=interaction.guild_id,
                                           channel_id=interaction.channel_id or job.channel_id,
                                           max_in_flight=admission.max_in_flight, reservation=reservation,
                                           **self._interaction_fields(interaction, status_id, notes=clamped.notes))
                if action == "extend":
                    new_job = await self.jobs.extend(job.id, limit=limit, overrides=overrides, **who)
                else:
                    new_job = await self.jobs.reroll(job.id, overrides=overrides, new_seed=new_seed, **who)
            except Exception as exc:
                await self._refund(admission)
                await self._failed_after_defer(interaction, exc)
                return
        finally:
            reservation.release()
        self.delivery.follow(new_job, note=quota_note(admission))

    async def _caps_max_extensions(self, guild_id: int | None) -> int:
        return (await self.policy.caps_for(guild_id)).max_extensions

    async def _extension_limit(self, interaction: discord.Interaction[Any], job: Job) -> int:
        """The server's limit of extensions, checked before anything is counted (the job service checks again)."""
        if job.state not in EXTENDABLE or not job.result_path:
            raise InvalidInput("Only a finished animation can be extended.")
        limit = await self.extension_limit(interaction.guild_id)
        if job.extension_index >= limit:
            raise LimitReached(messages.extension_limit(job.extension_index, limit))
        return limit

    # ------------------------------------------------------------------ helpers

    async def _require_safety(self, interaction: discord.Interaction[Any], *, others_image: bool) -> None:
        """Refuse privately, before anything is counted, when the safety detector is unavailable."""
        if self.safety is not None:
            await self.safety.require_available(guild_id=interaction.guild_id, channel_id=interaction.channel_id or 0,
                                                user_id=interaction.user.id, others_image=others_image)

    async def _admit(self, requester: Requester, *, others_image: bool = False) -> tuple[Admission, Reservation]:
        """Every moderation check and limit; counts the job and reserves the member's slot in the
        job service (release it however the request ends). Refunded if the queue refuses it."""
        admission = await self.policy.admit(requester, animating_others_image=others_image,
                                            in_flight=self.jobs.in_flight(requester.user_id))
        try:
            reservation = self.jobs.reserve(requester.user_id, admission.max_in_flight)
        except BaseException:
            await self._refund(admission)
            raise
        return admission, reservation

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

    async def _defer(self, interaction: discord.Interaction[Any]) -> int:
        """Defer publicly (thinking); the deferred message is the status message. Returns its id."""
        response = await interaction.response.defer(thinking=True)
        message_id = getattr(response, "message_id", None)
        if message_id is None:
            message_id = (await interaction.original_response()).id
        return int(message_id)

    def _interaction_fields(self, interaction: discord.Interaction[Any], status_id: int,
                            notes: tuple[str, ...] = ()) -> dict[str, Any]:
        """``notes``: what the caps changed, shown in the result (``CAPS_NOTES_KEY``)."""
        extra: dict[str, Any] = {UPLOAD_LIMIT_KEY: interaction.filesize_limit,
                                 AGE_RESTRICTED_KEY: interaction.guild_id is not None and age_restricted(interaction.channel)}
        if notes:
            extra[CAPS_NOTES_KEY] = list(notes)
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
        self._refused(error)
        text = describe_error(error, where="/animate")
        notice = NOT_RUN if isinstance(error, SafetyRefused) else "❌ I couldn't start this animation."
        try:
            await interaction.edit_original_response(content=notice)
            await interaction.followup.send(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("Could not report a failed /animate (HTTP %s)", exc.status)


def quota_note(admission: Admission) -> str | None:
    """With a daily quota, what the member is told privately ("2 of 5 generations left today...")."""
    return f"{admission.note}." if admission.note else None
