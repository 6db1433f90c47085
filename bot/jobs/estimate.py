"""Queue wait estimates: learn how long runs take per server and workflow, and predict waits.

This module owns the timing model and nothing else: no I/O, no clock (callers pass ``now``
where a time is needed), no Discord. It is fed one :class:`RunRecord` per finished run and
answers "how long until this job starts (or ends)?".

The model. A run on a server costs ``steps x frames x megapixels x per_step`` seconds of
sampling (SVD's sampler does every frame of the batch at every step, and each frame's cost
grows with its pixels), plus ``frames x megapixels x per_frame`` seconds of decoding and
encoding (VAE decode and the video node), plus ``overhead`` seconds (conditioning, result
download: whatever is left of the run). For every (server, workflow) the three rates are the
median of the last ``window`` (20) warm runs, so one slow or fast run moves nothing.

Runs that would poison the medians are not kept:

* the first run on a server after it (re)started, or the first one this estimator sees of a
  server (it cannot tell whether the model is loaded yet, so it assumes not): model loading;
  call :meth:`WaitEstimator.server_started` when a server comes back, or pass ``cold=``;
* once there are warm runs, a run that took more than ``outlier_factor`` (2) times the time the
  medians predict for it, or less than its inverse (a cached prompt that did not sample).
  When ``shift_after`` (3) outliers in a row land on the same side, the server has changed
  speed (another GPU load, a new card): its history is replaced by them.

Until a (server, workflow) has ``min_warm`` (3) warm runs its estimate is ``None`` and the
member sees "estimating...". Memory is bounded: a fixed-size deque per (server, workflow),
and :meth:`WaitEstimator.forget_server` drops a server removed from the configuration.

The wait (:meth:`WaitEstimator.estimate_wait`) is an approximation, made on purpose:

* the jobs ahead are dispatched in the order given (the fair queue's order), each to the
  server that becomes free first among the servers that can run THIS job, as if every job
  ahead could run on those servers too (it may in fact go to another one: then the estimate
  is pessimistic);
* a job already queued on a ComfyUI server (``Queued.server``) is charged to that server only;
* each server runs one prompt at a time; a running job costs the part of its estimated run
  time that is left (``remaining_fraction``, or its estimate minus the time since it started);
* a server that can run the job but has no estimate yet is assumed to be as fast as the median
  of the servers that have one (None when no server has one); a job ahead whose workflow has no
  estimate on a server is costed with this job's workflow's rates there.
"""

from __future__ import annotations

import enum
import heapq
import math
import statistics
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

MEGAPIXEL: Final = 1_000_000
DEFAULT_WINDOW: Final = 20
DEFAULT_MIN_WARM: Final = 3
DEFAULT_OUTLIER_FACTOR: Final = 2.0
DEFAULT_SHIFT_AFTER: Final = 3
UNKNOWN_REMAINING: Final = 0.5  # a running job we know nothing about is taken as half done


@dataclass(frozen=True, slots=True)
class Work:
    """What a job asks of a server: its workflow, sampling steps, frames and pixels per frame."""

    workflow: str
    steps: int
    frames: int
    pixels: int  # width x height of one frame

    def __post_init__(self) -> None:
        if self.steps < 1 or self.frames < 1 or self.pixels < 1:
            raise ValueError(f"steps, frames and pixels must be positive: {self}")

    @property
    def megapixel_frames(self) -> float:
        return self.frames * self.pixels / MEGAPIXEL


@dataclass(frozen=True, slots=True)
class RunRecord:
    """How long one finished run took on ``server``, split into its parts (seconds).

    ``sampling_seconds`` runs from the sampler's first progress message to its last,
    ``encode_seconds`` from there to the end of the prompt (VAE decode, video node);
    ``overhead_seconds`` is the rest (queued on the server to the sampler's start).
    """

    server: str
    work: Work
    sampling_seconds: float
    encode_seconds: float
    overhead_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        return self.sampling_seconds + self.encode_seconds + self.overhead_seconds


@dataclass(frozen=True, slots=True)
class Queued:
    """A job ahead in line. ``server`` is set once it is queued on that ComfyUI server."""

    work: Work
    server: str | None = None


@dataclass(frozen=True, slots=True)
class Running:
    """The job a server is running. Give ``remaining_fraction`` (0..1 of its whole run, from its
    progress) or ``started_at`` (same clock as ``now``); with neither it counts as half done."""

    server: str
    work: Work
    remaining_fraction: float | None = None
    started_at: float | None = None


class Recorded(enum.Enum):
    """What :meth:`WaitEstimator.record` did with a run."""

    WARM = "warm"  # kept
    COLD = "cold"  # first run after a (re)start: model loading; not kept
    OUTLIER = "outlier"  # far from what the medians predict; not kept
    SHIFT = "shift"  # outliers in a row on one side: the history was replaced by them
    INVALID = "invalid"  # a negative or zero duration; not kept


