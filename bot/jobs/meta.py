"""Two facts about a job's runs that are kept in its JSON ``result_meta`` for now: read and written here only.

- **moved**: the job was already moved once off a server that went away, so it is not moved
  again (also across restarts): a second loss fails it;
- **delivery attempts**: how many times delivering its result was tried, across restarts (a
  try that is not the first must look for a result an earlier try may have posted).

Everything else reads them with :func:`was_moved` and :func:`delivery_attempts` and writes them
by passing :func:`moved_fields` / :func:`delivery_attempt_fields` to ``store.jobs.update``.
When they become real columns, only this module changes.
"""

from __future__ import annotations

from typing import Any

from bot.jobs.models import Job

__all__ = ["delivery_attempt_fields", "delivery_attempts", "moved_fields", "was_moved"]

MOVED_KEY = "moved"
DELIVERY_ATTEMPTS_KEY = "delivery_attempts"


def was_moved(job: Job) -> bool:
    """Whether the job was already moved off a server that went away."""
    return bool(job.result_meta.get(MOVED_KEY))


def moved_fields(job: Job) -> dict[str, Any]:
    """The ``update_job`` fields that record the move of ``job``."""
    return {"result_meta": {**job.result_meta, MOVED_KEY: True}}


def delivery_attempts(job: Job) -> int:
    """How many times delivering the job's result was tried so far."""
    return int(job.result_meta.get(DELIVERY_ATTEMPTS_KEY, 0))


def delivery_attempt_fields(job: Job) -> tuple[int, dict[str, Any]]:
    """The number of the next delivery try, and the ``update_job`` fields that count it."""
    attempt = delivery_attempts(job) + 1
    return attempt, {"result_meta": {**job.result_meta, DELIVERY_ATTEMPTS_KEY: attempt}}
