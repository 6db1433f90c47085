"""The bot's waiting line: members take turns, positions match the serving order, caps hold."""

from __future__ import annotations

import random

import pytest

from bot.errors import LimitReached
from bot.jobs.fairqueue import FairQueue
from bot.jobs.service import QUEUE_WORDING  # the bot's words (bot.moderation.messages)


def drain(q: FairQueue) -> list[str]:
    out = []
    while (entry := q.next()) is not None:
        out.append(entry.job_id)
    return out


def test_one_member_cannot_starve_another() -> None:
    q = FairQueue(wording=QUEUE_WORDING)
    for i in range(10):
        q.push(f"a{i}", "A")
    q.push("b0", "B")
    assert q.position("b0") == 2
    order = drain(q)
    assert order[:3] == ["a0", "b0", "a1"]
    assert order[3:] == [f"a{i}" for i in range(2, 10)]


def test_round_robin_in_order_of_arrival() -> None:
    q = FairQueue(wording=QUEUE_WORDING)
    q.push("c0", "C")
    q.push("a0", "A")
    q.push("a1", "A")
    q.push("b0", "B")
    q.push("c1", "C")
    assert drain(q) == ["c0", "a0", "b0", "c1", "a1"]


def test_positions_match_next_under_random_operations() -> None:
    rng = random.Random(7)
    q = FairQueue(wording=QUEUE_WORDING)
    counter = 0
    for _ in range(400):
        op = rng.random()
        if op < 0.55:
            q.push(f"j{counter}", rng.choice("ABCDE"))
            counter += 1
        elif op < 0.8:
            q.next()
        elif len(q):
            q.remove(rng.choice(list(q.positions())))
        positions = q.positions()
        assert {j: q.position(j) for j in positions} == positions
        assert sorted(positions.values()) == list(range(1, len(q) + 1))
    expected = [e.job_id for e in q.order()]
    snapshot = q.positions()
    served = drain(q)
    assert served == expected
    assert [snapshot[j] for j in served] == list(range(1, len(served) + 1))


def test_remove_waiting_job_moves_others_up() -> None:
    q = FairQueue(wording=QUEUE_WORDING)
    q.push("a0", "A")
    q.push("b0", "B")
    q.push("c0", "C")
    assert q.remove("b0")
    assert not q.remove("b0")
    assert q.position("c0") == 2
    assert q.position("b0") is None
    assert "b0" not in q and len(q) == 2


def test_global_cap_on_waiting_jobs() -> None:
    q = FairQueue(wording=QUEUE_WORDING, max_waiting=3)
    for i, member in enumerate("ABC"):
        q.push(f"j{i}", member)
    with pytest.raises(LimitReached) as info:
        q.push("j3", "D")
    assert info.value.user_message == QUEUE_WORDING.queue_full
    assert len(q) == 3
    q.next()  # one leaves the waiting line: room again
    q.push("j3", "D")


def test_per_member_limit_counts_waiting_and_running() -> None:
    q = FairQueue(wording=QUEUE_WORDING, max_in_flight=2)
    q.push("a0", "A")
    q.push("a1", "A")
    with pytest.raises(LimitReached) as info:
        q.push("a2", "A")
    assert info.value.user_message == "You already have 2 jobs in progress; wait for one to finish."
    q.push("b0", "B")  # others are not affected
    assert q.next().job_id == "a0"  # running now, still counts
    with pytest.raises(LimitReached):
        q.push("a2", "A")
    assert q.mark_done("a0")
    q.push("a2", "A")
    assert q.in_flight("A") == 2


def test_per_call_limit_override_and_unlimited() -> None:
    q = FairQueue(wording=QUEUE_WORDING, max_in_flight=1)
    q.push("a0", "A")
    q.push("a1", "A", max_in_flight=None)  # exempt role
    with pytest.raises(LimitReached) as info:
        q.push("b1", "B", max_in_flight=0)
    assert "cannot start" in info.value.user_message


def test_restore_after_restart_ignores_caps_and_keeps_order() -> None:
    q = FairQueue(wording=QUEUE_WORDING, max_waiting=1, max_in_flight=1)
    q.mark_running("r0", "A")  # was running when the bot stopped
    for job_id, member in [("a0", "A"), ("b0", "B"), ("a1", "A")]:
        q.push(job_id, member, enforce_limits=False)
    assert q.in_flight("A") == 3
    assert drain(q) == ["a0", "b0", "a1"]


def test_push_front_after_server_died() -> None:
    q = FairQueue(wording=QUEUE_WORDING)
    q.push("a0", "A")
    q.push("b0", "B")
    q.push("b1", "B")
    taken = q.next()
    assert taken.job_id == "a0" and q.is_running("a0")
    q.push_front("a0", "A")
    assert q.position("a0") == 1 and not q.is_running("a0")
    assert drain(q) == ["a0", "b0", "b1"]


def test_duplicate_push_refused() -> None:
    q = FairQueue(wording=QUEUE_WORDING)
    q.push("a0", "A")
    with pytest.raises(ValueError):
        q.push("a0", "B")


def test_taking_a_later_member_s_job_keeps_the_rotation_fair() -> None:
    """When no free server can run A's next job, B's is taken; A stays first for the next server."""
    q = FairQueue(wording=QUEUE_WORDING)
    for i in range(3):
        q.push(f"a{i}", "A")
        q.push(f"b{i}", "B")
    q.push("c0", "C")
    assert [e.job_id for e in q.heads()] == ["a0", "b0", "c0"]
    assert q.take("b0").member == "B"
    assert q.in_flight("B") == 3 and q.position("b0") is None
    # B went to the back; A (skipped, not served) is still at the head
    assert [e.job_id for e in q.heads()] == ["a0", "c0", "b1"]
    assert drain(q) == ["a0", "c0", "b1", "a1", "b2", "a2"]
    with pytest.raises(KeyError):
        q.take("nope")