@dataclass(frozen=True, slots=True)
class Rates:
    """Medians of a (server, workflow)'s warm runs."""

    per_step: float  # seconds per step per frame-megapixel
    per_frame: float  # decode + encode seconds per frame-megapixel
    overhead: float  # seconds per run
    runs: int  # warm runs behind the medians

    def run_seconds(self, work: Work) -> float:
        mp_frames = work.megapixel_frames
        return work.steps * mp_frames * self.per_step + mp_frames * self.per_frame + self.overhead


@dataclass(frozen=True, slots=True)
class _Sample:
    per_step: float
    per_frame: float
    overhead: float


@dataclass(slots=True)
class _History:
    samples: deque[_Sample]
    pending: list[tuple[int, _Sample]] = field(default_factory=list)  # outliers in a row: (side, sample)


class WaitEstimator:
    """Per (server, workflow) run-time medians, and wait estimates from them. Pure; not
    thread-safe (use it from the event loop)."""

    def __init__(
        self,
        *,
        window: int = DEFAULT_WINDOW,
        min_warm: int = DEFAULT_MIN_WARM,
        outlier_factor: float = DEFAULT_OUTLIER_FACTOR,
        shift_after: int = DEFAULT_SHIFT_AFTER,
    ) -> None:
        if window < 1 or not 1 <= min_warm <= window:
            raise ValueError("need 1 <= min_warm <= window")
        if outlier_factor <= 1:
            raise ValueError("outlier_factor must be above 1")
        if shift_after < 1:
            raise ValueError("shift_after must be at least 1")
        self.window = window
        self.min_warm = min_warm
        self.outlier_factor = outlier_factor
        self.shift_after = shift_after
        self._histories: dict[tuple[str, str], _History] = {}
        self._warm_servers: set[str] = set()

    # --- learning -----------------------------------------------------------------------------

    def server_started(self, server: str) -> None:
        """``server`` (re)started (or its models were unloaded): its next run is cold."""
        self._warm_servers.discard(server)

    def forget_server(self, server: str) -> None:
        """Drop everything known about ``server`` (removed from the configuration)."""
        self._warm_servers.discard(server)
        for key in [key for key in self._histories if key[0] == server]:
            del self._histories[key]

    def record(self, run: RunRecord, *, cold: bool | None = None) -> Recorded:
        """Learn from a finished run. ``cold=None`` takes the first run on a server since it
        started (or since this estimator first saw it) as cold; True/False says so outright."""
        parts = (run.sampling_seconds, run.encode_seconds, run.overhead_seconds)
        if not all(math.isfinite(p) and p >= 0 for p in parts) or run.sampling_seconds <= 0:
            return Recorded.INVALID
        if cold is None:
            cold = run.server not in self._warm_servers
        self._warm_servers.add(run.server)
        if cold:
            return Recorded.COLD
        mp_frames = run.work.megapixel_frames
        sample = _Sample(
            per_step=run.sampling_seconds / (run.work.steps * mp_frames),
            per_frame=run.encode_seconds / mp_frames,
            overhead=run.overhead_seconds,
        )
        history = self._histories.get((run.server, run.work.workflow))
        if history is None:
            history = self._histories[(run.server, run.work.workflow)] = _History(deque(maxlen=self.window))
        rates = _medians(history.samples)
        if rates is not None and len(history.samples) >= self.min_warm:
            ratio = run.total_seconds / max(rates.run_seconds(run.work), 1e-9)
            side = 1 if ratio > self.outlier_factor else -1 if ratio < 1 / self.outlier_factor else 0
            if side:
                if history.pending and history.pending[-1][0] != side:
                    history.pending.clear()
                history.pending.append((side, sample))
                if len(history.pending) < self.shift_after:
                    return Recorded.OUTLIER
                history.samples.clear()
                history.samples.extend(s for _, s in history.pending)
                history.pending.clear()
                return Recorded.SHIFT
        history.pending.clear()
        history.samples.append(sample)
        return Recorded.WARM

    # --- asking -------------------------------------------------------------------------------

    def warm_runs(self, server: str, workflow: str) -> int:
        """How many warm runs the medians of (server, workflow) rest on (at most ``window``)."""
        history = self._histories.get((server, workflow))
        return len(history.samples) if history else 0

    def rates(self, server: str, workflow: str) -> Rates | None:
        """The medians for (server, workflow), or None before ``min_warm`` warm runs."""
        history = self._histories.get((server, workflow))
        if history is None or len(history.samples) < self.min_warm:
            return None
        return _medians(history.samples)

    def run_seconds(self, server: str, work: Work) -> float | None:
        """Estimated seconds for ``work`` on ``server``, or None while estimating."""
        rates = self.rates(server, work.workflow)
        return rates.run_seconds(work) if rates else None

    def estimate_wait(
        self,
        job: Work,
        ahead: Sequence[Queued],
        running: Iterable[Running],
        servers: Iterable[str],
        *,
        now: float | None = None,
        include_own_run: bool = False,
    ) -> float | None:
        """Seconds until ``job`` starts (until it ends with ``include_own_run``), or None.

        ``ahead`` is the jobs before it in dispatch order, ``running`` what each server is
        running, ``servers`` the servers that can run ``job``. See the module docstring for the
        approximations. None when no server in ``servers`` has an estimate for ``job``'s
        workflow yet.
        """
        names = list(dict.fromkeys(servers))
        cost = self._costing(job.workflow, names)
        if cost is None:
            return None
        free_at = self._busy_until(cost, names, running, (a for a in ahead if a.server is not None), now)
        for item in ahead:
            if item.server is None:
                first = min(names, key=lambda name: free_at[name])
                free_at[first] += cost(first, item.work)
        if include_own_run:
            return min(free_at[name] + cost(name, job) for name in names)
        return min(free_at.values())

    def line_waits(
        self,
        workflow: str,
        line: Sequence[tuple[Work, bool]],
        running: Iterable[Running],
        queued: Iterable[Queued],
        servers: Iterable[str],
        *,
        now: float | None = None,
    ) -> list[float | None]:
        """:meth:`estimate_wait` for many jobs of one line at once (one pass, for long lines).

        ``line`` is every job in dispatch order that one of ``servers`` can run, each with
        whether its wait is asked (a job of ``workflow`` that ``servers`` are the servers of);
        ``queued`` the jobs already in those servers' queues. The i-th answer is what
        :meth:`estimate_wait` gives the i-th job when asked (the jobs before it as ``ahead``,
        after ``queued``), None for the others.
        """
        names = list(dict.fromkeys(servers))
        cost = self._costing(workflow, names)
        if cost is None:
            return [None] * len(line)
        free_at = self._busy_until(cost, names, running, queued, now)
        heap = [(free_at[name], i, name) for i, name in enumerate(names)]
        heapq.heapify(heap)
        waits: list[float | None] = []
        for work, asked in line:
            waits.append(heap[0][0] if asked else None)
            free, i, name = heapq.heappop(heap)
            heapq.heappush(heap, (free + cost(name, work), i, name))
        return waits

    def _costing(self, workflow: str, names: Sequence[str]) -> Callable[[str, Work], float] | None:
        """How long a work takes on each of ``names``, as asked by a job of ``workflow`` (None: no
        server has an estimate for it). A server with no estimate borrows the others' medians;
        a work of another workflow without its own estimate there is costed with ``workflow``'s."""
        known = {name: r for name in names if (r := self.rates(name, workflow)) is not None}
        if not known:
            return None
        borrowed = _median_rates(list(known.values()))
        own = {name: known.get(name, borrowed) for name in names}

        def cost(server: str, work: Work) -> float:
            rates = self.rates(server, work.workflow) if work.workflow != workflow else None
            return (rates or own[server]).run_seconds(work)

        return cost

    @staticmethod
    def _busy_until(cost: Callable[[str, Work], float], names: Sequence[str], running: Iterable[Running],
                    queued: Iterable[Queued], now: float | None) -> dict[str, float]:
        """Seconds until each server is free of what it runs and what is in its queue."""
        free_at = dict.fromkeys(names, 0.0)
        for run in running:
            if run.server not in free_at:
                continue
            total = cost(run.server, run.work)
            if run.remaining_fraction is not None:
                left = total * min(max(run.remaining_fraction, 0.0), 1.0)
            elif run.started_at is not None and now is not None:
                left = max(total - (now - run.started_at), 0.0)
            else:
                left = total * UNKNOWN_REMAINING
            free_at[run.server] += left
        for item in queued:
            if item.server in free_at:
                free_at[item.server] += cost(item.server, item.work)
        return free_at


