"""Result checks started ahead of the delivery, so the delivery's check finds its work done.

The job service downloads a result as soon as ComfyUI names the file (the output node's
``executed`` event, before the prompt's end) and then asks the gate to start the result check's
expensive part on it: decoding the sampled frames and running the detector
(:meth:`bot.safety.gate.SafetyGate.start_result_check`). :class:`ChecksAhead` keeps that work per
file until the delivery's check takes it (:meth:`ChecksAhead.verdict`), or the job ends without a
delivery and it is dropped. Nothing is decided ahead: the verdict is judged at delivery with the
thresholds of that moment from the same frames' detections the check would have found, and the
decision (mode, channel) is the gate's, as without it. The work is used only when the file is
still the one that was checked (same size, modification time and inode); otherwise, or when it
failed, the delivery checks the file itself, as it always did.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.jobs.models import Job
from bot.safety.detector import SafetyDetector
from bot.safety.result_check import ResultCheck, check_result
from bot.safety.verdict import Thresholds, Verdict, judge

log = logging.getLogger(__name__)

__all__ = ["ChecksAhead", "ResultCheckAhead", "SignedCheck", "signed_check"]


class ResultCheckAhead(Protocol):
    """What the job service calls once a result is downloaded (:class:`~bot.safety.gate.SafetyGate` implements it)."""

    def start_result_check(self, job: Job, path: Path) -> None: ...

    def drop_result_check(self, path: Path) -> None: ...


@dataclass(frozen=True, slots=True)
class SignedCheck:
    """A result check and the file it was made on (size, modification time, inode)."""

    signature: tuple[int, int, int]
    check: ResultCheck


def _signature(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


def signed_check(detector: SafetyDetector, path: Path, samples: int) -> SignedCheck:
    """The frames' detections of ``path`` (the verdict inside is judged again at delivery). Blocking."""
    signature = _signature(path)
    return SignedCheck(signature, check_result(detector, path, Thresholds(), samples=samples))


class ChecksAhead:
    """Result checks running or done ahead, by file (see the module docstring)."""

    def __init__(self) -> None:
        self._checks: dict[Path, asyncio.Future[SignedCheck | None]] = {}

    def __len__(self) -> int:
        return len(self._checks)

    def start(self, path: Path, work: Callable[[], Awaitable[SignedCheck | None]]) -> None:
        """Run ``work()`` (None: nothing to check) for ``path`` now, once."""
        if path in self._checks:
            return
        future = asyncio.ensure_future(work())
        future.add_done_callback(_consume)
        self._checks[path] = future

    def drop(self, path: Path) -> None:
        """Forget the work for ``path`` (the job ended without a delivery); a thread running it finishes alone."""
        future = self._checks.pop(path, None)
        if future is not None:
            future.cancel()

    async def verdict(self, path: Path, thresholds: Thresholds) -> Verdict | None:
        """The verdict on ``path`` from the work done ahead, or None when there is none to use."""
        future = self._checks.pop(path, None)
        if future is None:
            return None
        try:
            done = await asyncio.shield(future)
            if done is None or done.signature != await asyncio.to_thread(_signature, path):
                return None
        except asyncio.CancelledError:
            if not future.cancelled():
                raise
            return None
        except Exception as exc:  # the delivery's own check meets it again and handles it
            log.debug("the result check ahead of %s failed: %s", path.name, exc)
            return None
        return judge((frame.detections for frame in done.check.frames), thresholds)


def _consume(future: asyncio.Future[SignedCheck | None]) -> None:
    if not future.cancelled():
        future.exception()
