"""Member-facing texts: durations, plurals and safety of moderator-written text."""

from __future__ import annotations

import pytest

from bot.jobs.service import QUEUE_WORDING
from bot.moderation import messages


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "1 s"), (42, "42 s"), (41.3, "42 s"), (59.9, "1 min"), (180, "3 min"), (150, "3 min"),
     (3600, "1 h"), (3 * 3600 + 12 * 60, "3 h 12 min"), (3 * 3600 + 11 * 60 + 1, "3 h 12 min"),
     (3 * 86400, "3 d")],
)
def test_durations_round_up(seconds: float, text: str) -> None:
    assert messages.format_duration(seconds) == text


def test_exact_durations_for_settings() -> None:
    assert messages.format_duration(90, exact=True) == "1 min 30 s"
    assert messages.format_duration(3600, exact=True) == "1 h"
    assert messages.format_duration(86400 + 3600 + 61, exact=True) == "1 d 1 h"


def test_the_issue_wording() -> None:
    assert messages.cooldown(42) == "You can animate again in 42 s."
    assert messages.cooldown(170) == "You can animate again in 3 min."
    assert messages.daily_quota(5, 3 * 3600 + 12 * 60) == (
        "You've used all 5 generations for today; they reset at 00:00 UTC (in 3 h 12 min)."
    )
    assert messages.daily_quota(1, 60).startswith("You've used your 1 generation for today; it resets")
    assert messages.remaining_quota(2, 5) == "2 of 5 generations left today; resets at 00:00 UTC"
    assert messages.wrong_channel(["<#1>", "<#2>"]) == "/animate works in <#1>, <#2>."
    assert messages.missing_role("<@&7>") == "You need the <@&7> role to use /animate."


def test_long_channel_lists_are_shortened() -> None:
    text = messages.wrong_channel([f"<#{i}>" for i in range(30)])
    assert text.endswith("and 20 more.") and "<#10>" not in text


def test_fair_queue_uses_the_same_words() -> None:
    # The job service hands the fair queue its words from here; they must be these.
    assert QUEUE_WORDING.queue_full == messages.queue_full()
    for limit in (0, 1, 3):
        assert QUEUE_WORDING.in_flight(limit) == messages.jobs_in_flight(limit)


def test_moderator_text_cannot_ping_everyone_or_flood() -> None:
    text = messages.paused("back soon @everyone\n\nsee @here " + "x" * 1000)
    assert "@everyone" not in text and "@here" not in text and "\n" not in text
    assert len(text) < 400 and text.endswith("…")
    assert messages.banned(None) == "You are not allowed to use this bot on this server."
    assert messages.banned("spam").endswith("Reason: spam")
    assert "try again later" in messages.paused("   ")
