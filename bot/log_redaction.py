"""A logging filter that masks the settings' secrets in every log line the process writes.

Defence in depth: modules already keep tokens, passwords and server URLs out of their log
messages, but a third-party library or an exception text might not. Installed once at start
on the root handlers by the command line; it replaces each secret with a placeholder and a
server URL with the server's name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.settings import Settings


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
