"""Refused inputs through the whole bot (issue 16): before any GPU time, with the use given back;
always strict in direct messages and on another member's image; re-rolls judged again from the
stored input scores with the mode, thresholds and channel of the moment."""

from __future__ import annotations

import pytest

from bot.moderation.audit_text import SafetyActions
from bot.safety import messages
from bot.safety.messages import Rule
from standins.fake_safety import FakeSafetyDetector
from tests.animate.conftest import AnimateFactory, wait_job
from tests.animate.test_buttons_and_errors import job_id_of
from tests.moderation_discord.helpers import PERM_MANAGE_GUILD, member_with, mod
from tests.safety_discord.helpers import (
    CLEAN,
    EXPLICIT,
    SUGGESTIVE,
    animate_colour,
    colour_png,
    comfy_uploads,
    outcome,
    private_text,
    result_of,
)
from tests.storage.helpers import list_audit

pytestmark = pytest.mark.timeout(90)


async def test_an_explicit_input_is_refused_before_any_upload_and_the_use_is_given_back(
        animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "limits", daily_quota=1)

    record = await animate_colour(env, EXPLICIT)
    assert await outcome(record) == "refused"
    assert record.original is not None and record.original["content"] == messages.NOT_RUN  # neutral, public
    private = await private_text(record)
    assert private == messages.refused(Rule.STRICT)  # names the rule...
    assert "0.9" not in private and "BREAST" not in private  # ...never the scores
    assert comfy_uploads(env) == []  # no GPU time: ComfyUI never saw the image
    assert await env.service.recent_jobs(stand_in.user.id, stand_in.guild.id) == []  # nothing stored

    # the daily quota of 1 is still there: the refused request did not count
    clean = await animate_colour(env, CLEAN)
    assert await outcome(clean) == "delivered"
    assert len(comfy_uploads(env)) == 1

    refused = await list_audit(env.service.store, stand_in.guild.id, action=SafetyActions.REFUSED)
    assert len(refused) == 1 and refused[0].actor_id == stand_in.user.id
    assert refused[0].details["labels"] == [["FEMALE_BREAST_EXPOSED", 0.9]] and refused[0].details["rule"] == "strict"


async def test_direct_messages_are_always_strict(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(dev_guild_id=None, allow_dms=True)
    admin = member_with(env.stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    assert "safety mode strict → off" in await mod(env, admin, "safety", mode="off")  # the guild's mode...
    explicit = await animate_colour(env, EXPLICIT, dm=True)
    assert await outcome(explicit) == "refused"  # ...does not apply in DMs
    assert await private_text(explicit) == messages.refused(Rule.DIRECT_MESSAGE)
    suggestive = await animate_colour(env, SUGGESTIVE, dm=True)
    assert await outcome(suggestive) == "spoiler"


async def test_another_members_image_is_always_strict(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    adults = await stand_in.add_channel("adults-only", nsfw=True)
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "safety", mode="standard")
    await mod(env, admin, "others", allowed=True)
    bob = member_with(stand_in, "bob")
    attachment = stand_in.add_attachment("mine.png", colour_png(EXPLICIT), "image/png", channel=adults,
                                         width=320, height=192)
    alices = {"id": str(stand_in.snowflake()), "channel_id": str(adults.id), "content": "me",
              "author": stand_in.user.user_payload(), "attachments": [attachment], "embeds": [],
              "timestamp": "2024-01-01T00:00:00+00:00", "type": 0, "tts": False, "mention_everyone": False,
              "mentions": [], "mention_roles": [], "pinned": False}

    others = await stand_in.context_menu_message(None, adults, bob, "Animate image", alices)
    assert await outcome(others) == "refused"
    assert await private_text(others) == messages.refused(Rule.OTHERS_IMAGE)
    own = await stand_in.context_menu_message(None, adults, None, "Animate image", alices)
    assert await outcome(own) == "delivered"  # standard mode, age-restricted channel, her own image


async def test_a_reroll_is_judged_again_from_the_stored_input_scores(animate_bot: AnimateFactory) -> None:
    detector = FakeSafetyDetector.with_markers()
    env = await animate_bot(safety=detector)
    stand_in = env.stand_in
    adults = await stand_in.add_channel("adults-only", nsfw=True)
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "safety", mode="standard")
    first = await animate_colour(env, EXPLICIT, channel=adults)
    assert await outcome(first) == "delivered"
    message = result_of(first)
    assert message is not None
    job_id = job_id_of(message)
    await wait_job(env.service, job_id, "delivered")
    calls = len(detector.calls)

    await mod(env, admin, "safety", mode="strict")  # the mode of the moment applies to the re-roll
    reroll = await stand_in.click(message, f"animate:reroll:{job_id}")
    assert await outcome(reroll) == "refused"
    assert await private_text(reroll) == messages.refused(Rule.STRICT)
    assert len(detector.calls) == calls  # judged from the stored scores: the detector did not run

    await mod(env, admin, "safety", explicit=0.95)  # 0.9 is now only suggestive
    again = await stand_in.click(message, f"animate:reroll:{job_id}")
    assert await outcome(again) == "spoiler"
    assert len(detector.calls) == calls + 2  # only the new result's two frames
