"""A guild's content-safety settings as the gate applies them.

Owns the resolution of a guild's stored settings into its mode and thresholds (the bot's
defaults where the guild set none or stored invalid ones), the rule a refusal or withheld result
names, and the re-judging of an earlier job's stored input scores with the thresholds of now.
Used by :class:`bot.safety.gate.SafetyGate` (which re-exports these names). No discord here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.moderation.models import GuildSettings
from bot.safety.messages import Rule
from bot.safety.policy import Mode
from bot.safety.verdict import Detection, Detections, Thresholds, Verdict, judge

log = logging.getLogger(__name__)

__all__ = ["GuildSafety", "SafetySettingsSource", "guild_safety", "rule_for", "stored_verdict"]


@dataclass(frozen=True)
class GuildSafety:
    """A guild's mode and thresholds (the bot's defaults where the guild set none)."""

    mode: Mode = Mode.STRICT
    thresholds: Thresholds = field(default_factory=Thresholds)


class SafetySettingsSource(Protocol):
    """Where a guild's mode and thresholds are read (:class:`bot.storage.guilds.GuildStore`)."""

    async def get_settings(self, guild_id: int) -> GuildSettings: ...


def guild_safety(settings: GuildSettings) -> GuildSafety:
    """A guild's :class:`GuildSafety` from its settings (stored thresholds are validated when set)."""
    defaults = Thresholds()
    try:
        thresholds = Thresholds(
            suggestive=settings.safety_suggestive if settings.safety_suggestive is not None else defaults.suggestive,
            explicit=settings.safety_explicit if settings.safety_explicit is not None else defaults.explicit,
        )
    except ValueError as exc:
        log.warning("a guild's stored safety thresholds are not valid (%s); using the defaults", exc)
        thresholds = defaults
    return GuildSafety(mode=Mode(settings.safety_mode), thresholds=thresholds)


def rule_for(mode: Mode, *, direct_message: bool, others_image: bool, verdict: Verdict | None,
             unavailable: bool) -> Rule:
    """The rule a refusal or withheld result names (``mode``: the guild's, not the effective one)."""
    if verdict is None:
        return Rule.UNAVAILABLE if unavailable else Rule.UNCHECKED
    if direct_message:
        return Rule.DIRECT_MESSAGE
    if others_image:
        return Rule.OTHERS_IMAGE
    return Rule.STRICT if mode is Mode.STRICT else Rule.ORDINARY_CHANNEL


def stored_verdict(stored: Mapping[str, Any] | None, thresholds: Thresholds) -> Verdict | None:
    """The stored input scores judged again with ``thresholds`` (None when there are none)."""
    scores = (stored or {}).get("input_scores")
    if not isinstance(scores, list):
        return None
    try:
        items = tuple(Detection(str(label), float(score)) for label, score in scores)
    except (TypeError, ValueError) as exc:
        log.info("stored input scores are not usable (%s); checking the image again", exc)
        return None
    return judge(Detections(items=items, width=0, height=0), thresholds)
