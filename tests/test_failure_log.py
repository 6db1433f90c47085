"""A handled failure is one line with the exception's type at INFO and above; the traceback
(which may name a server's address) only at DEBUG."""

from __future__ import annotations

import logging

import pytest

from bot.failure_log import log_failure


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
