"""Every content-safety text a member or moderator reads, and the rules they name.

A refusal or a withheld result names the :class:`Rule` that applied, never the scores (those go
to the audit log and the operator's log only). Each mode has a one-line summary for ``/help``,
``/mod settings`` and the audit log. Pure strings: no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from bot.safety.policy import Mode


class Rule(StrEnum):
    """Why an image was refused or a result withheld."""

    STRICT = "strict"  #: the guild's mode is strict: explicit everywhere
    ORDINARY_CHANNEL = "ordinary_channel"  #: standard mode, and the channel is not age-restricted
    DIRECT_MESSAGE = "direct_message"  #: always strict in DMs
    OTHERS_IMAGE = "others_image"  #: always strict on another member's image
    UNCHECKED = "unchecked"  #: the file could not be checked
    UNAVAILABLE = "unavailable"  #: the detector is not working: everything is refused


_RULES: Final[dict[Rule, str]] = {
    Rule.STRICT: "this server does not allow explicit images anywhere",
    Rule.ORDINARY_CHANNEL: "this server allows explicit images only in age-restricted channels",
    Rule.DIRECT_MESSAGE: "explicit images are never animated in direct messages",
    Rule.OTHERS_IMAGE: "explicit images are never animated from another member's post",
    Rule.UNCHECKED: "it could not be checked for explicit content",
    Rule.UNAVAILABLE: "the image safety check is not working right now",
}

#: The public status message of a request refused before it ran (the reason goes privately).
NOT_RUN: Final = "This request was not run."
#: The public status message of a job whose result was withheld.
WITHHELD_NOTICE: Final = "🛡️ The result was withheld by this server's safety settings."
#: ``Job.error_detail`` of a job whose result was withheld starts with this (never shown to members).
WITHHELD_DETAIL: Final = "safety: withheld"

_MODES: Final[dict[Mode, str]] = {
    Mode.STRICT: "strict: explicit images are refused in every channel; suggestive results are posted as spoilers",
    Mode.STANDARD: ("standard: explicit images only in age-restricted channels, refused elsewhere; "
                    "suggestive results are spoilers outside age-restricted channels"),
    Mode.OFF: "off: images and results are not checked",
}
ALWAYS_STRICT: Final = "Always strict in direct messages and on another member's image."


def rule_text(rule: Rule | str) -> str:
    return _RULES[Rule(rule)]


def refused(rule: Rule | str) -> str:
    """The private reason an input was refused (the use is given back)."""
    if Rule(rule) is Rule.UNAVAILABLE:
        return ("I can't start animations right now: the image safety check is not working, and I never let "
                "images through unchecked. The bot's operator can see why in its log. This did not count "
                "towards your limits.")
    return f"This image was not animated: {rule_text(rule)}. This did not count towards your limits."


def withheld(rule: Rule | str) -> str:
    """The private message of a member whose result was withheld."""
    return (f"Your animation was made, but it was withheld: {rule_text(rule)}. "
            "The server's moderators can review it.")


def mode_summary(mode: Mode | str) -> str:
    """``strict: explicit images are refused in every channel; ...``"""
    return _MODES[Mode(mode)]


def released(user_id: int) -> str:
    """The channel message that carries a result a moderator released."""
    return f"<@{user_id}> a moderator released your animation (shown as a spoiler)."


__all__ = ["ALWAYS_STRICT", "NOT_RUN", "WITHHELD_DETAIL", "WITHHELD_NOTICE", "Rule", "mode_summary", "refused",
           "released", "rule_text", "withheld"]
