"""Every member-facing limit and refusal message, in one place.

Services and cogs never write these sentences themselves: they call a function here, so
wording, plurals and time formats stay consistent. Functions take Discord mentions as
ready strings (``<#id>``, ``<@&id>``); :func:`channel_mention` and friends build them.
Text supplied by moderators (pause message, ban reason) is shortened and ``@everyone`` /
``@here`` are defused, so a refusal can never ping a whole server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "RESET_TIME",
    "MAX_FREE_TEXT",
    "format_duration",
    "channel_mention",
    "role_mention",
    "user_mention",
    "clean_free_text",
    "cooldown",
    "daily_quota",
    "remaining_quota",
    "guild_daily_cap",
    "jobs_in_flight",
    "queue_full",
    "wrong_channel",
    "missing_role",
    "paused",
    "banned",
    "dms_not_allowed",
    "others_image_not_allowed",
    "not_moderator",
    "guild_only",
    "above_cap",
    "format_not_allowed",
    "clamped",
    "format_clamped",
    "extension_limit",
]

#: When daily quotas and the guild cap reset (store: UTC calendar days).
RESET_TIME = "00:00 UTC"
#: Longest moderator-written text (pause message, ban reason) shown to members.
MAX_FREE_TEXT = 300
#: How many channels a "wrong channel" pointer lists before saying "and N more".
MAX_LISTED_CHANNELS = 10

_ZWSP = "\u200b"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def format_duration(seconds: float, *, exact: bool = False) -> str:
    """A short human duration, rounded up so a member never retries too early.

    ``42 s``, ``3 min``, ``3 h 12 min``, ``2 d 4 h``. Anything under a second is ``1 s``.
    ``exact=True`` (for settings, not waits) keeps the two largest units: ``1 min 30 s``.
    """
    if exact:
        rest = max(0, round(seconds))
        parts = []
        for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
            count, rest = divmod(rest, size)
            if count:
                parts.append(f"{count} {unit}")
        return " ".join(parts[:2]) or "0 s"
    total = max(1, math.ceil(seconds - 1e-9)) if seconds > 0 else 1
    if total < 60:
        return f"{total} s"
    minutes = math.ceil(total / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours + (1 if minutes else 0), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def channel_mention(channel_id: int) -> str:
    return f"<#{int(channel_id)}>"


def role_mention(role_id: int) -> str:
    return f"<@&{int(role_id)}>"


def user_mention(user_id: int) -> str:
    return f"<@{int(user_id)}>"


def clean_free_text(text: str | None, *, limit: int = MAX_FREE_TEXT) -> str | None:
    """Moderator-written text made safe to show: one line, trimmed, no mass mentions. None if empty."""
    if text is None:
        return None
    cleaned = " ".join(text.split())
    cleaned = cleaned.replace("@everyone", f"@{_ZWSP}everyone").replace("@here", f"@{_ZWSP}here")
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned or None


# --------------------------------------------------------------------------- limits


def cooldown(retry_after: float) -> str:
    """``You can animate again in 42 s.``"""
    return f"You can animate again in {format_duration(retry_after)}."


def daily_quota(quota: int, resets_in: float) -> str:
    """``You've used all 5 generations for today; they reset at 00:00 UTC (in 3 h 12 min).``"""
    when = f"{RESET_TIME} (in {format_duration(resets_in)})"
    if quota <= 0:
        return f"Generations are not available to members here today; try again after {when}."
    if quota == 1:
        return f"You've used your 1 generation for today; it resets at {when}."
    return f"You've used all {quota} generations for today; they reset at {when}."


def remaining_quota(remaining: int, quota: int) -> str:
    """``2 of 5 generations left today; resets at 00:00 UTC``"""
    remaining = max(0, min(remaining, quota))
    noun = "generation" if quota == 1 else "generations"
    return f"{remaining} of {quota} {noun} left today; resets at {RESET_TIME}"


