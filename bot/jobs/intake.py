"""Intake: a member's request becomes a queued job (submit, re-roll), or a job is called off (cancel, a moderator's clear), within the limits.

- **limits**: no answering server, the member's jobs in flight, the line's length. They are
  checked before any work (:meth:`Intake.check_can_accept`) and again when the job is queued.
  A request admitted before its image is ready holds a :class:`~bot.jobs.fairqueue.Reservation`
  (:meth:`Intake.reserve`): the member's slot is counted from admission, so a burst cannot slip
  past the limit while earlier images are being downloaded and prepared; the reservation becomes
  the queued job, or is released when the request fails. The per-member limit is given as a
  :data:`~bot.jobs.fairqueue.Limit`; :data:`~bot.jobs.fairqueue.DEFAULT` (the one "use the
  default" marker) is resolved by the fair queue only.
- **submit**: the workflow (the named one, or the default or a fallback a server can run), the
  options checked, the image prepared in a thread (format judged from the bytes, size checked
  before decoding, EXIF rotation, RGB, fitted), the job stored, then queued (:meth:`_queue_job`,
  the one way a job is made); **re-roll**: a new job from an earlier one's input and options (a
  re-roll of an extension is that extension again, with a new seed); **extend**: a new job from
  the last frame of an earlier one's original result file (:mod:`bot.jobs.extend`), judged as a
  new image, with the chain (first job, extension number) stored with it.
- **cancel**: a waiting job is dropped from the line; a running one's attempt is told
  (:meth:`bot.jobs.attempt.Attempt.decide`, the first decided reason wins) and the runner stops
  its prompt; a job being moved off a lost server is cancelled once it is back in line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bot.errors import BackendUnavailable, InvalidInput, LimitReached, NotAllowed
from bot.jobs.context import JobContext
from bot.jobs.dispatcher import Dispatcher
from bot.jobs.endings import Ending, Endings, EndReason, state_words
from bot.jobs.extend import EXTEND_KEY, EXTENDABLE, chain_fields, frame_source, join_base, plan_for
from bot.jobs.fairqueue import DEFAULT, Limit, Reservation
from bot.jobs.fleet import Fleet
from bot.jobs.models import Job, JobState
from bot.jobs.progress import ProgressStream
from bot.jobs.runner import Runner
from bot.jobs.workload import input_size_fields
from bot.media.clips import last_frame_png_async
from bot.media.images import PreparedImage, prepare_image_async
from bot.moderation import messages
from bot.safety.detector import RGBArray, to_rgb_array
from bot.safety.gate import OTHERS_IMAGE_KEY, SAFETY_KEY, InputCheck, InputSubject
from bot.workflows import Workflow, resolve_options

log = logging.getLogger(__name__)

__all__ = ["Intake", "JobRequest"]

CANCEL_WAIT = 15.0  # seconds a cancel waits for the job to end before answering


@dataclass(frozen=True)
class JobRequest:
    """What a member asked for. ``image`` is raw bytes; the service prepares it in a thread.

    ``max_in_flight``: the member's limit (None: none, e.g. an exempt role; :data:`DEFAULT`: the
    bot's). ``reservation``: the slot held for this request since it was admitted
    (:meth:`Intake.reserve`); it becomes the job, or is released if the request fails.
    """

    user_id: int
    channel_id: int
    guild_id: int | None
    image: bytes | None = field(default=None, repr=False)
    source_job_id: str | None = None
    workflow: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    interaction_token: str | None = field(default=None, repr=False)
    application_id: int | None = None
    interaction_created_at: float | None = None
    status_message_id: int | None = None
    max_in_flight: Limit = DEFAULT
    extra: Mapping[str, Any] = field(default_factory=dict)  # kept with the job (e.g. the upload limit)
    reservation: Reservation | None = field(default=None, repr=False, compare=False)


class Intake:
    """See the module docstring."""

    def __init__(self, ctx: JobContext, *, dispatcher: Dispatcher, runner: Runner, endings: Endings, fleet: Fleet,
                 rng: Any = None, input_check: InputCheck | None = None) -> None:
        self.ctx = ctx
        self.input_check = input_check  # content safety: judges every input before it is stored or sent
        self._early_check = threading.Semaphore(1)  # one input checked on its pixels at a time (see _prepare_and_judge)
        self.dispatcher = dispatcher
        self.runner = runner
        self.endings = endings
        self.fleet = fleet
        self.rng = rng

    # ------------------------------------------------------------------ limits

    def check_can_accept(self, user_id: int, max_in_flight: Limit = DEFAULT) -> None:
        """Refuse now (before any work) when no server answers or a queue limit is reached."""
        self.fleet.require_a_server()
        self.ctx.queue.check_room(user_id, max_in_flight=max_in_flight)

    def reserve(self, user_id: int, max_in_flight: Limit = DEFAULT) -> Reservation:
        """:meth:`check_can_accept`, then hold the member's slot until the job is queued (pass it
        in the request) or the reservation is released."""
        self.fleet.require_a_server()
        return self.ctx.queue.reserve(user_id, max_in_flight=max_in_flight)

    def require_runnable(self, workflow: Workflow, options: Mapping[str, Any] | None = None) -> None:
        """Refuse (:class:`BackendUnavailable`) when no server answers, or a workflow, or a
        choice of its options, that no answering server can run."""
        self.fleet.require_a_server()
        self.ctx.router.require_runnable(workflow, options)

    def _check_room(self, request: JobRequest) -> None:
        if request.reservation is not None and request.reservation.active:
            return  # its slot was held since it was admitted
        self.ctx.queue.check_room(request.user_id, max_in_flight=request.max_in_flight)

    # ------------------------------------------------------------------ new jobs

    async def submit(self, request: JobRequest) -> Job:
        """Check, prepare and queue a new job. Raises :class:`UserFacingError` subclasses."""
        try:
            workflow = self.ctx.router.workflow_for(request.workflow, request.options)
            self.require_runnable(workflow, request.options)
            self._check_room(request)
            resolved = resolve_options(workflow, request.options, self.rng)
            if request.image is None:
                raise InvalidInput("Attach an image to animate.")
            prepared, safety = await self._prepare_and_judge(request, str(resolved.get("fit", "crop")))
            return await self._queue_job(request, workflow, resolved.as_dict(), png=prepared.png, safety=safety)
        finally:
            if request.reservation is not None:
                request.reservation.release()  # nothing if it became the job

    async def reroll(self, job_id: str, request: JobRequest, *, overrides: Mapping[str, Any] | None = None,
                     new_seed: bool = True, extra: Mapping[str, Any] | None = None) -> Job:
        """A new job from an earlier one's input and options (a new seed unless one is given).
        ``request`` says who asks and where; ``extra`` None keeps the earlier job's."""
        try:
            parent = await self.ctx.store.jobs.get(job_id)
            if parent is None:
                raise InvalidInput("That job is no longer known.")
            if not parent.input_path or not await asyncio.to_thread(Path(parent.input_path).exists):
                raise InvalidInput("The original image of that job is no longer kept; start a new /animate.")
            workflow = self.ctx.workflows.get(parent.workflow)
            if workflow is None:
                raise InvalidInput("The workflow of that job is no longer available; start a new /animate.")
            member_names = {o.name for o in workflow.member_options}
            options = {k: v for k, v in parent.options.items() if k in member_names}
            if new_seed:
                options.pop("seed", None)
            options.update({k: v for k, v in (overrides or {}).items() if v is not None})
            resolved = resolve_options(workflow, options, self.rng)
            self.require_runnable(workflow, resolved.as_dict())
            self._check_room(request)
            meta = dict(extra) if extra is not None else dict(parent.result_meta.get("request", {}))
            # the stored input scores are judged again, by the mode and channel of now
            safety = await self._judge(InputSubject(request.user_id, request.guild_id, request.channel_id,
                                                    Path(parent.input_path), meta, parent.result_meta.get(SAFETY_KEY)))
            chain: dict[str, Any] = {}
            if parent.extension_index and isinstance(parent.result_meta.get(EXTEND_KEY), dict):
                chain = {"chain_root_id": parent.chain_root_id, "extension_index": parent.extension_index,
                         EXTEND_KEY: parent.result_meta[EXTEND_KEY]}  # the same extension again
            return await self._queue_job(request, workflow, resolved.as_dict(), input_path=parent.input_path,
                                         parent=parent, extra=meta, safety=safety, chain=chain)
        finally:
            if request.reservation is not None:
                request.reservation.release()

    async def extend(self, job_id: str, request: JobRequest, *, limit: int,
                     overrides: Mapping[str, Any] | None = None) -> Job:
        """A new job from the last frame of an earlier one's original result, with its options and a
        new seed; its result is joined onto that result before delivery (:mod:`bot.jobs.extend`).
        ``limit``: the most extensions one result may have on this server."""
        try:
            parent = await self.ctx.store.jobs.get(job_id)
            if parent is None:
                raise InvalidInput("That job is no longer known.")
            if parent.state not in EXTENDABLE:
                raise InvalidInput("Only a finished animation can be extended.")
            if parent.extension_index >= limit:
                raise LimitReached(messages.extension_limit(parent.extension_index, limit))
            workflow = self.ctx.workflows.get(parent.workflow)
            if workflow is None:
                raise InvalidInput("The workflow of that job is no longer available; start a new /animate.")
            source, boomerang = frame_source(parent)
            base, _ = join_base(parent)
            if source is None or base is None or not await asyncio.to_thread(_all_exist, source, base):
                raise InvalidInput("The video of that animation is no longer kept, so it cannot be extended.")
            member_names = {o.name for o in workflow.member_options}
            options = {k: v for k, v in parent.options.items() if k in member_names and k != "seed"}
            options.update({k: v for k, v in (overrides or {}).items() if v is not None and k != "seed"})
            resolved = resolve_options(workflow, options, self.rng)
            self.require_runnable(workflow, resolved.as_dict())
            self._check_room(request)
            frame = await last_frame_png_async(source, boomerang=boomerang)
            prepared = await prepare_image_async(frame, fit=str(resolved.get("fit", "crop")),
                                                 max_pixels=self.ctx.limits.max_input_pixels)
            meta = dict(request.extra)
            if request.user_id != parent.user_id or (parent.result_meta.get("request") or {}).get(OTHERS_IMAGE_KEY):
                meta[OTHERS_IMAGE_KEY] = True  # another member's picture: judged strictly
            # a new image: judged like any input
            safety = await self._judge(InputSubject(request.user_id, request.guild_id, request.channel_id,
                                                    prepared.png, meta))
            root = await self.ctx.store.jobs.get(parent.chain_root_id) if parent.chain_root_id else None
            chain = {**chain_fields(parent), EXTEND_KEY: plan_for(parent, root, limit)}
            return await self._queue_job(request, workflow, resolved.as_dict(), png=prepared.png, parent=parent,
                                         extra=meta, safety=safety, chain=chain)
        finally:
            if request.reservation is not None:
                request.reservation.release()

    async def _queue_job(self, request: JobRequest, workflow: Workflow, options: dict[str, Any], *,
                         png: bytes | None = None, input_path: str | None = None, parent: Job | None = None,
                         extra: Mapping[str, Any] | None = None, safety: dict[str, Any] | None = None,
                         chain: Mapping[str, Any] | None = None) -> Job:
        """Make the job (the one place), keep its prepared image, store it and queue it. ``chain``:
        an extension's chain columns and its plan (:mod:`bot.jobs.extend`)."""
        meta = dict(request.extra if extra is None else extra)
        chain = dict(chain or {})
        plan = chain.pop(EXTEND_KEY, None)
        job = Job.new(
            user_id=request.user_id,
            channel_id=request.channel_id,
            guild_id=request.guild_id,
            workflow=workflow.name,
            created_at=self.ctx.clock.now(),
            options=options,
            input_path=input_path,
            parent_job_id=parent.id if parent is not None else None,
            interaction_token=request.interaction_token,
            application_id=request.application_id,
            interaction_created_at=request.interaction_created_at,
            status_message_id=request.status_message_id,
            result_meta={"request": meta} if meta else {},
            **chain,
        )
        if plan is not None:
            job.result_meta[EXTEND_KEY] = plan
        if safety is not None:  # kept for re-rolls and the result check
            job.result_meta[SAFETY_KEY] = safety
        # the prepared image's size, for the wait estimate (bot.jobs.workload)
        head = png[:24] if png is not None else await asyncio.to_thread(_read_head, input_path)
        job.result_meta.update(input_size_fields(head))
        if png is not None:
            path = self.ctx.inputs_dir / f"{job.id}.png"
            await asyncio.to_thread(_write_bytes, path, png)
            job.input_path = str(path)
        if self.ctx.closing:
            raise BackendUnavailable("The bot is restarting. Please try again in a minute.")
        self._check_room(request)
        await self.ctx.store.jobs.add(job)
        self.dispatcher.queue_new(job, request.reservation)
        await self.ctx.emit(job, "queued", job.user_id)
        return job

    async def _prepare_and_judge(self, request: JobRequest, fit: str) -> tuple[PreparedImage, dict[str, Any] | None]:
        """Prepare the image and judge it (content safety). The check starts on the fitted pixels
        while the PNG is written, for one input at a time: the others (a burst) are judged from
        their PNG as before, so a burst never holds more than one image's pixels for the check."""
        assert request.image is not None
        loop = asyncio.get_running_loop()
        fitted: asyncio.Future[RGBArray] = loop.create_future()
        slot = self._early_check

        def give(pixels: RGBArray) -> None:
            if fitted.done():
                slot.release()
            else:
                fitted.set_result(pixels)

        def hand_over(image: Image.Image) -> None:  # in the preparation thread
            if self.input_check is not None and slot.acquire(blocking=False):
                pixels = to_rgb_array(image)
                loop.call_soon_threadsafe(give, pixels)

        preparing = asyncio.ensure_future(prepare_image_async(
            request.image, fit=fit, max_pixels=self.ctx.limits.max_input_pixels, on_fitted=hand_over))
        await asyncio.wait((preparing, fitted), return_when=asyncio.FIRST_COMPLETED)
        if not fitted.done():  # not handed over (another input holds the slot), or refused before it was fitted
            fitted.cancel()
            prepared = await preparing
            return prepared, await self._judge(InputSubject(request.user_id, request.guild_id, request.channel_id,
                                                            prepared.png, request.extra))
        try:
            judging = asyncio.ensure_future(self._judge(InputSubject(
                request.user_id, request.guild_id, request.channel_id, fitted.result(), request.extra)))
            try:
                prepared = await preparing
            except BaseException:
                judging.cancel()
                await asyncio.gather(judging, return_exceptions=True)
                raise
            return prepared, await judging
        finally:
            slot.release()

    async def _judge(self, subject: InputSubject) -> dict[str, Any] | None:
        """The content-safety verdict on an input (raises :class:`~bot.safety.gate.SafetyRefused`)."""
        return None if self.input_check is None else await self.input_check.check_input(subject)

    # ------------------------------------------------------------------ calling jobs off

    async def cancel(self, job_id: str, *, by_user: int, moderator: bool = False) -> Job:
        """Cancel a job: dropped if waiting, deleted from ComfyUI's queue, or interrupted if running."""
        job = await self.ctx.store.jobs.get(job_id)
        if job is None:
            raise InvalidInput("That job is no longer known.")
        if job.user_id != by_user and not moderator:
            raise NotAllowed("Only the member who started this job, or a moderator, can cancel it.")
        if job.is_terminal:
            raise InvalidInput(f"That job has already ended ({state_words(job.state)}).")
        if job.state is JobState.DELIVERING:
            raise InvalidInput("That job is already done; its video is being posted.")
        ending = Ending.cancelled(job.user_id, by_user)
        stream = self.stream(job_id)
        for _ in range(3):  # waiting, running, or being moved back to the line (then waiting)
            if self.ctx.queue.remove(job_id):
                await self.endings.finish(job_id, ending)
                return await self._reload(job_id)
            attempt = self.runner.attempt_of(job_id)
            if attempt is None:
                break
            moving = attempt.ending is not None and attempt.ending.reason is EndReason.MOVED
            if not moving:
                attempt.decide(ending)  # the runner stops the prompt; a reason decided earlier wins
                await attempt.wait_over(CANCEL_WAIT)
                return await self._reload(job_id)
            await attempt.wait_over(CANCEL_WAIT)  # it goes back to the line: cancel it there
        await _wait_terminal(stream, CANCEL_WAIT)
        return await self._reload(job_id)

    async def clear_waiting(self, guild_id: int, *, by: int) -> list[Job]:
        """Cancel every job of ``guild_id`` still waiting in the bot's line (a moderator's clear)."""
        cleared: list[Job] = []
        for entry in self.ctx.queue.order():
            job = await self.ctx.store.jobs.get(entry.job_id)
            if job is None or job.guild_id != guild_id or job.state is not JobState.WAITING:
                continue
            if not self.ctx.queue.remove(job.id):
                continue
            await self.endings.finish(job.id, Ending.cancelled(job.user_id, by))
            cleared.append(await self._reload(job.id))
        if cleared:
            self.dispatcher.publish_positions()
            self.ctx.wake()
        return cleared

    def stream(self, job_id: str) -> ProgressStream:
        """The job's progress stream while it has not ended (else a closed one, kept nowhere)."""
        if job_id in self.ctx.streams or self.ctx.queue.member_of(job_id) is not None:
            return self.ctx.streams.get(job_id)
        ended = ProgressStream(job_id)
        ended.close()
        return ended

    async def _reload(self, job_id: str) -> Job:
        job = await self.ctx.store.jobs.get(job_id)
        assert job is not None
        return job


async def _wait_terminal(stream: ProgressStream, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            async for update in stream:
                if update.is_terminal:
                    return
    except TimeoutError:
        pass


def _all_exist(*paths: Path) -> bool:
    return all(path.exists() for path in paths)


def _read_head(path: str | None, size: int = 24) -> bytes:
    try:
        with open(path or "", "rb") as file:
            return file.read(size)
    except OSError:
        return b""


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
