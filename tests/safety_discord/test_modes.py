"""Each safety mode in an ordinary and an age-restricted channel, through the whole bot (issue 16).

An explicit (magenta), a suggestive (orange) and a clean (grey) image are animated in ``#general``
and in an age-restricted channel, under each mode a Manage Server member sets with ``/mod safety``.
"""

from __future__ import annotations

import pytest

from standins.discord_server import message_text
from standins.fake_safety import FakeSafetyDetector
from standins.wait import wait_until
from tests.animate.conftest import AnimateFactory
from tests.moderation_discord.helpers import PERM_MANAGE_GUILD, member_with, mod
from tests.safety_discord.helpers import CLEAN, EXPLICIT, SUGGESTIVE, animate_colour, outcome, video_attachment

pytestmark = pytest.mark.timeout(120)

#: mode -> (image, channel is age-restricted) -> what the member sees
EXPECTED = {
    "strict": {("explicit", False): "refused", ("explicit", True): "refused",
               ("suggestive", False): "spoiler", ("suggestive", True): "spoiler",
               ("clean", False): "delivered", ("clean", True): "delivered"},
    "standard": {("explicit", False): "refused", ("explicit", True): "delivered",
                 ("suggestive", False): "spoiler", ("suggestive", True): "delivered",
                 ("clean", False): "delivered", ("clean", True): "delivered"},
    "off": {("explicit", False): "delivered", ("explicit", True): "delivered",
            ("suggestive", False): "delivered", ("suggestive", True): "delivered",
            ("clean", False): "delivered", ("clean", True): "delivered"},
}
COLOURS = {"explicit": EXPLICIT, "suggestive": SUGGESTIVE, "clean": CLEAN}


@pytest.mark.parametrize("mode", ["strict", "standard", "off"])
async def test_each_mode_in_an_ordinary_and_an_age_restricted_channel(animate_bot: AnimateFactory, mode: str) -> None:
    detector = FakeSafetyDetector.with_markers()
    env = await animate_bot(safety=detector)
    stand_in = env.stand_in
    adults = await stand_in.add_channel("adults-only", nsfw=True)
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    if mode != "strict":  # strict is every guild's default
        assert "safety mode strict →" in await mod(env, admin, "safety", mode=mode)

    seen = {}
    for image, colour in COLOURS.items():
        for nsfw, channel in ((False, stand_in.channel), (True, adults)):
            record = await animate_colour(env, colour, channel=channel)
            seen[(image, nsfw)] = await outcome(record)
            if seen[(image, nsfw)] == "spoiler":
                message = record.original or {}
                assert not any(e.get("image") for e in message.get("embeds", [])), "no poster on a spoiler"
                assert [a["filename"] for a in message["attachments"]] == [video_attachment(message)["filename"]]  # type: ignore[index]
                assert "your animation is ready" in message_text(message)
    assert seen == EXPECTED[mode]
    if mode == "off":
        assert detector.calls == []  # no detection at all
    else:
        # every input was checked once, and every result that ran on three sampled frames
        ran = sum(1 for result in seen.values() if result != "refused")
        assert len(detector.calls) == len(seen) + 2 * ran  # 2 frames each: all of them are sampled


async def test_the_channels_age_restriction_is_read_again_when_the_result_is_posted(
        animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.3)
    stand_in = env.stand_in
    adults = await stand_in.add_channel("adults-only", nsfw=True)
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "safety", mode="standard")
    record = await animate_colour(env, EXPLICIT, channel=adults)  # allowed: the channel is age-restricted
    await wait_until(lambda: env.service.recent_jobs(stand_in.user.id, stand_in.guild.id, limit=1), timeout=10,
                     what="the job to be stored")
    await stand_in.set_nsfw(adults, False)  # a moderator unticks "age-restricted" while it runs
    assert await outcome(record) == "withheld"
    assert [m for m in stand_in.channel_messages(adults) if video_attachment(m)] == []
