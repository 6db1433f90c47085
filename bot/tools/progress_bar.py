"""A one-line progress display for the shell (``python -m bot animate``), written to stderr.

On a terminal it redraws a single line with ``\\r`` (a bar when a fraction is known, e.g.
``[#######-------------]  step 7 of 20``); when the stream is not a terminal (a pipe, a log
file, CI) it writes one plain line per change of text instead, so logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

BAR_WIDTH = 24


class ProgressBar:
    """Shows the latest phase text and, when known, a fraction 0..1 as a bar."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, width: int = BAR_WIDTH) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty = tty
        self.width = width
        self._last_text: str | None = None
        self._last_line_len = 0
        self._open_line = False

    def _columns(self) -> int:
        return max(20, shutil.get_terminal_size((80, 24)).columns - 1)

    def render(self, text: str, fraction: float | None) -> str:
        """The line shown for ``text`` and ``fraction`` (no control characters)."""
        if fraction is None:
            return text
        fraction = min(1.0, max(0.0, fraction))
        filled = int(round(fraction * self.width))
        return f"[{'#' * filled}{'-' * (self.width - filled)}] {fraction * 100:3.0f}%  {text}"

    def update(self, text: str, fraction: float | None = None) -> None:
        """Show ``text`` (and a bar for ``fraction``). Plain mode writes only when the text changes."""
        if self.tty:
            line = self.render(text, fraction)[: self._columns()]
            pad = " " * max(0, self._last_line_len - len(line))
            self.stream.write("\r" + line + pad)
            self.stream.flush()
            self._last_line_len = len(line)
            self._open_line = True
        elif text != self._last_text:
            self.stream.write(text + "\n")
            self.stream.flush()
        self._last_text = text

    def finish(self, text: str | None = None) -> None:
        """End the bar's line (with a final ``text`` if given) so later output starts clean."""
        if text is not None:
            if self.tty:
                self.update(text)
            elif text != self._last_text:
                self.stream.write(text + "\n")
                self._last_text = text
        if self.tty and self._open_line:
            self.stream.write("\n")
            self._open_line = False
            self._last_line_len = 0
        self.stream.flush()
