"""Diagnostics on request: ``kill -USR1 <pid>`` makes the running bot log one line of counts.

The line (logger ``bot.observability.diagnostics``, level INFO, shown whatever ``LOG_LEVEL`` is since it was
asked for) reads::

    diagnostics tasks=41 fds=23 rss_kb=98312 lag_p99_ms=2 lag_max_ms=9 lag_samples=2990 progress_streams=0 ...

- ``tasks``: asyncio tasks not done; ``fds``: open file descriptors of the process;
  ``rss_kb``: resident memory (``VmRSS``);
- ``lag_*``: event-loop lag (how late a 10 ms timer fires, in whole ms) since the previous
  line. The first signal starts that watch (a timer, no task), so the first line has no lag
  fields; it stays on from then until the bot stops, in fixed memory;
- then every ``name=count`` that a service or cog reports through ``memory_counts()``
  (``JobService.memory_counts()``: per-job records such as progress streams and followers);
  a name reported twice is prefixed with its owner's name.

Benchmarks (``python -m bench soak``) send the signal and read the line with :func:`parse_line`.
Nothing here runs unless the signal arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import signal
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "diagnostics"
LAG_INTERVAL = 0.010  # seconds between lag samples
LAG_BUCKETS = 1000  # one per whole millisecond; later ones count in the last bucket

_FIELD = re.compile(r"([A-Za-z_][\w.]*)=(-?\d+)")
_LINE = re.compile(rf"\b{PREFIX}((?: [A-Za-z_][\w.]*=-?\d+)+)")

#: Returns (owner name, object) pairs to ask for ``memory_counts()``.
Sources = Callable[[], Iterable[tuple[str, Any]]]


class LagWatch:
    """How late a repeating 10 ms timer fires, as a histogram in whole milliseconds (fixed memory)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = LAG_INTERVAL) -> None:
        self._loop = loop
        self._interval = interval
        self._buckets = [0] * LAG_BUCKETS
        self._samples = 0
        self._max_ms = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due = self._loop.time() + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._loop.time()
        late_ms = max(0.0, (now - self._due) * 1000)
        self._buckets[min(int(late_ms), LAG_BUCKETS - 1)] += 1
        self._samples += 1
        self._max_ms = max(self._max_ms, late_ms)
        self._due = now + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def take(self) -> dict[str, int]:
        """p99 and max lag (ms, rounded up) and the sample count since the last take; then reset."""
        if not self._samples:
            return {}
        rank = -(-self._samples * 99 // 100)
        seen, p99 = 0, LAG_BUCKETS
        for ms, count in enumerate(self._buckets):
            seen += count
            if seen >= rank:
                p99 = ms + 1
                break
        counts = {"lag_p99_ms": p99, "lag_max_ms": int(-(-self._max_ms // 1)), "lag_samples": self._samples}
        self._buckets = [0] * LAG_BUCKETS
        self._samples = 0
        self._max_ms = 0.0
        return counts


def open_fds() -> int:
    """Open file descriptors of this process (the directory listing's own descriptor left out)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return max(0, len(os.listdir(folder)) - 1)
    return -1


def rss_kb() -> int:
    """Resident memory in KiB (``VmRSS``); the peak (``ru_maxrss``) where /proc is missing."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory_counts(sources: Iterable[tuple[str, Any]]) -> dict[str, int]:
    """Every ``memory_counts()`` of the sources, merged (a clashing name gets ``owner.`` in front)."""
    merged: dict[str, int] = {}
    for owner, obj in sources:
        counter = getattr(obj, "memory_counts", None)
        if not callable(counter):
            continue
        try:
            counts: Mapping[str, int] = counter()
        except Exception as exc:  # diagnostics must never take the bot down
            log.warning("diagnostics: %s.memory_counts() failed: %s", owner, type(exc).__name__)
            continue
        for name, value in counts.items():
            key = name if name not in merged and name not in ("tasks", "fds", "rss_kb") else f"{owner}.{name}"
            merged[key] = int(value)
    return merged


def snapshot(sources: Iterable[tuple[str, Any]] = (), lag: LagWatch | None = None) -> dict[str, int]:
    """The counts of one diagnostics line (call inside the running loop)."""
    counts = {
        "tasks": sum(1 for task in asyncio.all_tasks() if not task.done()),
        "fds": open_fds(),
        "rss_kb": rss_kb(),
    }
    if lag is not None:
        counts |= lag.take()
    counts |= memory_counts(sources)
    return counts


def format_line(counts: Mapping[str, int]) -> str:
    return " ".join([PREFIX, *(f"{name}={value}" for name, value in counts.items())])


def parse_line(text: str) -> dict[str, int] | None:
    """The counts of the last diagnostics line in ``text`` (a log), or None when there is none."""
    found = None
    for match in _LINE.finditer(text):
        found = match
    if found is None:
        return None
    return {name: int(value) for name, value in _FIELD.findall(found.group(1))}


class Diagnostics:
    """Answers SIGUSR1 with one log line. :meth:`install` on the running loop; :meth:`uninstall` at the end."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources
        self._lag: LagWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Handle SIGUSR1 on ``loop``; False where signals cannot be handled (Windows, not the main thread)."""
        sigusr1 = getattr(signal, "SIGUSR1", None)
        if sigusr1 is None:
            return False
        try:
            loop.add_signal_handler(sigusr1, self.report)
        except (NotImplementedError, RuntimeError, ValueError):
            return False
        self._loop = loop
        if log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)  # it was asked for: show it at any LOG_LEVEL
        return True

    def uninstall(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.remove_signal_handler(signal.SIGUSR1)
        if self._lag is not None:
            self._lag.stop()
            self._lag = None
        self._loop = None

    def report(self) -> None:
        """Log the line (runs in the loop, from the signal handler)."""
        try:
            counts = snapshot(self._sources(), self._lag)
        except Exception as exc:  # diagnostics must never take the bot down
            log.warning("diagnostics failed: %s", type(exc).__name__)
            return
        log.info("%s", format_line(counts))
        if self._lag is None and self._loop is not None:
            self._lag = LagWatch(self._loop)
            self._lag.start()
