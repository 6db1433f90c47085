"""The wait estimate a member reads (issue 18, part 3), through the Discord stand-in and the ComfyUI test server.

The test server's sampler takes ``MPX_STEP`` seconds per step per frame-megapixel (so a run's time
grows with its frames, as SVD's does) and its first run loads the model for ``LOAD`` seconds (a
cold run). Until three warm runs are known every waiting status says "estimating..."; then a job
behind a 25-frame run, and one behind that run and a 4-frame one, are told a wait that is within
50 % of the wait they really have, measured from the moment the member sees it to the moment the
job starts on the server; ``/queue`` shows it too.
"""

from __future__ import annotations

import re

import pytest

from standins.discord_server.records import InteractionRecord
from tests.animate.conftest import AnimateFactory, wait_job
from tests.animate.test_buttons_and_errors import animate, ephemeral_text, finished

pytestmark = pytest.mark.timeout(120)

MPX_STEP = 0.03  # seconds per sampler step per frame-megapixel (a 1024x576 frame is 0.59 MP)
LOAD = 1.0  # seconds the first run spends loading the model
STEPS = 8
SHOWN = re.compile(r"starts in (?:about (\d+) (s|min)|a moment)")


def status(record: InteractionRecord) -> str:
    return str((record.original or {}).get("content") or "")


def shown_wait(text: str) -> float | None:
    """The wait a status shows, in seconds (None when it shows none)."""
    found = SHOWN.search(text)
    if found is None:
        return None
    if found.group(1) is None:
        return 0.0
    return float(found.group(1)) * (60 if found.group(2) == "min" else 1)


async def test_estimating_first_then_a_wait_within_half_of_the_real_one(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.0, max_jobs_per_member=5)
    server = env.comfy[0]
    server.mpx_step_time, server.load_time = MPX_STEP, LOAD
    clock = env.service.ctx.clock

    # Four runs to learn from: the first is cold (the model loads), then three warm ones.
    learning = []
    for frames in (4, 12, 4, 12):
        record = await animate(env, steps=STEPS, frames=frames)
        await record.wait_for(lambda r: status(r) != "", timeout=10)
        learning.append(record)
    for record in learning:
        await finished(record, timeout=30)
    told = [str(e.get("content")) for r in learning for e in r.edits if "ahead" in str(e.get("content"))]
    assert told and all("estimating..." in text for text in told), told  # while no server had warm runs
    assert not any(SHOWN.search(text) for r in learning for e in r.edits for text in [str(e.get("content"))])
    assert env.service.estimator.warm_runs("gpu-1", "svd_img2vid") == 3  # the cold first run is not among them

    # A 25-frame job runs; one of 4 frames waits in the server's queue behind it, another in the bot's line.
    running = await animate(env, steps=STEPS, frames=25)
    await running.wait_for(lambda r: "step" in status(r), timeout=10)
    seen: dict[str, tuple[float, float, str]] = {}  # job -> (when seen, wait shown, text)
    waiting = []
    for _ in range(2):
        record = await animate(env, steps=STEPS, frames=4)
        await record.wait_for(lambda r: shown_wait(status(r)) is not None, timeout=10)
        text = status(record)
        job_id = re.search(r"animate:cancel:([\w-]+)", str(record.original)).group(1)  # type: ignore[union-attr]
        seen[job_id] = (clock.now(), shown_wait(text) or 0.0, text)
        waiting.append(record)
    [first_text, second_text] = [text for _, _, text in seen.values()]
    assert "1 job ahead" in first_text and "2 jobs ahead" in second_text, (first_text, second_text)

    mine = await ephemeral_text(await env.stand_in.slash(None, None, None, "queue"))
    assert any(SHOWN.search(line) and "← you" in line for line in mine.splitlines()), mine

    for job_id, (at, shown, text) in seen.items():
        job = await wait_job(env.service, job_id, "running", "delivering", "delivered", timeout=30)
        assert job.started_at is not None
        real = job.started_at - at
        assert real > 1.0, (text, real)  # a wait worth telling
        assert abs(shown - real) <= 0.5 * real, f"{text!r}: shown {shown:g} s, real {real:.2f} s"
    for record in [running, *waiting]:
        await finished(record, timeout=30)