def guild_daily_cap(cap: int, resets_in: float) -> str:
    """The whole server used its daily allowance."""
    return (
        f"This server has used all {_plural(cap, 'generation')} it allows per day; "
        f"they reset at {RESET_TIME} (in {format_duration(resets_in)})."
    )


def jobs_in_flight(limit: int) -> str:
    """The member already has ``limit`` jobs waiting or running (same text as the fair queue's)."""
    if limit <= 0:
        return "You cannot start new jobs right now."
    jobs = "job" if limit == 1 else "jobs"
    return f"You already have {limit} {jobs} in progress; wait for one to finish."


def queue_full() -> str:
    """The bot's global waiting line is full (same text as the fair queue's)."""
    return "The queue is full — try again in a few minutes."


# --------------------------------------------------------------------------- refusals


def wrong_channel(channels: Sequence[str], *, command: str = "/animate") -> str:
    """``/animate works in <#1>, <#2>.`` — an ephemeral pointer to the right channels."""
    listed = list(channels[:MAX_LISTED_CHANNELS])
    more = len(channels) - len(listed)
    where = ", ".join(listed) + (f" and {more} more" if more > 0 else "")
    if not where:
        return f"{command} is not available in this channel."
    return f"{command} works in {where}."


def missing_role(role: str, *, command: str = "/animate") -> str:
    """``You need the <@&id> role to use /animate.``"""
    return f"You need the {role} role to use {command}."


def paused(message: str | None) -> str:
    """Generation is paused in this guild; shows the moderators' message if any."""
    text = clean_free_text(message)
    if text:
        return f"Generation is paused on this server: {text}"
    return "Generation is paused on this server for now; please try again later."


def banned(reason: str | None) -> str:
    """The member is banned from the bot in this guild."""
    text = clean_free_text(reason)
    base = "You are not allowed to use this bot on this server."
    return f"{base} Reason: {text}" if text else base


def dms_not_allowed() -> str:
    return "I don't work in direct messages; please use me in a server channel."


def others_image_not_allowed() -> str:
    return "On this server you can only animate your own images."


def not_moderator() -> str:
    return "Only moderators can do this (Manage Server permission or a moderator role)."


def guild_only() -> str:
    return "This only works in a server."


# --------------------------------------------------------------------------- option caps


def _listed(values: Sequence[str]) -> str:
    """``mp4`` / ``mp4 and webp`` / ``gif, mp4 and webp``."""
    items = list(values)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def above_cap(option: str, cap: int, asked: str) -> str:
    """``This server caps frames at 14 (you asked for 25).``"""
    return f"This server caps {option} at {cap} (you asked for {asked})."


def format_not_allowed(allowed: Sequence[str], asked: str) -> str:
    """``This server allows only mp4 and webp results (you asked for gif).``"""
    shown = asked if len(asked) <= 20 and asked.isprintable() else "another format"
    return f"This server allows only {_listed(allowed)} results (you asked for {shown})."


def clamped(option: str, value: int) -> str:
    """``Used 14 frames: this server now caps frames at 14.`` (an older result's options, lowered)"""
    return f"Used {value} {option}: this server now caps {option} at {value}."


def format_clamped(used: str, was: str, allowed: Sequence[str]) -> str:
    """``Made an mp4 instead of a gif: this server now allows only mp4 and webp results.``"""
    def article(word: str) -> str:
        return f"an {word}" if word[:1].lower() in "aeiou" or word.lower().startswith("mp") else f"a {word}"
    return f"Made {article(used)} instead of {article(was)}: this server now allows only {_listed(allowed)} results."


def extension_limit(done: int, limit: int) -> str:
    """An Extend past the server's limit of extensions of one animation."""
    if limit <= 0:
        return "This server does not allow extending animations."
    times = "once" if limit == 1 else f"{limit} times"
    return (f"This animation has been extended {_plural(done, 'time')} already; "
            f"this server allows extending an animation at most {times}.")
