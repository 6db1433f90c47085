"""Why a job ended (:class:`EndReason`), what its member reads (:class:`Ending`), and :class:`Endings`, the one writer of a job's end.

Every way a job can end is an :class:`Ending`: a reason, the member-facing message, a technical
detail and, for a cancel, who asked. The reasons:

=========================  ===============  ==============================================
reason                     job state        when
=========================  ===============  ==============================================
``DELIVERED``              delivered        the prompt succeeded and its result was posted
``FAILED``                 failed           ComfyUI refused or failed it, or we did
``CANCELLED_BY_MEMBER``    cancelled        its member cancelled it
``CANCELLED_BY_MODERATOR`` cancelled        a moderator cancelled it (or cleared the line)
``TIMED_OUT``              timed_out        past ``JOB_TIMEOUT`` running, or waiting with no server
``SERVER_LOST``            failed           its server went away and it was moved once already
``MOVED``                  (waiting again)  its server went away: back to the head of the line
=========================  ===============  ==============================================

While a job runs, the first reason decided wins (:meth:`bot.jobs.attempt.Attempt.decide`);
:meth:`Endings.finish` then writes it, once: the store refuses a second terminal state, so a
job ends exactly once. It also drops everything kept in memory for the job, publishes the last
progress update, tells the delivery (unless delivered) and the listeners.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from bot.comfy.errors import ComfyError
from bot.errors import UserFacingError
from bot.jobs.context import JobContext
from bot.jobs.models import InvalidTransition, Job, JobState
from bot.jobs.progress import ProgressUpdate
from bot.logs import log_failure

log = logging.getLogger(__name__)

__all__ = ["GENERIC_FAILURE", "EndReason", "Ending", "Endings", "failure_ending", "state_words"]

GENERIC_FAILURE = "Something went wrong on our side. The job was stopped; please try again."
SERVER_STOPPED_ANSWERING = "The image server stopped answering while running your job."
STOPPED_BY_OPERATOR = "The job was stopped on the image server by an operator."
SERVERS_KEPT_GOING_AWAY = "The image servers kept going away while running this job. Please try again later."
NO_SERVER_IN_TIME = "No image server was free in time. Please try again later."
NOT_POSTED = "The video was made but could not be posted here. Please try again."
RESULT_LOST = "The finished video was lost before it could be posted."


class EndReason(Enum):
    """Why a job (or one attempt at running it, for ``MOVED``) ended; see the module docstring."""

    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED_BY_MEMBER = "cancelled_by_member"
    CANCELLED_BY_MODERATOR = "cancelled_by_moderator"
    TIMED_OUT = "timed_out"
    SERVER_LOST = "server_lost"
    MOVED = "moved"

    @property
    def state(self) -> JobState | None:
        """The terminal state this reason puts a job in (None for ``MOVED``: it waits again)."""
        return _STATES[self]


_STATES: dict[EndReason, JobState | None] = {
    EndReason.DELIVERED: JobState.DELIVERED,
    EndReason.FAILED: JobState.FAILED,
    EndReason.CANCELLED_BY_MEMBER: JobState.CANCELLED,
    EndReason.CANCELLED_BY_MODERATOR: JobState.CANCELLED,
    EndReason.TIMED_OUT: JobState.TIMED_OUT,
    EndReason.SERVER_LOST: JobState.FAILED,
    EndReason.MOVED: None,
}


@dataclass(frozen=True)
class Ending:
    """How a job ends: ``message`` is what its member reads, ``detail`` is for the log only,
    ``actor`` is who cancelled it."""

    reason: EndReason
    message: str | None = None
    detail: str | None = None
    actor: int | None = None

    @classmethod
    def delivered(cls) -> Ending:
        return cls(EndReason.DELIVERED)

    @classmethod
    def failed(cls, message: str, detail: str | None = None) -> Ending:
        return cls(EndReason.FAILED, message, detail)

    @classmethod
    def cancelled(cls, owner: int, by: int) -> Ending:
        """Cancelled by ``by``: the member who started the job, or a moderator."""
        if owner == by:
            return cls(EndReason.CANCELLED_BY_MEMBER, "Cancelled.", actor=by)
        return cls(EndReason.CANCELLED_BY_MODERATOR, "Cancelled by a moderator.", actor=by)

    @classmethod
    def timed_out(cls, job_timeout: float) -> Ending:
        """Ran past the time limit."""
        minutes = max(1, round(job_timeout / 60))
        return cls(EndReason.TIMED_OUT, f"The job took longer than the {minutes}-minute limit and was stopped.",
                   f"time limit {job_timeout:g} s")

    @classmethod
    def waited_too_long(cls) -> Ending:
        """Waited past the time limit while no answering server could run it."""
        return cls(EndReason.TIMED_OUT, NO_SERVER_IN_TIME)

    @classmethod
    def moved(cls, detail: str) -> Ending:
        return cls(EndReason.MOVED, None, detail)

    @classmethod
    def server_lost(cls, detail: str) -> Ending:
        return cls(EndReason.SERVER_LOST, SERVERS_KEPT_GOING_AWAY, detail)

    @property
    def is_cancel(self) -> bool:
        return self.reason in (EndReason.CANCELLED_BY_MEMBER, EndReason.CANCELLED_BY_MODERATOR)


class Endings:
    """Writes a job's end (see the module docstring). ``forget`` callbacks drop what the other
    parts keep in memory for a job (:meth:`also_forget`)."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self._forget: list[Callable[[str], Any]] = [ctx.queue.mark_done, ctx.streams.discard]

    def also_forget(self, forget: Callable[[str], Any]) -> None:
        """Call ``forget(job_id)`` too when a job ends."""
        self._forget.append(forget)

    def forget(self, job_id: str) -> None:
        """Drop everything kept in memory for a job that has ended. Its stream goes too: whoever
        follows it already holds it and still gets the ``finished`` update published before."""
        for forget in self._forget:
            forget(job_id)

    async def finish(self, job_id: str, ending: Ending, **fields: Any) -> Job | None:
        """Put a job in the terminal state of ``ending`` (once; None if it had ended already)."""
        state = ending.reason.state
        if state is None:
            raise ValueError("a moved job has not ended")
        ctx = self.ctx
        try:
            job = await ctx.store.jobs.update(job_id, state=state, error=ending.message, error_detail=ending.detail,
                                             finished_at=ctx.clock.now(), **fields)
        except InvalidTransition as exc:
            log.debug("job %s is %s; not moving it to %s", job_id, exc.old.value, state.value)
            if exc.old.is_terminal:
                self.forget(job_id)  # e.g. a cancel asked just as it ended
            return None
        log.info("job %s %s%s", job_id, state.value, f": {ending.message}" if ending.message else "")
        if ending.detail:
            log.debug("job %s detail (%s): %s", job_id, ending.reason.value, ending.detail)
        ctx.streams.publish(ProgressUpdate(job_id=job_id, phase="finished", message=ending.message or state_words(state)))
        self.forget(job_id)
        ctx.wake()
        if state is not JobState.DELIVERED and ctx.delivery is not None:
            try:
                await ctx.delivery.job_ended(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log_failure(log, logging.WARNING, "job %s: telling the member it ended failed", job_id)
        await ctx.emit(job, state.value, ending.actor if ending.is_cancel else None)
        return job


def state_words(state: JobState) -> str:
    """A terminal state in words ("timed out")."""
    return {
        JobState.DELIVERED: "delivered",
        JobState.FAILED: "failed",
        JobState.CANCELLED: "cancelled",
        JobState.TIMED_OUT: "timed out",
    }.get(state, state.value)


def failure_ending(job_id: str, exc: BaseException) -> Ending:
    """The ending for an exception raised while running a job (call it while handling ``exc``)."""
    if isinstance(exc, UserFacingError):
        log.info("job %s failed: %s (%s)", job_id, exc.user_message, exc.detail)
        return Ending.failed(exc.user_message, exc.detail)
    if isinstance(exc, ComfyError):
        log.warning("job %s: server %s failed: %s", job_id, exc.server, exc)
        return Ending.failed(SERVER_STOPPED_ANSWERING, str(exc))
    log_failure(log, logging.ERROR, "job %s failed unexpectedly", job_id)
    return Ending.failed(GENERIC_FAILURE, f"{type(exc).__name__}: {exc}")
