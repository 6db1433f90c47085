"""Job states, transitions and the job's row round-trip."""

from __future__ import annotations

import json

import pytest

from bot.jobs.models import (
    INTERACTION_TTL,
    InvalidTransition,
    Job,
    JobState,
    can_transition,
    check_transition,
    new_job_id,
    new_prompt_id,
)


def test_terminal_states() -> None:
    assert {s for s in JobState if s.is_terminal} == {
        JobState.DELIVERED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.TIMED_OUT,
    }


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("waiting", "submitted"),
        ("waiting", "cancelled"),
        ("submitted", "running"),
        ("submitted", "waiting"),  # server died before running: back to the bot's queue
        ("running", "delivering"),
        ("running", "timed_out"),
        ("delivering", "delivered"),
        ("running", "running"),  # progress update
    ],
)
def test_allowed_transitions(old: str, new: str) -> None:
    assert can_transition(old, new)
    check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("delivered", "delivered"),  # never delivered twice
        ("delivered", "running"),
        ("cancelled", "submitted"),
        ("failed", "waiting"),
        ("waiting", "delivered"),
        ("waiting", "running"),
        ("delivering", "cancelled"),  # too late: the result exists
        ("delivering", "running"),
    ],
)
def test_illegal_transitions_refused(old: str, new: str) -> None:
    assert not can_transition(old, new)
    with pytest.raises(InvalidTransition):
        check_transition(old, new, job_id="abc")


def test_ids() -> None:
    ids = {new_job_id() for _ in range(200)}
    assert len(ids) == 200
    for job_id in ids:
        assert len(job_id) == 10
        assert all(c.isalnum() or c in "-_" for c in job_id)
    prompt_id = new_prompt_id()
    assert len(prompt_id) == 32 and int(prompt_id, 16) >= 0


def test_row_round_trip_and_json_view() -> None:
    job = Job.new(
        user_id=11,
        channel_id=22,
        guild_id=33,
        workflow="svd",
        created_at=1000.0,
        options={"seed": 123456789012, "motion": 127, "frames": [1, 2]},
        interaction_token="secret-token",
        result_meta={"format": "mp4", "width": 1024},
        deleted=True,
    )
    back = Job.from_row(job.to_row())
    assert back == job
    assert isinstance(back.state, JobState)
    view = job.to_dict()
    json.dumps(view)
    assert "interaction_token" not in view
    assert "secret-token" not in repr(job)


def test_interaction_edit_window() -> None:
    job = Job.new(user_id=1, channel_id=2, workflow="w", created_at=0.0, interaction_token="t", interaction_created_at=100.0)
    assert job.can_edit_interaction(100.0 + 60)
    assert not job.can_edit_interaction(100.0 + INTERACTION_TTL)
    job.interaction_token = None
    assert not job.can_edit_interaction(101.0)
