"""Two facts about a job's runs that drive recovery: read and written here only.

- **moved**: the job was already moved once off a server that went away, so it is not moved
  again (also across restarts): a second loss fails it;
- **delivery attempts**: how many times delivering its result was tried, across restarts (a
  try that is not the first must look for a result an earlier try may have posted).

Both are columns of the job store (``jobs.moved``, ``jobs.delivery_attempts``; migration 6 moved
them there out of the JSON ``result_meta``). Everything else reads them with :func:`was_moved`
and :func:`delivery_attempts` and writes them by passing :func:`moved_fields` /
:func:`delivery_attempt_fields` to ``store.jobs.update``.
"""

from __future__ import annotations

from typing import Any

from bot.jobs.models import Job

__all__ = ["delivery_attempt_fields", "delivery_attempts", "moved_fields", "was_moved"]


def was_moved(job: Job) -> bool:
    """Whether the job was already moved off a server that went away."""
    return job.moved


def moved_fields(job: Job) -> dict[str, Any]:
    """The ``store.jobs.update`` fields that record the move of ``job``."""
    return {"moved": True}


def delivery_attempts(job: Job) -> int:
    """How many times delivering the job's result was tried so far."""
    return job.delivery_attempts


def delivery_attempt_fields(job: Job) -> tuple[int, dict[str, Any]]:
    """The number of the next delivery try, and the ``store.jobs.update`` fields that count it."""
    attempt = job.delivery_attempts + 1
    return attempt, {"delivery_attempts": attempt}
