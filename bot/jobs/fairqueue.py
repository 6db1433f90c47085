"""The bot's own waiting line: round-robin between members, with caps. Pure, no I/O.

Jobs wait per member. :meth:`FairQueue.next` serves members in turn, in order of arrival:
it takes the first job of the member at the head of the rotation and, if that member has
more jobs, sends them to the back. So ten jobs from A then one from B run A1, B1, A2, ...
:meth:`FairQueue.position` computes the same order without changing anything, so every
waiting job knows its place at any time.

A job taken with :meth:`next` (or declared with :meth:`mark_running`) counts as "in
flight" for its member until :meth:`mark_done`; waiting + in flight is what the per-member
limit caps. A global cap bounds the number of waiting jobs. Both refusals raise
:class:`bot.errors.LimitReached` with the message a member reads, in the words the queue is
given (:class:`QueueWording`; the job service passes the bot's, from :mod:`bot.moderation.messages`).

A job admitted but not queued yet (its image is still being downloaded and prepared) holds a
:class:`Reservation` (:meth:`FairQueue.reserve`): it counts as in flight for its member and
against the waiting cap, so a burst of requests cannot slip past the limits while earlier ones
are being prepared. It becomes the job when pushed with it (:meth:`FairQueue.push`), or is
given back with :meth:`Reservation.release`.

:data:`DEFAULT` is the one "use the queue's own per-member limit" marker; the queue is the one
place that resolves it (:meth:`FairQueue.check_room`).

On restart, rebuild it from the store: ``push(..., enforce_limits=False)`` for waiting jobs
in creation order and ``mark_running`` for submitted/running/delivering ones.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from bot.errors import LimitReached

__all__ = ["FairQueue", "QueueEntry", "QueueWording", "DEFAULT", "Limit", "Reservation"]


@dataclass(frozen=True)
class QueueWording:
    """What a member reads when the queue refuses a job."""

    queue_full: str  #: too many jobs wait, all members together
    in_flight: Callable[[int], str]  #: the member already has this many (the limit) waiting or running


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: Marker for "use the queue's own per-member limit" (:meth:`FairQueue.push`, :meth:`FairQueue.reserve`,
#: and the job service's requests, which pass it through).
DEFAULT: Final = _Default()

#: A per-member limit: a number, None (no limit: an exempt role) or :data:`DEFAULT`.
Limit: TypeAlias = int | None | _Default


@dataclass(eq=False)
class Reservation:
    """A member's room held for a job being prepared (see the module docstring). ``active`` until
    it becomes a queued job or is released; releasing twice, or after it was used, does nothing."""

    member: Hashable
    _queue: FairQueue = field(repr=False)
    active: bool = True

    def release(self) -> None:
        """Give the room back (the request was refused or failed before it was queued)."""
        self._queue._end_reservation(self)


@dataclass(frozen=True)
class QueueEntry:
    """A job handed out by :meth:`FairQueue.next`."""

    job_id: str
    member: Hashable


class FairQueue:
    """Round-robin waiting line between members.

    ``wording``: the refusals' texts.
    ``max_waiting``: global cap on waiting jobs (None: no cap).
    ``max_in_flight``: default per-member cap on waiting + in-flight jobs (None: no cap);
    :meth:`push` can override it per call (guild setting, exempt role).
    Members are any hashable key (a user id, or ``(guild_id, user_id)``).
    """

    def __init__(self, *, wording: QueueWording, max_waiting: int | None = None,
                 max_in_flight: int | None = None) -> None:
        self.wording = wording
        self.max_waiting = max_waiting
        self.max_in_flight = max_in_flight
        # Rotation: members with waiting jobs, head is served next. Values are their jobs.
        self._lines: OrderedDict[Hashable, deque[str]] = OrderedDict()
        self._member_of: dict[str, Hashable] = {}
        self._running: dict[Hashable, set[str]] = {}
        self._running_member: dict[str, Hashable] = {}
        self._reserved: dict[Hashable, int] = {}  # member -> active reservations

    # ---- adding

    def push(
        self,
        job_id: str,
        member: Hashable,
        *,
        max_in_flight: Limit = DEFAULT,
        enforce_limits: bool = True,
        reservation: Reservation | None = None,
    ) -> int:
        """Add a waiting job at the end of its member's line; returns its position (1-based).

        Raises :class:`LimitReached` when the member already has ``max_in_flight`` jobs
        waiting or in flight, or when ``max_waiting`` jobs are waiting. ``enforce_limits=False``
        skips both (restoring after a restart must never drop a job). An active ``reservation``
        of the member becomes this job: its room was checked when it was made.
        """
        if job_id in self._member_of or job_id in self._running_member:
            raise ValueError(f"job {job_id} is already in the queue")
        reserved = reservation is not None and reservation.active and reservation._queue is self \
            and reservation.member == member
        if enforce_limits and not reserved:
            self.check_room(member, max_in_flight=max_in_flight)
        if reserved:
            assert reservation is not None
            self._end_reservation(reservation)
        line = self._lines.get(member)
        if line is None:
            line = self._lines[member] = deque()
        line.append(job_id)
        self._member_of[job_id] = member
        return self.position(job_id) or 0

    def check_room(self, member: Hashable, *, max_in_flight: Limit = DEFAULT) -> None:
        """Raise :class:`LimitReached` if :meth:`push` would refuse a new job of ``member`` now
        (reservations count: as in flight for their member, and as waiting)."""
        limit = self.max_in_flight if isinstance(max_in_flight, _Default) else max_in_flight
        if limit is not None and self.in_flight(member) >= limit:
            raise LimitReached(self.wording.in_flight(limit), detail=f"member {member!r} at in-flight limit {limit}")
        waiting = len(self) + self.reserved_count()
        if self.max_waiting is not None and waiting >= self.max_waiting:
            raise LimitReached(self.wording.queue_full, detail=f"{waiting} jobs waiting or being prepared (cap {self.max_waiting})")

    def reserve(self, member: Hashable, *, max_in_flight: Limit = DEFAULT) -> Reservation:
        """Hold room for a job of ``member`` that is not ready to be queued yet (checked as
        :meth:`check_room` does, then counted until it is pushed or released)."""
        self.check_room(member, max_in_flight=max_in_flight)
        self._reserved[member] = self._reserved.get(member, 0) + 1
        return Reservation(member, self)

    def _end_reservation(self, reservation: Reservation) -> None:
        if not reservation.active:
            return
        reservation.active = False
        left = self._reserved.get(reservation.member, 0) - 1
        if left > 0:
            self._reserved[reservation.member] = left
        else:
            self._reserved.pop(reservation.member, None)

    def push_front(self, job_id: str, member: Hashable) -> None:
        """Put a job back at the very head of the queue (its server died before running it).

        It was already chosen once, so it goes first, ahead of every member; if it was in
        flight it stops counting as such. No limits are checked.
        """
        self._discard_running(job_id)
        if job_id in self._member_of:
            raise ValueError(f"job {job_id} is already waiting")
        line = self._lines.get(member)
        if line is None:
            line = self._lines[member] = deque()
        line.appendleft(job_id)
        self._lines.move_to_end(member, last=False)
        self._member_of[job_id] = member

    # ---- taking

    def peek(self) -> QueueEntry | None:
        """The job :meth:`next` would return, without taking it."""
        for member, line in self._lines.items():
            return QueueEntry(line[0], member)
        return None

    def next(self) -> QueueEntry | None:
        """Take the next job (round-robin) and count it as in flight; None when empty."""
        if not self._lines:
            return None
        member, line = next(iter(self._lines.items()))
        job_id = line.popleft()
        del self._member_of[job_id]
        if line:
            self._lines.move_to_end(member)
        else:
            del self._lines[member]
        self._add_running(job_id, member)
        return QueueEntry(job_id, member)

    def heads(self) -> list[QueueEntry]:
        """The first waiting job of each member, in rotation order (the candidates of the next round)."""
        return [QueueEntry(line[0], member) for member, line in self._lines.items()]

    def take(self, job_id: str) -> QueueEntry:
        """Take a particular waiting job (one :meth:`next` would skip because no server can run
        it yet) and count it as in flight; its member goes to the back of the rotation.

        ``KeyError`` if it is not waiting.
        """
        member = self._member_of[job_id]
        self.remove(job_id)
        if member in self._lines:
            self._lines.move_to_end(member)
        self._add_running(job_id, member)
        return QueueEntry(job_id, member)

    def remove(self, job_id: str) -> bool:
        """Drop a waiting job (cancelled). False if it was not waiting."""
        member = self._member_of.pop(job_id, None)
        if member is None:
            return False
        line = self._lines[member]
        line.remove(job_id)
        if not line:
            del self._lines[member]
        return True

    def mark_running(self, job_id: str, member: Hashable) -> None:
        """Count a job as in flight for its member (restored after a restart)."""
        if job_id in self._member_of:
            self.remove(job_id)
        self._add_running(job_id, member)

    def mark_done(self, job_id: str) -> bool:
        """The job ended (or was dropped): it stops counting. False if it was not known."""
        if self.remove(job_id):
            return True
        return self._discard_running(job_id)

    def _add_running(self, job_id: str, member: Hashable) -> None:
        self._running.setdefault(member, set()).add(job_id)
        self._running_member[job_id] = member

    def _discard_running(self, job_id: str) -> bool:
        member = self._running_member.pop(job_id, None)
        if member is None:
            return False
        jobs = self._running[member]
        jobs.discard(job_id)
        if not jobs:
            del self._running[member]
        return True

    # ---- reading

    def __len__(self) -> int:
        """Number of waiting jobs."""
        return len(self._member_of)

    def __contains__(self, job_id: object) -> bool:
        """True if the job is waiting."""
        return job_id in self._member_of

    def is_running(self, job_id: str) -> bool:
        return job_id in self._running_member

    def running_count(self) -> int:
        """Jobs counted as in flight, all members together."""
        return len(self._running_member)

    def reserved_count(self) -> int:
        """Active reservations, all members together."""
        return sum(self._reserved.values())

    def member_of(self, job_id: str) -> Hashable | None:
        return self._member_of.get(job_id, self._running_member.get(job_id))

    def waiting(self, member: Hashable) -> list[str]:
        """A member's waiting jobs, in their own order."""
        return list(self._lines.get(member, ()))

    def running(self, member: Hashable) -> set[str]:
        return set(self._running.get(member, ()))

    def in_flight(self, member: Hashable) -> int:
        """Waiting + in-flight jobs of a member, and their reservations (what the per-member limit caps)."""
        return len(self._lines.get(member, ())) + len(self._running.get(member, ())) + self._reserved.get(member, 0)

    def position(self, job_id: str) -> int | None:
        """1-based place in line (1 = served next), or None if the job is not waiting.

        Equal to the order :meth:`next` would give if nothing else changed: the k-th job of
        a member is served in round k, and within a round members go in rotation order.
        """
        member = self._member_of.get(job_id)
        if member is None:
            return None
        rank = self._lines[member].index(job_id)  # 0-based round in which it is served
        ahead = 0
        seen_self = False
        for other, line in self._lines.items():
            if other == member:
                ahead += rank  # our own earlier jobs
                seen_self = True
                continue
            ahead += min(len(line), rank)  # their jobs in earlier rounds
            if not seen_self and len(line) > rank:
                ahead += 1  # ahead of us in rotation: served first in our round too
        return ahead + 1

    def positions(self) -> dict[str, int]:
        """Every waiting job's position, in one pass."""
        result: dict[str, int] = {}
        lines = list(self._lines.values())
        position = 1
        depth = 0
        while True:
            served = False
            for line in lines:
                if depth < len(line):
                    result[line[depth]] = position
                    position += 1
                    served = True
            if not served:
                return result
            depth += 1

    def order(self) -> list[QueueEntry]:
        """All waiting jobs in the order :meth:`next` would serve them."""
        ranked = self.positions()
        return [QueueEntry(job_id, self._member_of[job_id]) for job_id in sorted(ranked, key=ranked.__getitem__)]
