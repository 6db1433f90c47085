"""A result bigger than the channel's upload limit is re-encoded to an MP4 that fits, and the
result says so (format, frames, size and why)."""

from __future__ import annotations

import io
import os
from collections.abc import Awaitable, Callable

import av
import pytest
from PIL import Image

from tests.animate.conftest import AnimateFactory, png_bytes, wait_job
from tests.animate.test_animate_flow import attachment_bytes, result_message
from standins.comfy_server import ComfyTestServer

pytestmark = pytest.mark.timeout(90)

LIMIT = 1536 * 1024  # a channel whose uploads stop at 1.5 MB


def noisy_png(width: int = 1024, height: int = 576) -> bytes:
    """Random pixels: a GIF of them compresses badly, so the full-size result is several MB."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, format="PNG")
    return buf.getvalue()


async def test_a_result_over_the_upload_limit_arrives_as_an_mp4_that_fits(
    animate_bot: AnimateFactory, comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]]
) -> None:
    full = await comfy_server_factory(step_time=0.0, full_size=True)
    env = await animate_bot(comfy=[full])
    stand_in = env.stand_in
    stand_in.upload_limit = LIMIT  # sent to the bot as the interaction's attachment_size_limit
    record = await stand_in.slash(None, None, None, "animate", options={"steps": 2, "frames": 8, "format": "gif"},
                                  attachments={"image": ("noise.png", noisy_png(), "image/png")})
    await record.wait_for(lambda r: result_message(r) is not None, timeout=60)
    message = result_message(record)
    assert message is not None
    original = max((p for p in full.output_dir.rglob("*.gif")), key=lambda p: p.stat().st_size)
    assert original.stat().st_size > LIMIT  # what ComfyUI made would not fit
    video = next(a for a in message["attachments"] if a["filename"].startswith("animation_"))
    assert video["filename"].endswith(".mp4")
    data = attachment_bytes(stand_in, video)
    total = sum(len(attachment_bytes(stand_in, a)) for a in message["attachments"])
    assert total <= LIMIT
    with av.open(io.BytesIO(data)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 8
    note = message["embeds"][0]["description"]
    assert "MP4 · 8 frames" in note and "re-encoded to fit this channel's 1.5 MB upload limit" in note
    # an MP4 gets a poster (a JPEG of the prepared input), at most an eighth of the limit
    poster = next(a for a in message["attachments"] if a["filename"].startswith("poster_"))
    assert [a["filename"] for a in message["attachments"]] == [video["filename"], poster["filename"]]
    assert poster["filename"].endswith(".jpg") and len(attachment_bytes(stand_in, poster)) <= LIMIT // 8
    assert message["embeds"][0]["image"]["url"] == f"attachment://{poster['filename']}"


async def test_a_poster_that_would_crowd_out_the_video_is_left_out(
    animate_bot: AnimateFactory, comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]]
) -> None:
    full = await comfy_server_factory(step_time=0.0, full_size=True)
    env = await animate_bot(comfy=[full])
    env.stand_in.upload_limit = 512 * 1024  # an eighth is 64 KB: less than a JPEG of random pixels (about 80 KB)
    record = await env.stand_in.slash(None, None, None, "animate", options={"steps": 2, "frames": 4, "format": "gif"},
                                      attachments={"image": ("noise.png", noisy_png(), "image/png")})
    await record.wait_for(lambda r: result_message(r) is not None, timeout=60)
    message = result_message(record)
    assert message is not None
    assert [a["filename"].split("_")[0] for a in message["attachments"]] == ["animation"]
    assert "image" not in message["embeds"][0]


async def test_a_413_gets_one_smaller_try_without_the_poster(animate_bot: AnimateFactory) -> None:
    """Discord may take less than the interaction announced: after a 413 the bot posts once more,
    smaller and without the poster, instead of retrying the same upload."""
    env = await animate_bot()
    stand_in = env.stand_in
    too_big = stand_in.add_fault("PATCH", "/webhooks/*/*/messages/*", 413, times=1, with_files=True,
                                 body={"message": "Request entity too large", "code": 40005})
    record = await stand_in.slash(None, None, None, "animate", options={"steps": 2, "frames": 3, "format": "mp4"},
                                  attachments={"image": ("cat.png", png_bytes(), "image/png")})
    await record.wait_for(lambda r: result_message(r) is not None, timeout=30)
    message = result_message(record)
    assert message is not None and too_big.hits == 1
    refused = next(r for r in stand_in.requests if r.status == 413)
    assert any(name.startswith("poster_") for _f, name, _d in refused.files)  # the first try had one
    assert [a["filename"].split("_")[0] for a in message["attachments"]] == ["animation"]  # no poster this time
    assert "image" not in message["embeds"][0]
    await wait_job(env.service, message["embeds"][0]["footer"]["text"].split()[-1], "delivered")
