"""The Discord side of a job: the status-message follower and the :class:`Delivery` implementation.

- :meth:`DiscordDelivery.follow` starts one follower per job. It consumes
  ``service.stream(job_id)`` (latest-value, so a slow follower only skips stale states),
  renders each update with :mod:`bot.discord.status` and posts the edit to the shared
  :class:`~bot.discord.edit_scheduler.EditScheduler` (waiting updates with the slow interval, only
  when the text changes), with a Cancel button while the job can still be cancelled.
- :meth:`DiscordDelivery.deliver` reads the result once, fits it to the upload limit stored with
  the job (a GIF or WebP that fits, or an MP4 Discord plays inline, is posted as it is), adds the
  poster, and puts the result on the status message through the scheduler as a *final* edit:
  it goes out at once, replacing any progress edit still waiting, and no older progress edit
  can land after it. The poster (the embed's image) is left out for a GIF or WebP, which Discord
  shows inline, animated, first frame first; for an MP4 (Discord shows a player) it is made
  beforehand from the prepared input, which is what the first frame shows, while the job is on
  the image server (a small JPEG; from the result's first frame only when the input is gone). When the
  interaction token is too old (or Discord refuses it) the result is posted as a new channel
  message replying to the status message and mentioning only the requester. A status
  message that was deleted (10008 Unknown Message) is not edited again: the result goes to
  the channel. A channel the bot can no longer post in (unknown channel, missing access or
  permissions) or a file Discord refuses ends the delivery at once (:class:`JobFailed`)
  instead of being retried.
- Safety (issue 16): right before posting, ``result_check`` (:class:`bot.discord.safe_delivery.ResultGate`)
  judges the original output file: a result to hide is posted as ``SPOILER_animation_...`` without a
  poster (embed images cannot be hidden); a withheld one raises ``ResultWithheld`` and nothing is posted.
- :meth:`DiscordDelivery.job_ended` turns the status into a one-line notice (final edit) and
  sends the reason privately as an ephemeral followup while the token is valid; otherwise it
  says it in the channel, mentioning the requester.

Status edits use the interaction's webhook built from the job's stored ``application_id`` and
token, so they work for any job the store knows, not only the interaction object in memory.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import discord

from bot.discord.buttons import RESULT_ACTIONS, RUNNING_ACTIONS, job_view
from bot.discord.edit_scheduler import EditScheduler
from bot.discord.posters import INLINE_FORMATS, POSTER_MARGIN, POSTER_PHASES, POSTER_SHARE, Posters
from bot.discord.status import ended_details, ended_notice, ended_public, file_note, render_update, result_embed
from bot.discord.tree import DEAD_TOKEN_CODES
from bot.errors import JobFailed
from bot.jobs.models import Job
from bot.jobs.progress import ProgressStream
from bot.logs import log_failure
from bot.media.video import fit_video_async, sniff_format, upload_limit
from bot.observability.timing import Marks, log_marks

log = logging.getLogger(__name__)

UNKNOWN_MESSAGE = 10008
# Codes a retry cannot fix: unknown channel, missing access, missing permissions, file too large.
HOPELESS_POST_CODES = frozenset({10003, 50001, 50013, 40005})
MIN_VIDEO_BUDGET = 256 * 1024

#: Key under which the animate flow stores interaction facts in ``JobRequest.extra`` (kept in result_meta["request"]).
UPLOAD_LIMIT_KEY = "upload_limit"
#: What a server's caps changed in a variation's options ("Used 14 frames: ..."), shown in its result embed.
CAPS_NOTES_KEY = "caps_notes"
PREMIUM_TIER_KEY = "premium_tier"


class JobSource(Protocol):
    """What the follower needs from the job service."""

    def stream(self, job_id: str) -> ProgressStream: ...


def is_dead_token(exc: BaseException) -> bool:
    """The interaction token no longer works (HTTP 401, or one of :data:`DEAD_TOKEN_CODES`)."""
    return isinstance(exc, discord.HTTPException) and (exc.status == 401 or exc.code in DEAD_TOKEN_CODES)


def is_unknown_message(exc: BaseException) -> bool:
    """The message is gone (deleted by a member or a moderator)."""
    return isinstance(exc, discord.HTTPException) and exc.code == UNKNOWN_MESSAGE


def upload_limit_for(job: Job) -> int:
    """The upload limit stored with the job at submit time (the interaction's), else the default."""
    request = job.result_meta.get("request") or {}
    return upload_limit(request.get(PREMIUM_TIER_KEY), request.get(UPLOAD_LIMIT_KEY))


def _caps_notes(job: Job) -> list[str]:
    """What the server's caps changed in this job's options, stored by the animate flow (shown in the result)."""
    notes = (job.result_meta.get("request") or {}).get(CAPS_NOTES_KEY) or []
    return [str(note)[:200] for note in notes][:5]


class DiscordDelivery:
    """Follows status messages and delivers results (see the module docstring)."""

    def __init__(
        self,
        client: discord.Client,
        scheduler: EditScheduler,
        *,
        now: Callable[[], float],
        member_options: Callable[[str], Iterable[str] | None] | None = None,
        service: JobSource | None = None,
        result_check: Callable[[Job, Path], Awaitable[bool]] | None = None,
    ) -> None:
        self.client = client
        self.result_check = result_check  # safety (issue 16): True = a spoiler; raises ResultWithheld
        self.scheduler = scheduler
        self.now = now
        self.service = service
        self._member_options = member_options or (lambda workflow: None)
        # Kept per job only while it runs: a follower until it stops, and whether its status
        # message was deleted until the job's ending was shown (see :meth:`_job_done`).
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._gone: set[str] = set()  # jobs whose status message was deleted
        self.posters = Posters()  # made while the job runs

    # ------------------------------------------------------------------ following

    def follow(self, job: Job, *, note: str | None = None) -> None:
        """Start editing ``job``'s status message from its progress stream (a job that has
        already ended has a closed stream: its follower stops at once). ``note``: a private line
        for the member ("2 of 5 generations left today..."), sent once the status is shown."""
        if self.service is None:
            raise RuntimeError("DiscordDelivery.service must be set before following jobs")
        if job.id in self._followers or job.status_message_id is None:
            return
        task = asyncio.create_task(self._follow(job, note), name=f"status-{job.id}")
        self._followers[job.id] = task
        task.add_done_callback(functools.partial(self._forget_follower, job.id))

    def _forget_follower(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._followers.pop(job_id, None)

    async def _follow(self, job: Job, note: str | None) -> None:
        assert self.service is not None
        last: tuple[str, bool] | None = None
        running_view: discord.ui.View | None = None  # the Cancel button, made once per job
        try:
            async for update in self.service.stream(job.id):
                if update.is_terminal or update.phase == "delivering":
                    return
                if update.phase in POSTER_PHASES:
                    self.posters.start(job)
                if not job.can_edit_interaction(self.now()) or job.id in self._gone:
                    return  # the result or the ending will go to the channel instead
                status = render_update(update)
                shown = (status.content, status.cancellable)
                if shown == last:
                    continue
                last = shown
                running_view = running_view or (job_view(job.id, RUNNING_ACTIONS) if status.cancellable else None)
                view = running_view if status.cancellable else None
                edit = self._post_edit(job, waiting=update.phase in ("waiting", "queued"), final=False, shown=shown,
                                       content=status.content, view=view, embeds=[], attachments=[])
                if note is not None:
                    await self._send_note(job, edit, note)
                    note = None
        except asyncio.CancelledError:
            raise
        except Exception:
            log_failure(log, logging.ERROR, "job %s: the status follower stopped", job.id)

    async def _send_note(self, job: Job, first_edit: asyncio.Future[None], note: str) -> None:
        """Send ``note`` privately once the first status edit is done: until the deferred reply is
        edited, Discord takes the first followup as that reply (public, replacing "thinking...")."""
        try:
            await first_edit
        except Exception:  # the status is not shown (already logged): the note would take its place
            log.info("job %s: private note not sent (the status message could not be edited)", job.id)
            return
        try:
            await self._webhook(job).send(note, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.info("job %s: could not send the private note (HTTP %s)", job.id, exc.status)

    def _stop_following(self, job_id: str) -> None:
        task = self._followers.pop(job_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _job_done(self, job_id: str) -> None:
        """The job's ending has been shown: forget what was kept for it here and on the
        scheduler (a progress edit still queued for it is dropped too)."""
        self._stop_following(job_id)
        self._gone.discard(job_id)
        self.posters.drop(job_id)
        self.scheduler.forget(("status", job_id))

    def per_job_counts(self) -> dict[str, int]:
        """What is kept per job here and on the edit scheduler (see ``JobService.memory_counts``)."""
        return {"followers": len(self._followers), "delivery_records": len(self._gone),
                "posters": len(self.posters), **self.scheduler.per_job_counts()}

    async def close(self) -> None:
        tasks = [*self._followers.values(), *self.posters.pending()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ editing

    def _webhook(self, job: Job) -> discord.Webhook:
        assert job.application_id is not None and job.interaction_token is not None
        # Built like ``Interaction.followup``: an application webhook (type 3), so ephemeral sends work.
        data = {"id": job.application_id, "type": 3, "token": job.interaction_token}
        return discord.Webhook.from_state(data=data, state=self.client._connection)  # type: ignore[arg-type]

    def _post_edit(self, job: Job, *, waiting: bool, final: bool, marks: Marks | None = None,
                   shown: tuple[str, bool] | None = None, **fields: Any) -> asyncio.Future[None]:
        """Queue an edit of the status message on the scheduler; the future tells how it went."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        message_id = job.status_message_id
        assert message_id is not None

        async def edit() -> None:
            if marks is not None:
                marks.mark("sent")
            try:
                await self._webhook(job).edit_message(
                    message_id, allowed_mentions=discord.AllowedMentions.none(), **fields
                )
            except asyncio.CancelledError:
                if not done.done():
                    done.cancel()
                raise
            except Exception as exc:
                if is_unknown_message(exc):
                    self._gone.add(job.id)  # deleted: no more edits of it
                if not done.done():
                    done.set_exception(exc)
                if not final:
                    log.info("job %s: status edit failed: %s", job.id, exc)
                return
            if not done.done():
                done.set_result(None)

        if marks is not None:
            marks.mark("queued")
        self.scheduler.post(("status", job.id), job.channel_id, edit, waiting=waiting, final=final, shown=shown)
        if not final:
            done.add_done_callback(_consume)
        return done

    async def _final_edit(self, job: Job, *, marks: Marks | None = None, **fields: Any) -> None:
        """Queue the last edit and wait until it was sent (no time-out: giving up while the edit is
        still queued would let a retried delivery upload the video a second time)."""
        await self._post_edit(job, waiting=False, final=True, marks=marks, **fields)

    def _can_edit(self, job: Job) -> bool:
        return (job.status_message_id is not None and job.id not in self._gone
                and job.can_edit_interaction(self.now()))

    # ------------------------------------------------------------------ Delivery protocol

    async def deliver(self, job: Job, result: Path, attempt: int) -> int | None:
        """Post the result; returns the id of the message that carries it. From the second
        ``attempt`` on (counted across restarts) it first looks for a result already posted. A
        failed try keeps what is known of the job (the service tries again, or ends it with
        :meth:`job_ended`)."""
        marks = Marks()
        marks.mark("start")
        message_id = await self._deliver(job, result, attempt, marks)
        marks.mark("done")
        log_marks("delivery", marks, job=job.id)
        self._job_done(job.id)
        return message_id

    async def _deliver(self, job: Job, result: Path, attempt: int, marks: Marks) -> int | None:
        self._stop_following(job.id)
        if attempt > 1:
            posted = await self._already_posted(job)
            if posted is not None:
                log.info("job %s: its result was already posted (message %s); not posting it again", job.id, posted)
                return posted
        limit = upload_limit_for(job)
        spoiler = await self.result_check(job, result) if self.result_check is not None else False  # safety
        marks.mark("checked")
        try:
            video = await asyncio.to_thread(result.read_bytes)  # the only read of the result
        except OSError as exc:
            raise JobFailed("The result file could not be read.", detail=f"read failed: {exc!r}") from exc
        marks.mark("read")
        inline = sniff_format(video[:16]) in INLINE_FORMATS and len(video) <= limit - POSTER_MARGIN
        poster: bytes | None = None if inline or spoiler else await self.posters.take(job, video)  # an MP4, or to become one
        marks.mark("poster")
        if poster is not None and len(poster) > limit // POSTER_SHARE:
            poster = None  # it would crowd out the video: the embed goes without it
        budget = limit - (len(poster) if poster else 0) - POSTER_MARGIN
        try:
            return await self._post_result(job, video, limit, budget, poster, marks, spoiler)
        except discord.HTTPException as exc:
            if exc.status != 413:
                raise
        # Discord counted more than we did (form overhead, a limit lower than announced): smaller, once
        log.warning("job %s: Discord refused the upload as too large (limit %d bytes); trying a smaller file",
                    job.id, limit)
        try:
            return await self._post_result(job, video, limit, int(budget * 0.7), None, marks, spoiler)
        except discord.HTTPException as exc:
            if exc.status == 413:
                raise JobFailed("The video was made but is too big to post in this channel.",
                                detail=f"HTTP 413 with a {limit}-byte limit") from None
            raise

    async def _post_result(self, job: Job, result: bytes, limit: int, budget: int, poster: bytes | None,
                           marks: Marks, spoiler: bool = False) -> int | None:
        """Fit the video to ``budget`` bytes and post it (editing the status message while the
        interaction lives, else as a channel message); a 413 is raised as is."""
        fitted = await fit_video_async(result, max(MIN_VIDEO_BUDGET, budget))
        marks.mark("fit")
        video = fitted.data if fitted.data is not None else await asyncio.to_thread(fitted.read)
        video_name = f"{'SPOILER_' if spoiler else ''}animation_{job.id}.{fitted.format}"
        poster_name = f"poster_{job.id}.{_image_suffix(poster)}" if poster is not None else None
        embed = discord.Embed.from_dict(
            result_embed(job, member_options=self._member_options(job.workflow), poster_name=poster_name,
                         note="\n".join([file_note(fitted, limit), *_caps_notes(job)]))
        )
        view = job_view(job.id, RESULT_ACTIONS)

        def files() -> list[discord.File]:
            attached = [discord.File(io.BytesIO(video), filename=video_name)]
            if poster is not None and poster_name is not None:
                attached.append(discord.File(io.BytesIO(poster), filename=poster_name))
            return attached

        if self._can_edit(job):
            try:
                await self._final_edit(job, marks=marks, content=f"<@{job.user_id}> your animation is ready.",
                                       embeds=[embed], attachments=files(), view=view)
                return job.status_message_id
            except Exception as exc:
                if is_unknown_message(exc):
                    log.info("job %s: the status message was deleted; posting the result in the channel", job.id)
                elif is_dead_token(exc):
                    log.info("job %s: interaction token refused; posting the result in the channel", job.id)
                else:
                    raise
        try:
            marks.mark("queued")
            marks.mark("sent")
            message = await self._channel_send(job, f"<@{job.user_id}> your animation is ready.",
                                               embed=embed, files=files(), view=view)
        except discord.HTTPException as exc:
            if exc.code in HOPELESS_POST_CODES:
                raise JobFailed("The video was made but I can't post it in that channel any more.",
                                detail=f"HTTP {exc.status}, code {exc.code}") from None
            raise
        return message.id

    async def _already_posted(self, job: Job) -> int | None:
        """The message that already carries this job's video (an earlier try got through), if any."""
        name = f"animation_{job.id}."

        def carries(message: discord.Message) -> bool:
            return any(a.filename.removeprefix("SPOILER_").startswith(name) for a in message.attachments)

        try:
            if self._can_edit(job) and job.status_message_id is not None:
                status: discord.Message = await self._webhook(job).fetch_message(job.status_message_id)
                if carries(status):
                    return status.id
            channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            me = self.client.user
            async for message in channel.history(limit=50):
                if me is not None and message.author.id == me.id and carries(message):
                    return message.id
        except discord.HTTPException as exc:
            log.info("job %s: could not check for an earlier result (HTTP %s)", job.id, exc.status)
        return None

    async def job_ended(self, job: Job) -> None:
        """The job failed, was cancelled or timed out: say so on the status message and privately.

        With the status message deleted but the token still valid, the member is told in an
        ephemeral followup only; the channel is used only once the token no longer works.
        """
        try:
            await self._show_ending(job)
        finally:
            self._job_done(job.id)

    async def _show_ending(self, job: Job) -> None:
        self._stop_following(job.id)
        notice = ended_notice(job)
        details = ended_details(job)
        text = notice if not details else f"{notice} {details}"
        if self._can_edit(job):
            try:
                await self._final_edit(job, content=notice, embeds=[], attachments=[], view=None)
                if details:
                    await self._webhook(job).send(details, ephemeral=True,
                                                  allowed_mentions=discord.AllowedMentions.none())
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_dead_token(exc) and not is_unknown_message(exc):
                    log.warning("job %s: could not show its ending: %s", job.id, exc)
                    return
        if job.id in self._gone and job.can_edit_interaction(self.now()):
            try:
                await self._webhook(job).send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_dead_token(exc):
                    log.warning("job %s: could not tell the member it ended: %s", job.id, exc)
                    return
        try:
            await self._channel_send(job, f"<@{job.user_id}> {ended_public(job)}")  # a withheld reason stays private
        except discord.HTTPException as exc:
            log.warning("job %s: could not tell the member it ended (HTTP %s)", job.id, exc.status)

    async def _channel_send(self, job: Job, content: str, **fields: Any) -> discord.Message:
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        if job.status_message_id is not None and job.id not in self._gone:
            fields["reference"] = discord.MessageReference(message_id=job.status_message_id, channel_id=job.channel_id,
                                                           guild_id=job.guild_id, fail_if_not_exists=False)
        mentions = discord.AllowedMentions(everyone=False, roles=False, replied_user=False,
                                           users=[discord.Object(id=job.user_id)])
        return await channel.send(content, allowed_mentions=mentions, **fields)


def _image_suffix(data: bytes) -> str:
    """``jpg`` for a JPEG poster (made from the input), else ``png`` (a first frame)."""
    return "jpg" if data.startswith(b"\xff\xd8\xff") else "png"


def _consume(future: asyncio.Future[None]) -> None:
    """Mark a progress edit's outcome as seen (its failure is already logged)."""
    if not future.cancelled():
        future.exception()


__all__ = ["DiscordDelivery", "JobSource", "is_dead_token", "upload_limit_for",
           "UPLOAD_LIMIT_KEY", "PREMIUM_TIER_KEY", "CAPS_NOTES_KEY"]
