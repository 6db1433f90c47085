"""The ComfyUI servers the bot may use, their health, and which one takes the next job.

Each :class:`Backend` wraps one server's client (anything with ``async queue_remaining()``
and ``async system_stats()``, normally :class:`bot.comfy.client.ComfyClient`) and keeps
what the bot knows about it: healthy or not, when it last answered, its queue length as
last read, and how many prompts *we* posted there that have not finished (``in_flight``).

Fairness lives in the bot, so a server gets at most ``1 + max_pending`` of our prompts
(one running, ``COMFYUI_MAX_PENDING`` waiting). :meth:`BackendPool.choose` picks a healthy
server with room, preferring the least loaded (its queue as last read plus the prompts we
posted since), ties broken by configuration order. Call :meth:`BackendPool.reserve` right
before ``POST /prompt`` and :meth:`BackendPool.release` when the prompt ends (or the POST
failed).

:meth:`BackendPool.run_health_checks` polls every server's queue with a time limit; one that
stops answering is marked down (skipped by ``choose``) until it answers again. Members
only ever see a server's ``name``; URLs never appear in logs from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.clock import Clock, SystemClock
from bot.logs import log_failure
from bot.tasks import cancel_and_wait

__all__ = ["BackendClient", "Backend", "BackendStatus", "BackendPool", "HealthListener", "ServerView", "WorkflowProblems",
           "call_with_timeout"]

log = logging.getLogger(__name__)



class BackendClient(Protocol):
    """What the pool needs from a ComfyUI client."""

    async def queue_remaining(self) -> int: ...

    async def system_stats(self) -> Any: ...


@dataclass
class Backend:
    """One ComfyUI server and what the bot knows about it.

    Starts healthy (optimistic) unless told otherwise; call :meth:`BackendPool.check_all`
    at start-up to learn the truth before the first job.
    """

    name: str
    client: BackendClient = field(repr=False)
    max_pending: int = 1
    healthy: bool = True
    last_seen: float | None = None
    consecutive_failures: int = 0
    queue_remaining: int = 0
    posted_since_read: int = 0
    in_flight: int = 0
    last_error: str | None = field(default=None, repr=False)

    @property
    def capacity(self) -> int:
        """How many of our prompts it may hold: the running one plus ``max_pending``."""
        return 1 + self.max_pending

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.capacity

    @property
    def load(self) -> int:
        """Queue length as last read plus the prompts we posted since that read."""
        return self.queue_remaining + self.posted_since_read

    def status(self) -> BackendStatus:
        return BackendStatus(
            name=self.name,
            healthy=self.healthy,
            last_seen=self.last_seen,
            consecutive_failures=self.consecutive_failures,
            queue_remaining=self.queue_remaining,
            in_flight=self.in_flight,
            capacity=self.capacity,
        )


@dataclass(frozen=True)
class BackendStatus:
    """A snapshot of one server for ``/owner servers`` and ``doctor`` (no URL)."""

    name: str
    healthy: bool
    last_seen: float | None
    consecutive_failures: int
    queue_remaining: int
    in_flight: int
    capacity: int


@dataclass(frozen=True)
class WorkflowProblems:
    """Why a server cannot run a workflow (``blocking``), or which option values it would refuse
    while still running it (``partial``); see :mod:`bot.workflows.support`."""

    workflow: str
    blocking: tuple[str, ...]
    partial: tuple[str, ...]


@dataclass(frozen=True)
class ServerView:
    """One server as ``/queue`` and ``/owner servers`` show it: its :class:`BackendStatus`, how long
    ago it last answered, its websocket, its last error and the workflows it cannot fully run."""

    status: BackendStatus
    seen_ago: float | None
    websocket_connected: bool
    last_error: str | None
    workflow_problems: tuple[WorkflowProblems, ...]


#: Called with (backend, healthy) whenever a server goes down or comes back.
HealthListener = Callable[[Backend, bool], None]


async def call_with_timeout(make_call: Callable[[], Any], timeout: float, clock: Clock) -> Any:
    """Await ``make_call()`` but give up after ``timeout`` seconds on ``clock``.

    Raises ``asyncio.TimeoutError`` on time-out. Uses the injected clock (not the loop's),
    so a fake clock drives it in tests. Cancelling the caller cancels both.
    """
    call = asyncio.ensure_future(make_call())
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        done, _ = await asyncio.wait({call, timer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        call.cancel()
        timer.cancel()
        raise
    timer.cancel()
    if call in done:
        return call.result()
    try:
        await cancel_and_wait(call)  # the caller's own cancellation still propagates
    except Exception:  # it failed while we were giving up; the time-out is what we report
        pass
    raise asyncio.TimeoutError(f"no answer within {timeout:g} s")


class BackendPool:
    """All configured servers, in configuration order (the tie-break order)."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        clock: Clock | None = None,
        check_timeout: float = 5.0,
        failure_threshold: int = 1,
    ) -> None:
        names = [b.name for b in backends]
        if len(set(names)) != len(names):
            raise ValueError("server names must be unique")
        self._backends: dict[str, Backend] = {b.name: b for b in backends}
        self.clock: Clock = clock or SystemClock()
        self.check_timeout = check_timeout
        self.failure_threshold = max(1, failure_threshold)
        self._listeners: list[HealthListener] = []

    # ---- access

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends.values())

    def __len__(self) -> int:
        return len(self._backends)

    def get(self, name: str) -> Backend:
        """The backend called ``name``; ``KeyError`` if there is none."""
        return self._backends[name]

    def statuses(self) -> list[BackendStatus]:
        return [b.status() for b in self]

    def add_listener(self, listener: HealthListener) -> None:
        """Be told when a server goes down or comes back (e.g. to dispatch or reconcile)."""
        self._listeners.append(listener)

    # ---- choosing and counting

    def choose(
        self, *, exclude: Collection[str] = (), accept: Callable[[Backend], bool] | None = None
    ) -> Backend | None:
        """The healthy server with room and the least load, or None if none can take a job.

        ``exclude`` names servers not to use (the one a job just failed on); ``accept``, when
        given, must say yes to the server (e.g. it can run the job's workflow).
        Ties go to the server listed first.
        """
        best: Backend | None = None
        for backend in self:
            if backend.name in exclude or not backend.healthy or not backend.has_room:
                continue
            if accept is not None and not accept(backend):
                continue
            if best is None or backend.load < best.load:
                best = backend
        return best

    def has_room(self) -> bool:
        """Whether :meth:`choose` would return a server now."""
        return self.choose() is not None

    def reserve(self, backend: Backend | str) -> Backend:
        """Count a prompt we are about to post there (call right before ``POST /prompt``)."""
        b = self._resolve(backend)
        b.in_flight += 1
        b.posted_since_read += 1
        return b

    def release(self, backend: Backend | str) -> Backend:
        """A prompt we posted there ended (or its POST failed): it stops counting."""
        b = self._resolve(backend)
        if b.in_flight > 0:
            b.in_flight -= 1
        else:
            log.warning("server %s: release without a matching reserve", b.name)
        return b

    def update_queue_remaining(self, backend: Backend | str, value: int) -> None:
        """A fresh queue length (from a health check or a websocket status message)."""
        b = self._resolve(backend)
        b.queue_remaining = max(0, int(value))
        b.posted_since_read = 0

    # ---- health

    def mark_down(self, backend: Backend | str, reason: str | None = None) -> None:
        """Stop sending jobs there until it answers again (a failed request, a dead websocket)."""
        b = self._resolve(backend)
        b.last_error = reason
        if b.healthy:
            b.healthy = False
            log.warning("server %s is down: %s", b.name, reason or "marked down")
            self._notify(b, False)

    def mark_up(self, backend: Backend | str) -> None:
        """It answered: use it again."""
        b = self._resolve(backend)
        b.consecutive_failures = 0
        b.last_seen = self.clock.now()
        b.last_error = None
        if not b.healthy:
            b.healthy = True
            log.info("server %s is back", b.name)
            self._notify(b, True)

    async def check(self, backend: Backend | str) -> bool:
        """Ask one server for its queue length (with the time limit); update its health."""
        b = self._resolve(backend)
        try:
            remaining = await call_with_timeout(b.client.queue_remaining, self.check_timeout, self.clock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure to answer counts: unreachable, time-out, bad reply
            b.consecutive_failures += 1
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.debug("server %s health check failed (%d in a row): %s", b.name, b.consecutive_failures, detail)
            if b.consecutive_failures >= self.failure_threshold:
                self.mark_down(b, detail)
            else:
                b.last_error = detail
            return False
        self.update_queue_remaining(b, remaining)
        self.mark_up(b)
        return True

    async def check_all(self) -> None:
        """Check every server at once."""
        await asyncio.gather(*(self.check(b) for b in self))

    async def run_health_checks(self, interval: float, clock: Clock | None = None) -> None:
        """Check every server, then every ``interval`` seconds, until cancelled."""
        sleeper = clock or self.clock
        while True:
            await self.check_all()
            await sleeper.sleep(interval)

    # ---- internals

    def _resolve(self, backend: Backend | str) -> Backend:
        return self._backends[backend] if isinstance(backend, str) else backend

    def _notify(self, backend: Backend, healthy: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(backend, healthy)
            except Exception:
                log_failure(log, logging.ERROR, "health listener failed for server %s", backend.name)
