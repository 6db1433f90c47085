"""Limits through the stand-in: cooldown, daily quota, jobs in flight, exempt roles, and a flood."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.animate.conftest import AnimateFactory, wait_job
from standins.discord_server import InteractionRecord, message_text
from standins.discord_server.records import DEFERRED_CHANNEL_MESSAGE
from tests.moderation_discord.helpers import PERM_MANAGE_GUILD, add_role, animate, member_with, mod, refusal
from tests.moderation_discord.test_settings import delivered
from tests.storage.helpers import usage_today


async def admin_and_exempt_member(env: Any) -> tuple[Any, Any]:
    """An admin (Manage Server) and ``star``, who holds the role the admin made exempt."""
    vip = add_role(env.stand_in, "vip")
    admin = member_with(env.stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    star = member_with(env.stand_in, "star", roles=[vip])
    await mod(env, admin, "exempt", role1=vip)
    return admin, star


def accepted(record: InteractionRecord) -> bool:
    return record.ack_type == DEFERRED_CHANNEL_MESSAGE and not record.ephemeral


async def test_cooldown_quota_and_in_flight_refuse_with_the_time_to_wait_but_not_an_exempt_role(
    animate_bot: AnimateFactory,
) -> None:
    env = await animate_bot(step_time=0.2)
    stand_in = env.stand_in
    admin, star = await admin_and_exempt_member(env)
    bob = member_with(stand_in, "bob")
    await mod(env, admin, "limits", cooldown=90.0, daily_quota=2, jobs_in_flight=1)

    # in flight: one running job, the next is refused until it ends
    first = await animate(env, None, steps=10)
    await first.wait_ack()
    assert accepted(first)
    await first.wait_for(lambda r: any("left today" in message_text(m) for m in r.followups), timeout=5)
    note = next(m for m in first.followups if "left today" in message_text(m))
    assert message_text(note) == "1 of 2 generations left today; resets at 00:00 UTC."
    # a message of its own, only for the member: not the public status message it would replace
    # if it were sent while that one still showed "thinking..."
    assert note["flags"] & 64 and first.original is not None and note["id"] != first.original["id"]
    assert "left today" not in message_text(first.original)
    busy = await refusal(await animate(env, None))
    assert "You already have 1 job in progress; wait for one to finish." == busy

    # cooldown: with room in flight, the next request still comes too soon (90 s cooldown, rounded up)
    await mod(env, admin, "limits", jobs_in_flight=3)
    assert await refusal(await animate(env, None)) == "You can animate again in 2 min."

    # quota: no cooldown now; bob uses his 2 generations, the third is refused until 00:00 UTC
    await mod(env, admin, "limits", clear="cooldown")
    for _ in range(2):
        record = await animate(env, bob, steps=2)
        await record.wait_ack()
        assert accepted(record)
    over = await refusal(await animate(env, bob))
    assert "You've used all 2 generations for today; they reset at 00:00 UTC (in " in over

    # an exempt role skips cooldown, quota and in-flight
    await mod(env, admin, "limits", cooldown=600.0, jobs_in_flight=1)
    records = [await animate(env, star, steps=2) for _ in range(4)]
    for record in records:
        await record.wait_ack()
        assert accepted(record), message_text(record.original or {})
    for record in records:
        await delivered(record)
    assert await usage_today(env.service.store, stand_in.guild.id, star.id) == 4


@pytest.mark.timeout(60)
async def test_a_hundred_animates_in_ten_seconds_from_one_member(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.05)
    stand_in = env.stand_in
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    others = [member_with(stand_in, f"member{i}") for i in range(3)]
    await mod(env, admin, "limits", daily_quota=4, jobs_in_flight=2)
    flooder = stand_in.user

    records: list[InteractionRecord] = []
    other_records: list[InteractionRecord] = []
    for i in range(100):  # 100 in ~5 s (faster than the 10 s asked)
        records.append(await animate(env, flooder, steps=3))
        if i in (10, 40, 70):
            other_records.append(await animate(env, others[i // 30], steps=3))
        await asyncio.sleep(0.05)
    for record in records + other_records:
        ack = await record.wait_ack(timeout=3)
        assert ack is not None and record.ack_delay is not None and record.ack_delay < 3.0

    for record in other_records:  # other members' jobs run
        await delivered(record, timeout=30)
    admitted = [r for r in records if accepted(r)]
    refused = [r for r in records if not accepted(r)]
    assert 2 <= len(admitted) <= 4
    for record in refused:
        text = message_text(record.original or {})
        assert ("in progress" in text or "generations for today" in text), text
    jobs = await env.service.store.jobs.for_user(flooder.id, stand_in.guild.id, limit=200)
    assert len(jobs) == len(admitted)  # only what the limits allow was queued
    assert await usage_today(env.service.store, stand_in.guild.id, flooder.id) == len(jobs)  # refused ones refunded
    for job in jobs:
        await wait_job(env.service, job.id, "delivered", timeout=30)
    assert not stand_in.violations  # no late ack, no second ack, nothing over Discord's limits


async def test_the_server_daily_cap_counts_every_member_and_holds_even_for_an_exempt_role(
    animate_bot: AnimateFactory,
) -> None:
    env = await animate_bot(step_time=0.01)
    stand_in = env.stand_in
    admin, star = await admin_and_exempt_member(env)
    members = [member_with(stand_in, f"member{i}") for i in range(3)]
    await mod(env, admin, "limits", server_daily_cap=2)

    for member in members[:2]:  # two members use the server's two generations
        record = await animate(env, member, steps=2)
        await record.wait_ack()
        assert accepted(record)
        await delivered(record)
    over = await refusal(await animate(env, members[2]))  # a third member who has not animated today
    assert "This server has used all 2 generations it allows per day; they reset at 00:00 UTC (in " in over
    # the cap is the server's budget: exempt roles skip the per-member limits only (README)
    assert "This server has used all 2 generations" in await refusal(await animate(env, star))

    await mod(env, admin, "limits", clear="server daily cap")  # lifting the cap lets them in
    for member in (members[2], star):
        lifted = await animate(env, member, steps=2)
        await lifted.wait_ack()
        assert accepted(lifted)
        await delivered(lifted)
    assert await usage_today(env.service.store, stand_in.guild.id, members[2].id) == 1  # the refusal was not counted


@pytest.mark.timeout(60)
async def test_a_job_whose_image_is_still_downloading_counts_as_in_flight(animate_bot: AnimateFactory) -> None:
    """Two admitted jobs whose images are still being fetched from Discord's CDN count against
    the in-flight limit: a third /animate is refused privately at once, not deferred publicly
    and failed later ("I couldn't start this animation")."""
    env = await animate_bot(max_jobs_per_member=2)
    stand_in = env.stand_in
    downloads = [stand_in.hold("GET", "/cdn/*"), stand_in.hold("GET", "/cdn/*")]
    first, second = await animate(env, steps=2), await animate(env, steps=2)
    for record, download in zip((first, second), downloads):
        await download.wait_held()  # admitted and deferred; its image is not downloaded yet
        assert accepted(record)

    third = await animate(env)
    assert await refusal(third) == "You already have 2 jobs in progress; wait for one to finish."
    assert env.service.in_flight(stand_in.user.id) == 2

    for download in downloads:
        download.release()
    for record in (first, second):
        await delivered(record)
    assert len(await env.service.store.jobs.for_user(stand_in.user.id, stand_in.guild.id, limit=10)) == 2
    assert env.service.memory_counts()["queue_reservations"] == 0
    assert not stand_in.violations
