"""Job data: the :class:`Job` dataclass, its :class:`JobState` machine and id helpers.

A job goes ``waiting`` (in the bot's own queue) -> ``submitted`` (in a ComfyUI server's
queue) -> ``running`` -> ``delivering`` -> ``delivered``, or ends ``failed``,
``cancelled`` or ``timed_out``. :data:`TRANSITIONS` lists every allowed move and
:func:`check_transition` enforces it; the job store refuses any other update, so a job
can never be delivered twice or come back from a terminal state.

:meth:`Job.to_row` / :meth:`Job.from_row` convert to and from plain SQLite values
(``options`` and ``result_meta`` as JSON text); :meth:`Job.to_dict` gives a JSON-friendly
dict for logs and the audit log (never containing the interaction token).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import string
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Protocol

__all__ = [
    "JobState",
    "TERMINAL_STATES",
    "ACTIVE_STATES",
    "TRANSITIONS",
    "InvalidTransition",
    "can_transition",
    "check_transition",
    "predecessors",
    "Job",
    "JOB_COLUMNS",
    "INTERACTION_TTL",
    "new_job_id",
    "new_prompt_id",
]

#: How long Discord lets a bot edit the original response of an interaction.
INTERACTION_TTL = 15 * 60.0

_ID_ALPHABET = string.ascii_letters + string.digits + "-_"
JOB_ID_LENGTH = 10


class JobState(str, Enum):
    """Where a job is in its life. Values are the strings stored in the database."""

    WAITING = "waiting"
    SUBMITTED = "submitted"
    RUNNING = "running"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        """True once the job has ended (delivered, failed, cancelled or timed out)."""
        return self in TERMINAL_STATES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}
)
ACTIVE_STATES: frozenset[JobState] = frozenset(set(JobState) - TERMINAL_STATES)

#: Allowed state changes. Staying in the same non-terminal state (an update of progress
#: fields, a resubmission) is always allowed; a terminal state never changes.
#:
#: - submitted/running -> waiting: the server died before finishing; the job goes back to
#:   the bot's queue to be sent elsewhere (once; ``submit_attempts`` counts).
#: - running -> submitted: the server lost the prompt (restart) and it was queued again.
#: - submitted -> delivering: the job finished before the bot saw it start (cached run,
#:   or found finished in /history during recovery).
#: - waiting -> timed_out: a job may exceed its time limit before a server ever took it.
#: - delivering only ends delivered or failed: the work is done, so it cannot be cancelled
#:   or time out any more; a restart while delivering delivers again from the stored result.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.SUBMITTED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}),
    JobState.SUBMITTED: frozenset(
        {
            JobState.WAITING,
            JobState.RUNNING,
            JobState.DELIVERING,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.TIMED_OUT,
        }
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.WAITING,
            JobState.SUBMITTED,
            JobState.DELIVERING,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.TIMED_OUT,
        }
    ),
    JobState.DELIVERING: frozenset({JobState.DELIVERED, JobState.FAILED}),
    JobState.DELIVERED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
}


class InvalidTransition(ValueError):
    """A job was asked to move to a state it cannot reach from its current one."""

    def __init__(self, job_id: str | None, old: JobState, new: JobState) -> None:
        who = f"job {job_id}" if job_id else "job"
        super().__init__(f"{who}: illegal state change {old.value} -> {new.value}")
        self.job_id = job_id
        self.old = old
        self.new = new


def can_transition(old: JobState | str, new: JobState | str) -> bool:
    """Whether a job in ``old`` may move to ``new`` (same non-terminal state counts as allowed)."""
    old_s, new_s = JobState(old), JobState(new)
    if old_s == new_s:
        return not old_s.is_terminal
    return new_s in TRANSITIONS[old_s]


def check_transition(old: JobState | str, new: JobState | str, *, job_id: str | None = None) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is allowed."""
    if not can_transition(old, new):
        raise InvalidTransition(job_id, JobState(old), JobState(new))


def predecessors(new: JobState | str) -> frozenset[JobState]:
    """Every state from which a job may move to ``new`` (including ``new`` if non-terminal)."""
    target = JobState(new)
    return frozenset(s for s in JobState if can_transition(s, target))


