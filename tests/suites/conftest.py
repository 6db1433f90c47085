"""Shared helpers for the suites: the whole-bot factory, what was sent to Discord, secret checks.

``animate_bot`` and ``discord_stand_in`` are the /animate tests' fixtures (re-exported here so
the suites build the bot exactly like those tests do). :func:`discord_payloads` flattens every
request the stand-in recorded (JSON bodies, file names and file bytes) so a test can search it;
:func:`find_secrets` reports which secrets occur in a text or in bytes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from tests.animate.conftest import animate_bot, discord_stand_in
from standins.discord_server import DiscordStandIn

__all__ = ["animate_bot", "discord_stand_in", "Secret", "discord_payloads", "find_secrets", "log_texts"]

# Loggers of the test doubles (ComfyUI test server, Discord stand-in, their aiohttp servers):
# they are not the bot, and they legitimately print their own URLs.
FOREIGN_LOGGERS = ("tests.", "standins.", "aiohttp.server", "aiohttp.access", "aiohttp.web")


@dataclass(frozen=True)
class Secret:
    """Something that must never be shown: ``label`` names it in failure messages."""

    label: str
    value: str

    def pattern(self) -> re.Pattern[str]:
        # "127.0.0.1:4123" must not match inside "127.0.0.1:41234" (another server's port)
        return re.compile(re.escape(self.value) + r"(?!\d)")


def find_secrets(text: str | bytes, secrets: Iterable[Secret]) -> list[str]:
    """Labels of the secrets found in ``text`` (bytes are searched as latin-1, byte for byte)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return [s.label for s in secrets if s.pattern().search(text)]


def discord_payloads(stand_in: DiscordStandIn) -> list[tuple[str, str | bytes]]:
    """Everything the bot sent to the stand-in: (where, what) for each body, file name and file."""
    out: list[tuple[str, str | bytes]] = []
    for rec in stand_in.requests:
        where = f"{rec.method} {rec.path}"
        if rec.json is not None:
            out.append((where + " body", json.dumps(rec.json, ensure_ascii=False)))
        out.append((where + " query", json.dumps(rec.query, ensure_ascii=False)))
        for field_name, filename, blob in rec.files:
            out.append((f"{where} file name ({field_name})", filename))
            out.append((f"{where} file {filename}", blob))
    return out


def log_texts(records: Iterable[logging.LogRecord], level: int = logging.INFO) -> list[tuple[str, str]]:
    """(logger, formatted text with any traceback) for the bot's records at ``level`` and above."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    out = []
    for record in records:
        if record.levelno < level or record.name.startswith(FOREIGN_LOGGERS):
            continue
        out.append((record.name, formatter.format(record)))
    return out
