"""Nothing kept per job outlives the job in the whole bot (issue 13, defect 2).

A long-lived bot must not keep every job's progress stream (previews included), status
follower, "status message deleted" flag or scheduler record for ever. ``JobService.memory_counts()``
names each per-job container, the Discord delivery's and the edit scheduler's included; after
delivered, failed and deleted-status-message jobs have ended, every count is back to idle.
"""

from __future__ import annotations

import pytest

from standins.wait import wait_until
from tests.animate.conftest import AnimateFactory, wait_job
from tests.animate.test_buttons_and_errors import animate, finished, job_id_of
from tests.animate.test_discord_faults import mentions_of, running

pytestmark = pytest.mark.timeout(90)


async def test_per_job_counts_return_to_idle_after_jobs_end(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.05)
    service, stand_in = env.service, env.stand_in
    idle = service.memory_counts()
    for name in ("progress_streams", "followers", "delivery_records", "scheduler_messages", "scheduler_channels",
                 "hub_subscriptions", "hub_buffered_prompts", "job_tasks", "job_attempts", "queue_reservations"):
        assert idle.get(name) == 0, (name, idle)

    # two delivered on their status messages
    first, second = await animate(env), await animate(env)
    delivered = [job_id_of(await finished(first)), job_id_of(await finished(second))]
    # one whose status message a moderator deleted while it ran: delivered in the channel
    third = await animate(env, steps=12)
    await third.wait_for(running, timeout=10)
    stand_in.messages.pop(int(third.original["id"]))  # type: ignore[index]
    [message, *_] = await wait_until(lambda: mentions_of(stand_in, stand_in.user.id), timeout=20,
                                     what="the result in the channel")
    delivered.append(message["embeds"][0]["footer"]["text"].split()[-1])
    # one that fails inside ComfyUI
    env.comfy[0].fail_at = "VHS_VideoCombine"
    fourth = await animate(env)
    await fourth.wait_for(lambda r: any(m["flags"] & 64 for m in r.followups), timeout=20)
    for job_id in delivered:
        await wait_job(service, job_id, "delivered")

    await wait_until(lambda: service.memory_counts() == idle, timeout=15, what="every per-job count back to idle",
                     describe=lambda: {k: v for k, v in service.memory_counts().items() if v != idle.get(k)})
