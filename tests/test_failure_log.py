"""A handled failure is one line with the exception's type at INFO and above; the traceback
(which may name a server's address) only at DEBUG."""

from __future__ import annotations

import logging

import pytest

from bot.logs import TracebacksAtDebug, log_failure


def test_the_traceback_and_the_exception_text_stay_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.failure_log")
    with caplog.at_level(logging.DEBUG, logger="tests.failure_log"):
        try:
            raise ConnectionError("cannot reach http://user:secret@10.0.0.5:8188")
        except ConnectionError:
            log_failure(logger, logging.WARNING, "status edit for %s failed", "job-1")
    warning, debug = caplog.records
    assert warning.levelno == logging.WARNING and warning.exc_info is None
    assert warning.getMessage() == "status edit for job-1 failed (ConnectionError; details at DEBUG level)"
    assert "secret" not in caplog.text.split("\n")[0]
    assert debug.levelno == logging.DEBUG and debug.exc_info is not None  # all of it, for LOG_LEVEL=DEBUG


def test_third_party_tracebacks_become_one_line_unless_debug() -> None:
    """discord.py or asyncio may log a traceback at ERROR; outside DEBUG it becomes its type."""
    record = logging.LogRecord("discord.client", logging.ERROR, __file__, 1, "Ignoring exception in %s", ("on_x",), None)
    try:
        raise RuntimeError("boom at 127.0.0.1:8188")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert TracebacksAtDebug().filter(record)
    text = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert text == "ERROR Ignoring exception in on_x (RuntimeError; traceback at LOG_LEVEL=DEBUG)"
    assert "Traceback" not in text and "127.0.0.1" not in text
