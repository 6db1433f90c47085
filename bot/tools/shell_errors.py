"""How ``python -m bot animate`` ends: its exit statuses and :class:`ShellError`, the one-line failure.

Shared by :mod:`bot.tools.shell_animate` (which re-exports these names) and
:mod:`bot.tools.shell_safety`.
"""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "ShellError"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ShellError(Exception):
    """Ends the command with a one-line ``message`` and exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
