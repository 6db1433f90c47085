"""Timing marks: where the time of a delivery or an image preparation goes, one DEBUG line each.

A mark is a ``time.monotonic()`` reading (on Linux the same clock in every process, so a
benchmark can line the bot's marks up with what the Discord stand-in and the ComfyUI test server
saw). :func:`log_marks` writes them on the logger ``bot.timing`` at DEBUG::

    timing delivery job=AbC123 start=1234.567890 read=1234.568300 poster=... fit=... queued=... sent=... done=...

so they show with ``LOG_LEVEL=DEBUG``, or with only that logger at DEBUG (the benchmarks run the bot
that way, :class:`standins.bot_process.BotProcess` ``debug_loggers``). :func:`parse_marks` reads
them back. Nothing is computed unless the logger is enabled.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping

__all__ = ["LOGGER", "Marks", "log_marks", "parse_marks"]

LOGGER = "bot.timing"
log = logging.getLogger(LOGGER)

_LINE = re.compile(r"\btiming (\w+) ((?:[\w]+=\S+ ?)+)")
_FIELD = re.compile(r"(\w+)=(\S+)")


class Marks:
    """Named ``time.monotonic()`` readings of one operation, in the order taken (cheap: a dict)."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.values.setdefault(name, time.monotonic())


def log_marks(what: str, marks: Marks | Mapping[str, float], **labels: str) -> None:
    """One DEBUG line: ``timing <what> <label>=<value>... <mark>=<seconds>...`` (see the module docstring)."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    values = marks.values if isinstance(marks, Marks) else marks
    fields = [f"{k}={v}" for k, v in labels.items()] + [f"{k}={v:.6f}" for k, v in values.items()]
    log.debug("timing %s %s", what, " ".join(fields))


def parse_marks(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Every timing line in ``text`` (a log): ``(what, {field: value})``, values as written."""
    for line in text.splitlines():
        found = _LINE.search(line)
        if found:
            yield found.group(1), dict(_FIELD.findall(found.group(2)))
