"""What to do with an image or a result, given the guild's safety mode and the verdict.

A pure function, :func:`decide`, so every case is a table row in a test. The rules:

* ``Mode.STRICT`` (the default for every guild): explicit refused everywhere.
* ``Mode.STANDARD``: explicit allowed only in channels Discord marks age-restricted (NSFW).
* ``Mode.OFF``: no detection.
* Always strict, whatever the mode: direct messages, and an image that is another member's
  (the caller passes ``forced_strict=True``; :func:`strict_forced` computes it).
* A suggestive input is allowed (the result check decides about the spoiler); a suggestive
  result is posted as a spoiler, except in an age-restricted channel under ``STANDARD``.
* No verdict (the detector is unavailable or the file could not be read) fails closed.

Effective mode = ``STRICT`` if ``forced_strict`` else the guild's mode.

| effective mode | channel        | clean | suggestive input | suggestive result | explicit input | explicit result | no verdict        |
|----------------|----------------|-------|------------------|-------------------|----------------|-----------------|-------------------|
| off            | any            | allow | allow            | allow             | allow          | allow           | allow             |
| strict         | any            | allow | allow            | allow_as_spoiler  | refuse         | withhold        | refuse / withhold |
| standard       | ordinary       | allow | allow            | allow_as_spoiler  | refuse         | withhold        | refuse / withhold |
| standard       | age-restricted | allow | allow            | allow             | allow          | allow           | refuse / withhold |

Strict treats every channel as an ordinary one, so a suggestive result is a spoiler there too.
"""

from __future__ import annotations

from enum import StrEnum

from bot.safety.verdict import Level, Verdict


class Mode(StrEnum):
    """A guild's safety mode (stored as its value)."""

    STRICT = "strict"
    STANDARD = "standard"
    OFF = "off"


DEFAULT_MODE = Mode.STRICT


class Stage(StrEnum):
    """What is being judged: the member's input image, or the generated result."""

    INPUT = "input"
    RESULT = "result"


class Decision(StrEnum):
    """``REFUSE`` is for an input (no job is started), ``WITHHOLD`` for a result (nothing is posted)."""

    ALLOW = "allow"
    ALLOW_AS_SPOILER = "allow_as_spoiler"
    REFUSE = "refuse"
    WITHHOLD = "withhold"


def strict_forced(*, direct_message: bool, others_image: bool) -> bool:
    """Whether strict applies whatever the guild's mode: in DMs, and on another member's image."""
    return direct_message or others_image


def effective_mode(mode: Mode, *, forced_strict: bool) -> Mode:
    """The mode that applies: ``STRICT`` when forced, else the guild's."""
    return Mode.STRICT if forced_strict else mode


def needs_check(mode: Mode, *, forced_strict: bool) -> bool:
    """Whether the detector must run (everything but an unforced ``OFF``)."""
    return effective_mode(mode, forced_strict=forced_strict) is not Mode.OFF


def decide(
    mode: Mode,
    verdict: Verdict | None,
    *,
    stage: Stage,
    age_restricted_channel: bool,
    forced_strict: bool,
) -> Decision:
    """Allow, allow as a spoiler, refuse (input) or withhold (result); see the module's table.

    ``verdict`` is ``None`` when nothing could be checked (detector unavailable, unreadable file):
    that refuses or withholds unless the effective mode is ``OFF``.
    ``age_restricted_channel`` is Discord's NSFW flag (always false in a DM).
    """
    mode = effective_mode(mode, forced_strict=forced_strict)
    if mode is Mode.OFF:
        return Decision.ALLOW
    blocked = Decision.REFUSE if stage is Stage.INPUT else Decision.WITHHOLD
    if verdict is None:
        return blocked
    adult_allowed = mode is Mode.STANDARD and age_restricted_channel
    if verdict.level is Level.EXPLICIT:
        return Decision.ALLOW if adult_allowed else blocked
    if verdict.level is Level.SUGGESTIVE and stage is Stage.RESULT and not adult_allowed:
        return Decision.ALLOW_AS_SPOILER
    return Decision.ALLOW
