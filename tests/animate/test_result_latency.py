"""The result is not held back: the final edit skips the bot's own pacing, an MP4's poster is ready
before the result (made from the prepared input), and Discord's limits are still kept."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from bot.discord.edit_scheduler import EditPacing
from tests.animate.conftest import AnimateFactory, png_bytes, wait_job
from tests.animate.test_animate_flow import attachment_bytes, result_message

# The channel's budget allows one progress edit every 30 s: a result waiting for it would be late.
TIGHT_CHANNEL = EditPacing(running_interval=0.05, waiting_interval=0.2, channel_edits=1, channel_window=30.0)


@pytest.mark.timeout(30)
async def test_the_result_skips_the_channel_budget_and_carries_a_poster_of_the_input(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(pacing=TIGHT_CHANNEL, step_time=0.05)
    stand_in = env.stand_in
    start = time.monotonic()
    record = await stand_in.slash(None, None, None, "animate", options={"steps": 10, "frames": 4, "format": "mp4"},
                                  attachments={"image": ("cat.png", png_bytes(), "image/png")})
    await record.wait_for(lambda r: result_message(r) is not None, timeout=10)
    assert time.monotonic() - start < 10  # not after the 30 s channel window
    message = result_message(record)
    assert message is not None
    progress = [e for e in record.edits if "animation is ready" not in str(e.get("content"))]
    assert len(progress) == 1  # the channel's budget held the other progress edits back
    poster = next(a for a in message["attachments"] if a["filename"].startswith("poster_"))
    assert poster["filename"].endswith(".jpg") and message["embeds"][0]["image"]["url"] == f"attachment://{poster['filename']}"
    image = Image.open(io.BytesIO(attachment_bytes(stand_in, poster)))
    # made from the prepared input (1024x576, red left half, blue right half), not from the small result
    assert image.format == "JPEG" and image.size == (512, 288)
    left, right = image.getpixel((128, 144)), image.getpixel((384, 144))
    assert left[0] > left[2] and right[2] > right[0]
    job_id = message["embeds"][0]["footer"]["text"].split()[-1]
    await wait_job(env.service, job_id, "delivered")
    assert env.delivery.per_job_counts()["posters"] == 0
    assert stand_in.rate_limit_hits == []