def _medians(samples: Sequence[_Sample]) -> Rates | None:
    if not samples:
        return None
    return Rates(
        per_step=statistics.median(s.per_step for s in samples),
        per_frame=statistics.median(s.per_frame for s in samples),
        overhead=statistics.median(s.overhead for s in samples),
        runs=len(samples),
    )


def _median_rates(rates: Sequence[Rates]) -> Rates:
    return Rates(
        per_step=statistics.median(r.per_step for r in rates),
        per_frame=statistics.median(r.per_frame for r in rates),
        overhead=statistics.median(r.overhead for r in rates),
        runs=min(r.runs for r in rates),
    )


def format_wait(seconds: float | None) -> str:
    """The wait as a member reads it: ``"estimating..."`` for None, else ``"starts in a moment"``
    (under 1.5 s), ``"starts in about 8 s"`` (to the second under 10 s, to 5 s under 55 s) or
    ``"starts in about 3 min"``. Coarse on purpose: a status is edited only when its words change."""
    if seconds is None or not math.isfinite(seconds):
        return "estimating..."
    if seconds < 1.5:
        return "starts in a moment"
    if seconds < 10:
        return f"starts in about {round(seconds)} s"
    if seconds < 55:
        return f"starts in about {5 * round(seconds / 5)} s"
    return f"starts in about {max(1, round(seconds / 60))} min"
