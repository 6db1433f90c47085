"""One attempt at running a job on one server (:class:`Attempt`), and the one reason it ends.

The runner (:mod:`bot.jobs.runner`) makes an attempt each time a job is given a server and keeps
it until the attempt is over. Whoever learns why it should end decides it here, and the first
decision wins (:meth:`Attempt.decide`); later ones change nothing:

- the prompt's own end (:func:`outcome_ending`): a success (the result is then delivered), an
  error inside ComfyUI, or stopped by someone else on the server;
- a cancel by the member or a moderator (:mod:`bot.jobs.intake`);
- the time limit (the runner's watchdog);
- the server going away (:meth:`Attempt.lose_server`, from :mod:`bot.jobs.fleet` or a failed
  upload or POST): moved to another server if the job was never moved before (nor posted twice),
  else failed (:class:`~bot.jobs.endings.EndReason` ``MOVED`` / ``SERVER_LOST``).

So a cancel that comes while the watchdog fires, a server lost while a cancel is being sent, or
a move racing the prompt's success all end the attempt once, the way decided first.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bot.comfy.follow import Outcome
from bot.jobs.backends import Backend
from bot.jobs.endings import STOPPED_BY_OPERATOR, Ending
from bot.jobs.meta import was_moved
from bot.jobs.models import Job, JobState
from bot.jobs.pipeline import failure_message

if TYPE_CHECKING:
    from bot.jobs.collect import EarlyResult

__all__ = ["MAX_SUBMISSIONS", "Attempt", "outcome_ending"]

MAX_SUBMISSIONS = 2  # a job is posted at most twice (once more after its server lost it)


class Attempt:
    """One attempt at running one job on one server (see the module docstring).

    ``job`` is the job as last stored by the attempt (None until it is loaded), ``prompt_id``
    the prompt posted (or about to be), ``ending`` the one reason decided for it.
    """

    def __init__(self, job_id: str, backend: Backend, *, job: Job | None = None) -> None:
        self.job_id = job_id
        self.backend = backend
        self.job: Job | None = None
        self.prompt_id: str | None = None
        self.started = False
        self.outcome: Outcome | None = None
        self.ending: Ending | None = None
        self.released = False  # its server slot was given back (at the prompt's first terminal event)
        self.early: EarlyResult | None = None  # the result downloading since the output node's executed
        self._decided = asyncio.Event()
        self._over = asyncio.Event()
        self._lost: str | None = None  # the server went away before the job was loaded
        if job is not None:
            self.attach(job)

    def attach(self, job: Job) -> None:
        """The job as stored when the attempt starts (a resumed job keeps its prompt)."""
        self.job = job
        self.prompt_id = job.prompt_id
        self.started = job.state is JobState.RUNNING
        if self._lost is not None:
            lost, self._lost = self._lost, None
            self.lose_server(lost)

    def decide(self, ending: Ending) -> bool:
        """Decide why this attempt ends; False (and nothing changes) if that was decided already."""
        if self.ending is not None:
            return False
        self.ending = ending
        self._decided.set()
        return True

    def lose_server(self, detail: str) -> bool:
        """Its server went away: the job moves to another server, unless it was moved once already
        (or posted twice), then it fails. False if another reason was decided first."""
        if self.ending is not None:
            return False
        if self.job is None:
            self._lost = detail  # decided as soon as the job is known
            return True
        movable = self.job.submit_attempts < MAX_SUBMISSIONS and not was_moved(self.job)
        return self.decide(Ending.moved(detail) if movable else Ending.server_lost(detail))

    @property
    def decided(self) -> bool:
        return self.ending is not None

    async def wait_decided(self) -> None:
        await self._decided.wait()

    @property
    def over(self) -> bool:
        """Whether the attempt has finished (the job ended, or is back in line)."""
        return self._over.is_set()

    async def wait_over(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._over.wait()
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self._over.set()


def outcome_ending(outcome: Outcome) -> Ending:
    """What a prompt's own end means for the attempt (a cancel or the time limit decided first wins)."""
    if outcome.status == "success":
        return Ending.delivered()
    if outcome.status == "error":
        return Ending.failed(failure_message(outcome), outcome.message)
    return Ending.failed(STOPPED_BY_OPERATOR, outcome.message)  # interrupted by someone else
