"""Logging a caught exception without its text or traceback at INFO and above.

Exception texts and tracebacks may carry server addresses or credentials (an aiohttp error
names the host it could not reach), and a member-facing bot should not print tracebacks into
an operator's INFO log for failures it handles. :func:`log_failure` logs the message with the
exception's type at the given level, and the full traceback at DEBUG (``LOG_LEVEL=DEBUG``
shows everything). Pure standard library, so every layer may use it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["log_failure"]


def log_failure(logger: logging.Logger, level: int, message: str, *args: Any) -> None:
    """Log the exception being handled: its type at ``level``, the traceback at DEBUG only."""
    exc = sys.exc_info()[1]
    logger.log(level, message + " (%s; details at DEBUG level)", *args, type(exc).__name__ if exc else "error")
    logger.debug(message, *args, exc_info=True)
