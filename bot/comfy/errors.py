"""The ComfyUI client's exception hierarchy, rooted at :class:`ComfyError`.

Every error names the server by its configured *name* (``ServerConfig.name``), never by its
URL, and never carries credentials or tokens: messages and reprs are safe to log. They are
still technical messages; the bot's services turn them into member-facing errors.
"""

from __future__ import annotations

from typing import Any


class ComfyError(Exception):
    """Root of every error raised by ``bot.comfy``.

    ``server`` is the server's configured name; ``message`` a short technical description
    (no URL, no credentials); ``status`` the HTTP status when there was one.
    """

    def __init__(self, server: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{server}: {message}")
        self.server = server
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(server={self.server!r}, message={self.message!r})"


class ComfyUnreachable(ComfyError):
    """The server could not be reached (connection refused, DNS failure, socket reset)."""


class ComfyTimeout(ComfyError):
    """The server did not answer within the request timeout."""


class ComfyAuthError(ComfyError):
    """The server (or the proxy in front of it) refused our credentials: HTTP 401 or 403."""


class ComfyNotFound(ComfyError):
    """HTTP 404: the route, file or object does not exist."""


class ComfyBadRequest(ComfyError):
    """A 4xx answer that is not a prompt validation error (e.g. a bare 400 or a 405)."""


class ComfyServerError(ComfyError):
    """HTTP 5xx from the server or a proxy."""

    def __init__(self, server: str, status: int, message: str | None = None) -> None:
        super().__init__(server, message or f"server error (HTTP {status})", status=status)


class ComfyTooLarge(ComfyError):
    """A download exceeded its byte cap; nothing beyond the cap was kept."""

    def __init__(self, server: str, max_bytes: int, size: int | None = None) -> None:
        detail = f" (announced {size} bytes)" if size is not None else ""
        super().__init__(server, f"download larger than the cap of {max_bytes} bytes{detail}")
        self.max_bytes = max_bytes
        self.size = size


class ComfyBadResponse(ComfyError):
    """The server answered with something we cannot parse (not JSON, or the wrong shape)."""


class ComfyValidationError(ComfyError):
    """``POST /prompt`` answered 400 with ``error`` and ``node_errors``: the graph was refused.

    ``error`` and ``node_errors`` are the server's raw dicts; ``summary`` (also the message)
    is a concise human text such as ``"RepeatImageBatch #3: amount: Value 0 smaller than min of 1"``.
    """

    def __init__(self, server: str, error: dict[str, Any], node_errors: dict[str, Any], *, status: int = 400) -> None:
        self.error = error
        self.node_errors = node_errors
        self.summary = summarize_validation(error, node_errors)
        super().__init__(server, self.summary, status=status)

    @property
    def error_type(self) -> str | None:
        """The server's ``error.type``, e.g. ``prompt_outputs_failed_validation`` or ``invalid_prompt``."""
        value = self.error.get("type")
        return value if isinstance(value, str) else None


def _strip_input_prefix(details: str, input_name: str) -> str:
    for sep in (": ", ", ", " - "):
        if details.startswith(input_name + sep):
            return details[len(input_name) + len(sep):]
    return "" if details == input_name else details


def summarize_validation(error: dict[str, Any], node_errors: dict[str, Any], *, limit: int = 5) -> str:
    """A one-line human summary of a ComfyUI validation failure.

    One clause per node error (``"<class_type> #<id>: <input>: <message> (<details>)"``), at most
    ``limit`` of them; when ``node_errors`` is empty the top-level ``error`` message is used
    (e.g. an unknown class_type only names the node in ``details``).
    """
    parts: list[str] = []
    if isinstance(node_errors, dict):
        for node_id, entry in node_errors.items():
            if not isinstance(entry, dict):
                continue
            class_type = entry.get("class_type") or "node"
            for err in entry.get("errors") or []:
                if not isinstance(err, dict):
                    continue
                message = str(err.get("message") or err.get("type") or "invalid")
                details = str(err.get("details") or "")
                extra = err["extra_info"] if isinstance(err.get("extra_info"), dict) else {}
                input_name = extra.get("input_name") if isinstance(extra.get("input_name"), str) else None
                text = f"{class_type} #{node_id}: "
                if input_name:
                    text += f"{input_name}: "
                    details = _strip_input_prefix(details, input_name)
                text += message
                if details:
                    text += f" ({details})"
                parts.append(text)
    if not parts:
        message = str(error.get("message") or error.get("type") or "the prompt was refused") if isinstance(error, dict) else "the prompt was refused"
        details = str(error.get("details") or "") if isinstance(error, dict) else ""
        return f"{message} ({details})" if details and details != message else message
    more = len(parts) - limit
    text = "; ".join(parts[:limit])
    if more > 0:
        text += f"; and {more} more"
    return text
