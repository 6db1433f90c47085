"""Direct messages through the stand-in: off by default (Discord hides the commands there, and a
DM that arrives anyway is refused), and with ALLOW_DMS=true a member animates in their DMs."""

from __future__ import annotations

import pytest

from tests.animate.conftest import AnimateFactory, png_bytes, wait_job
from tests.animate.test_animate_flow import attachment_bytes, result_message
from tests.moderation_discord.helpers import refusal

pytestmark = pytest.mark.timeout(60)


def synced(env: object, name: str) -> dict:  # type: ignore[type-arg]
    return env.stand_in.find_command(name, None)  # type: ignore[attr-defined,no-any-return]


async def test_dms_are_off_by_default_and_a_dm_that_arrives_anyway_is_refused(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(dev_guild_id=None)  # global commands: the only ones Discord offers in DMs
    assert synced(env, "animate")["dm_permission"] is False  # Discord does not show it in DMs
    assert env.stand_in.find_command("Animate image", None, ctype=3)["dm_permission"] is False
    record = await env.stand_in.slash(None, None, None, "animate", options={"steps": 2},
                                      attachments={"image": ("cat.png", png_bytes(), "image/png")}, dm=True)
    assert await refusal(record) == "I don't work in direct messages; please use me in a server channel."
    assert not await env.service.store.jobs.for_user(env.stand_in.user.id, None, limit=5)


async def test_with_allow_dms_a_member_animates_in_their_direct_messages(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(dev_guild_id=None, allow_dms=True)
    stand_in = env.stand_in
    assert synced(env, "animate")["dm_permission"] is True
    record = await stand_in.slash(None, None, None, "animate", options={"steps": 2, "frames": 3},
                                  attachments={"image": ("cat.png", png_bytes(), "image/png")}, dm=True)
    await record.wait_for(lambda r: result_message(r) is not None, timeout=30)
    message = result_message(record)
    assert message is not None and not record.ephemeral
    assert message["channel_id"] == str(stand_in.dm_channel().id) and "guild_id" not in message
    video = next(a for a in message["attachments"] if a["filename"].startswith("animation_"))
    assert len(attachment_bytes(stand_in, video)) > 0
    jobs = await env.service.store.jobs.for_user(stand_in.user.id, None, limit=5)
    assert len(jobs) == 1 and jobs[0].guild_id is None
    await wait_job(env.service, jobs[0].id, "delivered")
    # /mod makes no sense without a server: it is not offered in DMs
    assert synced(env, "mod")["dm_permission"] is False
