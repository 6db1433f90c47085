"""The bot's own member-facing exception types.

Every error a member may see is a :class:`UserFacingError` whose ``user_message`` is
written for members: no traceback, no server URL, no token. The command tree's error
handler (``bot.discord.tree``) is the one place that turns them into Discord replies; services
raise them and never talk to Discord themselves.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """An error with a message meant for the member who caused it."""

    def __init__(self, user_message: str, *, detail: str | None = None) -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message
        self.detail = detail


class InvalidInput(UserFacingError):
    """The member's input (image or option) cannot be used; the message says what to change."""


class LimitReached(UserFacingError):
    """A limit (queue full, cooldown, quota, jobs in flight) refuses the request for now."""

    def __init__(self, user_message: str, *, retry_after: float | None = None, detail: str | None = None) -> None:
        super().__init__(user_message, detail=detail)
        self.retry_after = retry_after


class NotAllowed(UserFacingError):
    """The member may not do this here (permissions, channel, ban, paused guild)."""


class BackendUnavailable(UserFacingError):
    """No ComfyUI server can take the job right now."""


class JobFailed(UserFacingError):
    """A job ended without a result; the message gives the reason in plain words."""


class MissingPermissions(UserFacingError):
    """The bot lacks a Discord permission it needs in this channel."""

    def __init__(self, missing: list[str]) -> None:
        names = ", ".join(missing)
        super().__init__(f"I need the {names} permission{'s' if len(missing) > 1 else ''} in this channel.")
        self.missing = missing
