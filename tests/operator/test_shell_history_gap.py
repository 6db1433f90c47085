"""``python -m bot animate`` waits for a history entry written seconds after ``execution_success``
(issue 13, defect 5): ComfyUI with ``--disable-smart-memory`` unloads its models between the two."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from PIL import Image

from bot.tools.shell_animate import run_animate
from standins.comfy_server.server import ComfyTestServer

from .helpers import settings_for
from .test_shell_animate import make_image

pytestmark = pytest.mark.timeout(60)


async def test_shell_animate_waits_out_the_gap_before_history(
    comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]], tmp_path: Path
) -> None:
    server = await comfy_server_factory()
    server.history_delay = 1.3  # longer than the old 20 x 50 ms
    make_image(tmp_path / "img.png")  # distinct shapes: frames differ, the GIF keeps all four
    out, err = io.StringIO(), io.StringIO()
    settings = settings_for(tmp_path, [("gpu-box", server.url)])
    args = argparse.Namespace(image=str(tmp_path / "img.png"), out=str(tmp_path / "o.gif"), workflow=None,
                              server=None, option=["steps=2", "frames=4"])
    code = await asyncio.to_thread(run_animate, settings, args, out=out, err=err)
    assert code == 0, err.getvalue()
    assert out.getvalue().startswith(f"wrote {tmp_path / 'o.gif'}")
    with Image.open(tmp_path / "o.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 4
