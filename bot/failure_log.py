"""Logging a caught exception without its text or traceback at INFO and above.

Exception texts and tracebacks may carry server addresses or credentials (an aiohttp error
names the host it could not reach), and a member-facing bot should not print tracebacks into
an operator's INFO log for failures it handles. :func:`log_failure` logs the message with the
exception's type at the given level, and the full traceback at DEBUG (``LOG_LEVEL=DEBUG``
shows everything). Pure standard library, so every layer may use it.

:class:`TracebacksAtDebug` applies the same rule to every record the process writes, third-party
libraries' too (discord.py, asyncio): unless ``LOG_LEVEL=DEBUG``, a record's traceback is
replaced by the exception's type in its message.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["TracebacksAtDebug", "install_quiet_tracebacks", "log_failure"]


def log_failure(logger: logging.Logger, level: int, message: str, *args: Any) -> None:
    """Log the exception being handled: its type at ``level``, the traceback at DEBUG only."""
    exc = sys.exc_info()[1]
    logger.log(level, message + " (%s; details at DEBUG level)", *args, type(exc).__name__ if exc else "error")
    logger.debug(message, *args, exc_info=True)


class TracebacksAtDebug(logging.Filter):
    """Replaces a record's traceback by the exception's type (installed unless ``LOG_LEVEL=DEBUG``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            record.msg = f"{record.getMessage()} ({record.exc_info[0].__name__}; traceback at LOG_LEVEL=DEBUG)"
            record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def install_quiet_tracebacks(level: str) -> TracebacksAtDebug | None:
    """Add :class:`TracebacksAtDebug` to the root handlers unless ``level`` is DEBUG (call it
    before the redaction filter, so the message it builds is masked too)."""
    if level.upper() == "DEBUG":
        return None
    quiet = TracebacksAtDebug()
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    return quiet
