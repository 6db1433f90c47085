"""``/animate``, the "Animate image" message menu and the job buttons: a thin adapter over the job service.

The ``/animate`` options are built at setup from the default workflow's member options
(:class:`~bot.workflows.model.OptionSpec`): ints and floats become ``app_commands.Range``
parameters, choices become ``Literal`` choices, so Discord types and range-checks them; the
bot checks them again (the service raises :class:`~bot.errors.InvalidInput`). With several
workflows a ``workflow`` option with autocomplete is added.

Moderation: the member's access (DMs, ban, pause, channel, role, others' images) is checked
first with the shared :class:`~bot.moderation.policy.AdmissionPolicy`; after the payload checks
the policy admits the job (jobs in flight, cooldown, quotas: counted at once) and the same
in-flight limit goes to the job service. A job refused after admission gives its use back
(:meth:`AdmissionPolicy.refund`). When a daily quota applies, the member is told privately how
many generations are left. Cancel/Delete are allowed to the job's owner and the guild's
moderators (:func:`bot.discord.requester.job_moderation`).

Answering: what the payload tells (permissions, attachment type and size, options) is checked
first and refused ephemerally (a :class:`~bot.errors.UserFacingError`; the tree replies); then
the interaction is deferred publicly: that message becomes the job's status message, edited
by :class:`bot.discord.delivery.DiscordDelivery`. A failure after the defer turns the status into a
one-line notice and the reason goes in an ephemeral followup.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.audit import ensure_audit_log
from bot.discord.buttons import JobButton
from bot.discord.delivery import PREMIUM_TIER_KEY, UPLOAD_LIMIT_KEY, DiscordDelivery
from bot.discord.edit_scheduler import EditScheduler
from bot.discord.permissions import ensure_app_permissions
from bot.discord.requester import ensure_policy, job_moderation, requester_from
from bot.discord.status import clamp_motion
from bot.discord.tree import describe_error
from bot.errors import InvalidInput, NotAllowed, UserFacingError
from bot.jobs.models import Job
from bot.jobs.service import JobRequest, JobService
from bot.logs import log_failure
from bot.media.images import ACCEPTED_TEXT, check_declared_size
from bot.moderation.policy import Admission, AdmissionPolicy, Requester
from bot.settings import Settings
from bot.workflows import OptionSpec, Workflow, resolve_options

log = logging.getLogger(__name__)

MOTION_OPTION = "motion"
MOTION_STEP = 40
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
COMMAND_DESCRIPTION = "Animate an image into a short video"


def _annotation(spec: OptionSpec) -> Any:
    """The parameter annotation Discord turns into a typed, range-checked option."""
    if spec.type == "int":
        lo = int(spec.min) if spec.min is not None else None
        hi = int(spec.max) if spec.max is not None else None
        return app_commands.Range[int, lo, hi] if lo is not None or hi is not None else int
    if spec.type == "float":
        lo_f = float(spec.min) if spec.min is not None else None
        hi_f = float(spec.max) if spec.max is not None else None
        return app_commands.Range[float, lo_f, hi_f] if lo_f is not None or hi_f is not None else float
    if spec.type == "choice":
        return Literal[tuple(spec.choices)]
    if spec.type == "bool":
        return bool
    return str


def _describe(spec: OptionSpec) -> str:
    text = spec.description or spec.name
    if spec.default is not None and spec.type != "choice":
        text += f" (default {spec.default})"
    return text[:100]


def build_animate_command(workflow: Workflow, *, with_workflow: bool,
                          handler: Any, guild_only: bool = True) -> app_commands.Command[Any, ..., Any]:
    """``/animate`` with one parameter per member option of ``workflow`` (see module docstring)."""
    specs = [s for s in workflow.member_options if s.name not in ("image", "workflow")]

    async def animate(interaction: discord.Interaction[Any], **kwargs: Any) -> None:
        image = kwargs.pop("image")
        chosen = kwargs.pop("workflow", None)
        await handler.animate_attachment(interaction, image, workflow=chosen, options=kwargs)

    params = [
        inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction),
        inspect.Parameter("image", inspect.Parameter.KEYWORD_ONLY, annotation=discord.Attachment),
    ]
    descriptions = {"image": "The image to animate (PNG, JPEG, WebP…)"}
    for spec in specs:
        params.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY,
                                        annotation=Optional[_annotation(spec)], default=None))
        descriptions[spec.name] = _describe(spec)
    if with_workflow:
        params.append(inspect.Parameter("workflow", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                                        default=None))
        descriptions["workflow"] = "Which workflow to run (default: the server's default)"
    animate.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    animate.__qualname__ = "animate"
    animate.__discord_app_commands_param_description__ = descriptions  # type: ignore[attr-defined]
    command: app_commands.Command[Any, ..., Any] = app_commands.Command(
        name="animate", description=COMMAND_DESCRIPTION, callback=animate
    )
    command.guild_only = guild_only
    if with_workflow:
        command.autocomplete("workflow")(handler.workflow_autocomplete)
    return command


def is_image_attachment(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type:
        return content_type.startswith("image/")
    return attachment.filename.lower().endswith(IMAGE_EXTENSIONS)


class Animate(commands.Cog):
    """``/animate``, the "Animate image" menu and the job buttons."""

    def __init__(self, *, jobs: JobService, delivery: DiscordDelivery, settings: Settings,
                 policy: AdmissionPolicy | None = None) -> None:
        self.jobs = jobs
        self.delivery = delivery
        self.settings = settings
        self.policy = policy or AdmissionPolicy(jobs.store.guilds, clock=jobs.store.clock, allow_dms=settings.allow_dms,
                                                default_max_in_flight=settings.max_jobs_per_member)
        workflow = jobs.workflows.default
        self.animate_command: app_commands.Command[Any, ..., Any] | None = None
        if workflow is not None:
            self.animate_command = build_animate_command(workflow, with_workflow=len(jobs.workflows) > 1, handler=self,
                                                         guild_only=not settings.allow_dms)
        menu = app_commands.ContextMenu(name="Animate image", callback=self.animate_message)
        menu.guild_only = not settings.allow_dms
        self.context_menus = [menu]

    # ------------------------------------------------------------------ entry points

    async def animate_message(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        others = message.author.id != interaction.user.id
        await self.policy.check_access(requester_from(interaction), animating_others_image=others)
        image = next((a for a in message.attachments if is_image_attachment(a)), None)
        if image is None:
            raise InvalidInput("That message has no image to animate. Use it on a message with an image attached.")
        await self.animate_attachment(interaction, image, workflow=None, options={}, others_image=others)

    async def workflow_autocomplete(self, interaction: discord.Interaction[Any],
                                    current: str) -> list[app_commands.Choice[str]]:
        lowered = current.lower()
        return [app_commands.Choice(name=f"{w.name}: {w.description}"[:100], value=w.name)
                for w in self.jobs.workflows if lowered in w.name.lower()][:25]

    async def animate_attachment(self, interaction: discord.Interaction[Any], image: discord.Attachment, *,
                                 workflow: str | None, options: Mapping[str, Any], others_image: bool = False) -> None:
        """Check access and the payload, admit (count) the job, defer publicly, download, submit, follow."""
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
        status_id = await self._defer_admitted(interaction, admission)
        try:
            data = await image.read()
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
        allowed, moderator = await job_moderation(self.jobs.store, interaction, job)
        if not allowed:
            raise NotAllowed(f"Only the member who started this animation, or a moderator, can {what} it.")
        return moderator

    async def _cancel(self, interaction: discord.Interaction[Any], job: Job) -> None:
        moderator = await self._require_owner_or_mod(interaction, job, "cancel")
        if job.is_terminal:
            raise InvalidInput("That animation has already ended.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            await self.jobs.cancel(job.id, by_user=interaction.user.id, moderator=moderator)
        except UserFacingError as exc:
            await interaction.followup.send(exc.user_message, ephemeral=True)
            return
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
                                            in_flight=self.jobs.queue.in_flight(requester.user_id))
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


    async def cog_load(self) -> None:
        self.delivery.scheduler.start()

    async def cog_unload(self) -> None:
        await self.delivery.close()
        await self.delivery.scheduler.close()


def make_delivery(bot: commands.Bot, jobs: JobService, scheduler: EditScheduler | None = None) -> DiscordDelivery:
    """The Discord delivery for ``jobs`` (status follower + result poster) on one edit scheduler."""

    def member_options(name: str) -> list[str] | None:
        workflow = jobs.workflows.get(name)
        return [o.name for o in workflow.member_options] if workflow is not None else None

    return DiscordDelivery(bot, scheduler or EditScheduler(clock=jobs.clock), now=jobs.clock.now,
                           member_options=member_options, service=jobs)


async def setup(bot: commands.Bot) -> None:
    """Build the cog from ``bot.services["jobs"]`` (and ``["delivery"]`` if the app made one)."""
    services: dict[str, Any] = getattr(bot, "services", {})
    jobs: JobService | None = services.get("jobs")
    if jobs is None:
        log.error("The job service is not configured: /animate is not available")
        return
    delivery: DiscordDelivery | None = services.get("delivery")
    if delivery is None:
        delivery = make_delivery(bot, jobs, services.get("edit_scheduler"))
        services["delivery"] = delivery
    if jobs.delivery is None:
        jobs.delivery = delivery
    settings: Settings = bot.settings  # type: ignore[attr-defined]
    policy = ensure_policy(services, jobs.store, settings)
    ensure_audit_log(bot, jobs.store)
    cog = Animate(jobs=jobs, delivery=delivery, settings=settings, policy=policy)
    await bot.add_cog(cog)
    if cog.animate_command is not None:
        bot.tree.add_command(cog.animate_command)
    bot.add_dynamic_items(JobButton)


__all__: Sequence[str] = ["Animate", "build_animate_command", "is_image_attachment", "make_delivery", "setup"]
