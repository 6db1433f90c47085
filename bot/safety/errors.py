"""The safety package's exceptions, under one root, :class:`SafetyError`.

* :class:`SafetyUnavailable`: the detector cannot run (package missing, model file missing or
  corrupt, used before :meth:`~bot.safety.detector.SafetyDetector.load`). Its message is one line
  for the operator's log and ``doctor``.
* :class:`UnreadableMedia`: an image or video could not be decoded for the check.

Neither is member-facing: the caller decides what a member is told (a failed check fails closed,
see :func:`bot.safety.policy.decide`).
"""

from __future__ import annotations


class SafetyError(Exception):
    """Root of the safety package's exceptions; the message is one line."""

    def __init__(self, reason: str) -> None:
        reason = " ".join(str(reason).split()) or self.__class__.__name__
        super().__init__(reason)
        self.reason = reason


class SafetyUnavailable(SafetyError):
    """The content-safety detector cannot run; ``reason`` says why, in one line."""


class UnreadableMedia(SafetyError):
    """The image or video given to a check could not be decoded."""
