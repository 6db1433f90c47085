"""/animate end to end through the Discord stand-in and the ComfyUI test server."""

from __future__ import annotations

import io
import re
from typing import Any

import av
import pytest
from PIL import Image

from tests.animate.conftest import AnimateFactory, png_bytes, wait_job
from standins.discord_server import DiscordStandIn, InteractionRecord, message_text

STEPS = 10


def step_numbers(record: InteractionRecord) -> list[int]:
    out = []
    for edit in record.edits:
        match = re.search(r"step (\d+)/(\d+)", str(edit.get("content") or ""))
        if match:
            out.append(int(match.group(1)))
    return out


def result_message(record: InteractionRecord) -> dict[str, Any] | None:
    original = record.original
    if original and any(a["filename"].startswith("animation_") for a in original.get("attachments", [])):
        return original
    return None


def attachment_bytes(stand_in: DiscordStandIn, attachment: dict[str, Any]) -> bytes:
    path = attachment["url"].split("/cdn/", 1)[1]
    return stand_in.attachments[path][0]


def first_frame(data: bytes) -> Image.Image:
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0)).to_image().convert("RGB")


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or [] for c in row["components"]]


async def test_animate_png_posts_progress_then_a_video_with_seed_and_buttons(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.3)  # long enough to show steps in two of Discord's 2 s windows
    stand_in = env.stand_in
    record = await stand_in.slash(None, None, None, "animate", options={"steps": STEPS, "frames": 4},
                                  attachments={"image": ("cat.png", png_bytes(), "image/png")})
    await record.wait_ack(timeout=3)
    assert record.ack_type == 5 and not record.ephemeral and record.ack_delay is not None and record.ack_delay < 3
    await record.wait_for(lambda r: result_message(r) is not None, timeout=20)
    message = result_message(record)
    assert message is not None
    steps = step_numbers(record)
    assert steps and steps == sorted(steps) and len(set(steps)) >= 2, steps
    job = (await env.service.recent_jobs(stand_in.user.id, stand_in.guild.id))[0]
    text = message_text(message)
    assert str(job.options["seed"]) in text and "seed" in text
    # a GIF is shown inline, animated, first frame first: no poster besides it
    assert "image" not in message["embeds"][0]
    assert [a["filename"].split("_")[0] for a in message["attachments"]] == ["animation"]
    assert set(custom_ids(message)) == {f"animate:{a}:{job.id}" for a in ("reroll", "more", "less", "extend", "delete")}
    video = next(a for a in message["attachments"] if a["filename"].startswith("animation_"))
    frame = first_frame(attachment_bytes(stand_in, video))
    # the left half is red-ish and the right half blue-ish, like the PNG
    w, h = frame.size
    left = frame.getpixel((w // 4, h // 2))
    right = frame.getpixel((3 * w // 4, h // 2))
    assert left[0] > left[2] and right[2] > right[0], (left, right)
    job = await wait_job(env.service, job.id, "delivered")
    assert job.delivered_message_id == int(message["id"])


@pytest.mark.timeout(30)
async def test_a_slow_image_download_does_not_delay_the_ack(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    env.stand_in.cdn_delay = 3.2  # Discord's CDN is slow today
    record = await env.stand_in.slash(None, None, None, "animate", options={"steps": 4, "frames": 2},
                                      attachments={"image": ("cat.png", png_bytes(), "image/png")})
    await record.wait_ack(timeout=3)
    assert record.ack_type == 5 and record.ack_delay is not None and record.ack_delay < 1
    await record.wait_for(lambda r: result_message(r) is not None, timeout=20)