def new_job_id() -> str:
    """A short (10 characters) URL-safe random job id, fine for custom_id and file names."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(JOB_ID_LENGTH))


def new_prompt_id() -> str:
    """A ComfyUI prompt id chosen by the bot before ``POST /prompt`` (uuid4, hex)."""
    return uuid.uuid4().hex


class Row(Protocol):
    """A database row: ``sqlite3.Row`` or a mapping (column names by ``keys()``)."""

    def keys(self) -> Any: ...

    def __getitem__(self, key: str) -> Any: ...


@dataclass
class Job:
    """One request to animate an image, as stored in the job store.

    Times are epoch seconds from the injected clock's ``now()``. ``error`` is the reason a
    member reads; ``error_detail`` is technical and is never shown to members.
    """

    id: str
    user_id: int
    channel_id: int
    workflow: str
    guild_id: int | None = None
    # The interaction that asked, so the status message can be edited for 15 minutes.
    interaction_token: str | None = field(default=None, repr=False)
    application_id: int | None = None
    interaction_created_at: float | None = None
    status_message_id: int | None = None
    # What to run.
    options: dict[str, Any] = field(default_factory=dict)
    input_path: str | None = None
    uploaded_name: str | None = None
    # Where it runs.
    state: JobState = JobState.WAITING
    server: str | None = None
    prompt_id: str | None = None
    client_id: str | None = None
    submit_attempts: int = 0
    moved: bool = False  # already moved once off a server that went away (a second loss fails it)
    delivery_attempts: int = 0  # tries at delivering the result, across restarts
    # When.
    created_at: float = 0.0
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # Outcome.
    result_path: str | None = None
    result_meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_detail: str | None = field(default=None, repr=False)
    parent_job_id: str | None = None  # the job it was re-rolled or extended from
    # Extend: the chain's first job (None outside a chain) and which extension this is (0: none).
    chain_root_id: str | None = None
    extension_index: int = 0
    delivered_message_id: int | None = None
    deleted: bool = False

    def __post_init__(self) -> None:
        self.state = JobState(self.state)
        if isinstance(self.input_path, Path):
            self.input_path = str(self.input_path)
        if isinstance(self.result_path, Path):
            self.result_path = str(self.result_path)

    @classmethod
    def new(
        cls,
        *,
        user_id: int,
        channel_id: int,
        workflow: str,
        created_at: float,
        guild_id: int | None = None,
        options: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Job:
        """A fresh waiting job with a new random id; other fields by keyword."""
        return cls(
            id=new_job_id(),
            user_id=user_id,
            channel_id=channel_id,
            workflow=workflow,
            guild_id=guild_id,
            created_at=created_at,
            options=dict(options or {}),
            **fields,
        )

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def can_edit_interaction(self, now: float, *, margin: float = 30.0) -> bool:
        """Whether the interaction token can still edit the status message at ``now``.

        ``margin`` keeps a safety gap before Discord's 15 minute limit.
        """
        if not self.interaction_token or self.interaction_created_at is None:
            return False
        return now < self.interaction_created_at + INTERACTION_TTL - margin

    def to_row(self) -> dict[str, Any]:
        """Plain SQLite values keyed by column name (JSON text for the dict fields)."""
        row: dict[str, Any] = {}
        for name in JOB_COLUMNS:
            row[name] = encode_field(name, getattr(self, name))
        return row

    @classmethod
    def from_row(cls, row: Row) -> Job:
        """Build a job from a database row (unknown columns are ignored, missing ones default)."""
        kwargs = {name: decode_field(name, row[name]) for name in JOB_COLUMNS if name in row.keys()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view for logs and audit records, without the interaction token."""
        data = {name: getattr(self, name) for name in JOB_COLUMNS if name != "interaction_token"}
        data["state"] = self.state.value
        plain: dict[str, Any] = json.loads(json.dumps(data, default=str))
        return plain


JOB_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Job))

_JSON_FIELDS = frozenset({"options", "result_meta"})
_BOOL_FIELDS = frozenset({"deleted", "moved"})


def encode_field(name: str, value: Any) -> Any:
    """Convert one job field to its SQLite value."""
    if name in _JSON_FIELDS:
        return json.dumps(value or {}, sort_keys=True)
    if name == "state":
        return JobState(value).value
    if name in _BOOL_FIELDS:
        return 1 if value else 0
    if isinstance(value, Path):
        return str(value)
    return value


def decode_field(name: str, value: Any) -> Any:
    """Convert one SQLite value back to the job field's Python type."""
    if name in _JSON_FIELDS:
        return json.loads(value) if value else {}
    if name == "state":
        return JobState(value)
    if name in _BOOL_FIELDS:
        return bool(value)
    return value
