"""``loop = boomerang`` through the Discord stand-in and the ComfyUI test server: VideoHelperSuite's
``pingpong`` on the VHS workflow, the bot's own PyAV re-encode on the core-nodes workflow, the same
2n-2 frames in the same order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.media.clips import read_clip
from standins.discord_server import message_text
from tests.animate.conftest import AnimateEnv, AnimateFactory
from tests.animate.test_animate_flow import attachment_bytes, result_message

pytestmark = pytest.mark.timeout(90)

FRAMES = 5


def _textured_png() -> bytes:
    """Rings around the middle: a zoom changes every frame (flat halves would not)."""
    import io

    from PIL import Image
    y, x = np.mgrid[0:192, 0:320]
    r = np.hypot(x - 160, y - 96)
    grey = (127 + 127 * np.sin(r / 4)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.stack([grey, 255 - grey, grey // 2], axis=-1), mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


async def _boomerang(env: AnimateEnv, tmp_path: Path, workflow: str) -> list[Any]:
    options = {"steps": 2, "frames": FRAMES, "loop": "boomerang", "format": "mp4", "motion": 255, "seed": 7, "workflow": workflow}
    record = await env.stand_in.slash(None, None, None, "animate", options=options,
                                      attachments={"image": ("rings.png", _textured_png(), "image/png")})
    await record.wait_for(lambda r: result_message(r) is not None, timeout=40)
    message = result_message(record)
    assert message is not None
    video = next(a for a in message["attachments"] if a["filename"].startswith("animation_"))
    path = tmp_path / f"{workflow}-{video['filename']}"
    path.write_bytes(attachment_bytes(env.stand_in, video))
    return [f.astype(np.float64) for f in read_clip(path).frames]


def _order(frames: list[Any], n: int) -> list[int]:
    """Each frame as the index of the nearest of the first ``n`` (lossy encodes: nearest, not equal)."""
    return [min(range(n), key=lambda i: float(((frames[i] - f) ** 2).mean())) for f in frames]


async def test_boomerang_on_both_workflows_gives_the_same_symmetric_2n_minus_2_frames(
    animate_bot: AnimateFactory, tmp_path: Path
) -> None:
    env = await animate_bot()
    vhs = await _boomerang(env, tmp_path, "svd_img2vid")
    core = await _boomerang(env, tmp_path, "svd_img2vid_core")
    n = FRAMES
    expected = [0, 1, 2, 3, 4, 3, 2, 1]  # 0..n-1 then n-2..1: symmetric about frame n-1
    for frames in (vhs, core):
        assert len(frames) == 2 * n - 2
        assert _order(frames, n) == expected
    # the PyAV order is VHS's order: each core frame is nearest the VHS frame at the same place
    assert [min(range(len(vhs)), key=lambda i: float(((vhs[i] - f) ** 2).mean())) for f in core][:n] == list(range(n))
    assert not env.stand_in.violations


async def test_boomerang_is_listed_in_help(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    record = await env.stand_in.slash(None, None, None, "help")
    text = message_text(await record.wait_message())
    assert "`loop`" in text and "Choices: none, boomerang" in text
