"""LOG_FORMAT=json: one JSON object per line, with the job id, masked by the redaction filter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from bot.logs import TracebacksAtDebug, log_failure
from bot.jobs.models import new_job_id
from bot.logs import RedactingFilter, secret_replacements
from bot.observability.json_logs import JsonFormatter
from bot.settings import load_settings

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.secretsecretsecretsecret"
SECRETS = (TOKEN, "comfy-bearer-secret", "hunter22", "10.1.2.3")


def redactor() -> RedactingFilter:
    settings = load_settings({
        "DISCORD_TOKEN": TOKEN,
        "COMFYUI_TOKEN": "comfy-bearer-secret",
        "COMFYUI_URLS": "gpu=http://alice:hunter22@10.1.2.3:8188/comfy",
    })
    return RedactingFilter(secret_replacements(settings))


@pytest.fixture
def stream() -> Iterator[tuple[logging.Logger, logging.Handler, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("test.observability.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, handler, out
    finally:
        logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_each_record_is_one_json_line_with_time_level_logger_message_and_job_id(
    stream: tuple[logging.Logger, logging.Handler, io.StringIO],
) -> None:
    logger, handler, out = stream
    handler.setFormatter(JsonFormatter())
    job = new_job_id()
    logger.info("job %s posted to %s as prompt %s", job, "gpu", "abc")
    logger.warning("a line\nwith a newline", extra={"job_id": "explicit-1"})
    logger.info("jobs waiting: %d", 3)
    first, second, third = lines(out)
    assert first["message"] == f"job {job} posted to gpu as prompt abc"
    assert first["job_id"] == job
    assert first["level"] == "INFO" and first["logger"] == "test.observability.json"
    assert isinstance(first["time"], str) and first["time"].endswith("Z")
    assert datetime.fromisoformat(first["time"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert second["job_id"] == "explicit-1" and second["message"] == "a line\nwith a newline"
    assert "job_id" not in third
    assert set(first) == {"time", "level", "logger", "message", "job_id"}


def test_secrets_are_masked_in_messages_and_tracebacks(stream: tuple[logging.Logger, logging.Handler, io.StringIO]) -> None:
    logger, handler, out = stream
    handler.addFilter(redactor())
    handler.setFormatter(JsonFormatter(tracebacks=True))
    job = new_job_id()
    logger.error("job %s: cannot reach %s with %s", job, "http://10.1.2.3:8188/comfy/prompt", TOKEN)
    try:
        raise RuntimeError("connect to 10.1.2.3:8188 as alice:hunter22 with comfy-bearer-secret failed")
    except RuntimeError:
        logger.exception("job %s failed", job)
    text = out.getvalue()
    for secret in SECRETS:
        assert secret not in text, secret
    first, second = lines(out)
    assert first["job_id"] == job and "<server gpu>" in str(first["message"]) and "<discord token>" in str(first["message"])
    assert second["exc_type"] == "RuntimeError" and "Traceback" in str(second["traceback"])


def test_no_traceback_unless_asked(stream: tuple[logging.Logger, logging.Handler, io.StringIO]) -> None:
    logger, handler, out = stream
    handler.addFilter(redactor())
    handler.setFormatter(JsonFormatter())
    try:
        raise KeyError("10.1.2.3")
    except KeyError:
        logger.exception("lookup failed")
    (entry,) = lines(out)
    assert entry["exc_type"] == "KeyError" and "traceback" not in entry
    assert "10.1.2.3" not in out.getvalue()


def test_exception_types_from_the_quiet_traceback_policy(stream: tuple[logging.Logger, logging.Handler, io.StringIO]) -> None:
    logger, handler, out = stream
    handler.addFilter(TracebacksAtDebug())
    handler.addFilter(redactor())
    handler.setFormatter(JsonFormatter())
    logger.setLevel(logging.INFO)
    job = new_job_id()
    try:
        raise ConnectionError(f"no route to 10.1.2.3 with {TOKEN}")
    except ConnectionError:
        logger.exception("job %s: the server went away", job)
        log_failure(logger, logging.WARNING, "job %s: delivery attempt %d failed", job, 2)
    first, second = lines(out)
    assert first["exc_type"] == "ConnectionError" and first["job_id"] == job
    assert second["exc_type"] == "ConnectionError" and second["job_id"] == job
    assert second["message"] == f"job {job}: delivery attempt 2 failed (ConnectionError; details at DEBUG level)"
    for secret in SECRETS:
        assert secret not in out.getvalue()


@pytest.mark.parametrize("message", ["job failed unexpectedly", "jobs abcdefghij", "job abcdefghijk is long", "the job Ab3dEf9hIj"])
def test_no_job_id_is_guessed_from_other_text(message: str, stream: tuple[logging.Logger, logging.Handler, io.StringIO]) -> None:
    logger, handler, out = stream
    handler.setFormatter(JsonFormatter())
    logger.info(message)
    (entry,) = lines(out)
    assert "job_id" not in entry
