"""What the bot's log may contain: handled failures without tracebacks, and no secrets.

Two rules, applied to every line the process writes:

- **Failures in one line.** Exception texts and tracebacks may carry server addresses or
  credentials (an aiohttp error names the host it could not reach), and a member-facing bot
  should not print tracebacks into an operator's INFO log for failures it handles.
  :func:`log_failure` logs the message with the exception's type at the given level and the
  full traceback at DEBUG (``LOG_LEVEL=DEBUG`` shows everything). :class:`TracebacksAtDebug`
  applies the same rule to every record, third-party libraries' too (discord.py, asyncio).
- **No secrets.** :class:`RedactingFilter` masks the settings' secrets (tokens, passwords,
  server URLs, replaced by the server's name) in every record, as a second line of defence:
  modules already keep them out of their messages, but a library or an exception text might not.

Pure standard library at import time, so every layer of the application may use it (the
ComfyUI client library in ``bot/comfy`` stays self-contained and logs on its own).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.settings import Settings

__all__ = [
    "RedactingFilter",
    "TracebacksAtDebug",
    "install_quiet_tracebacks",
    "install_redaction",
    "log_failure",
    "secret_replacements",
]


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


class RedactingFilter(logging.Filter):
    """Replaces known secret strings in a record's message, arguments and traceback text."""

    def __init__(self, replacements: Iterable[tuple[str, str]]) -> None:
        super().__init__()
        # longest first, so a URL is replaced before the host inside it
        self._pairs = sorted({(s, r) for s, r in replacements if s and len(s) >= 4}, key=lambda p: -len(p[0]))

    def redact(self, text: str) -> str:
        for secret, replacement in self._pairs:
            if secret in text:
                text = text.replace(secret, replacement)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def secret_replacements(settings: Settings) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if settings.discord_token:
        pairs.append((settings.discord_token, "<discord token>"))
    if settings.comfyui_token:
        pairs.append((settings.comfyui_token, "<comfyui token>"))
    for server in settings.comfyui_servers:
        label = f"<server {server.name}>"
        pairs.append((server.url, label))
        host = server.url.split("://", 1)[-1].split("/", 1)[0]
        pairs.append((host, label))
        if server.password:
            pairs.append((server.password, "<password>"))
            if server.username:
                pairs.append((f"{server.username}:{server.password}", "<credentials>"))
    return pairs


def install_redaction(settings: Settings) -> RedactingFilter:
    """Add the filter to every handler of the root logger (call after logging is configured)."""
    redactor = RedactingFilter(secret_replacements(settings))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    return redactor
