"""Logs for machines (``LOG_FORMAT=json``): :class:`JsonFormatter` writes one JSON object per line.

Each line has ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message`` (the
formatted message), ``job_id`` when the record is about a job, and ``exc_type`` when it carries
an exception. A traceback is written (as ``traceback``) only with ``tracebacks=True``, which the
bot sets at ``LOG_LEVEL=DEBUG`` only, the policy of :mod:`bot.logs`.

Where the job id comes from: a record's ``job_id`` attribute (``log.info(..., extra={"job_id":
job.id})``) when there is one; otherwise the bot's own convention, which every job log line
follows today: the message starts with ``job <id>`` (``log.info("job %s posted to %s", job.id,
...)``), the id being the 10-character id of :func:`bot.jobs.models.new_job_id`. Likewise the
exception type is read from the record's ``exc_info``, or from the suffix that
:func:`bot.logs.log_failure` (``(ValueError; details at DEBUG level)``) and
:class:`bot.logs.TracebacksAtDebug` (``(ValueError; traceback at LOG_LEVEL=DEBUG)``) put
on the message in place of the traceback.

Secret masking still applies, because logging runs a handler's filters before its formatter::

    handler.addFilter(TracebacksAtDebug())   # unless LOG_LEVEL=DEBUG (optional in JSON mode)
    handler.addFilter(redaction)             # bot.logs.RedactingFilter / install_redaction
    handler.setFormatter(JsonFormatter(tracebacks=settings.log_level == "DEBUG"))

The redaction filter rewrites the record's message and its ``exc_text`` (the traceback text) in
place; this formatter writes the message from ``record.getMessage()`` and a traceback from
``record.exc_text`` whenever it is set, so it only ever writes masked text. It writes no other
record attribute than those listed above.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "job_id_of"]

# "job <id>" at the start of a message; the id alphabet and length of bot.jobs.models.new_job_id
_JOB_PREFIX = re.compile(r"job ([A-Za-z0-9_-]{10})(?![A-Za-z0-9_-])")
_EXC_SUFFIX = re.compile(r"\(([A-Za-z_][A-Za-z0-9_.]*); (?:details at DEBUG level|traceback at LOG_LEVEL=DEBUG)\)$")


def job_id_of(record: logging.LogRecord, message: str) -> str | None:
    """The job a record is about: its ``job_id`` attribute, else a leading ``job <id>`` in ``message``."""
    explicit = getattr(record, "job_id", None)
    if explicit is not None:
        return str(explicit)
    match = _JOB_PREFIX.match(message)
    return match.group(1) if match else None


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring for the fields)."""

    def __init__(self, *, tracebacks: bool = False) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        job_id = job_id_of(record, message)
        if job_id is not None:
            entry["job_id"] = job_id
        exc_type = _exception_type(record, message)
        if exc_type is not None:
            entry["exc_type"] = exc_type
        if self.tracebacks:
            if record.exc_info and not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            if record.exc_text:
                entry["traceback"] = record.exc_text
            if record.stack_info:
                entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _iso_utc(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exception_type(record: logging.LogRecord, message: str) -> str | None:
    if record.exc_info and record.exc_info[0] is not None:
        return record.exc_info[0].__name__
    match = _EXC_SUFFIX.search(message)
    return match.group(1) if match else None
