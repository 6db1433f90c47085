"""/animate on an image server without VideoHelperSuite: the core-nodes workflow does the job,
naming the VHS workflow is refused with what works instead, and the owner sees why."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.animate.conftest import AnimateFactory, png_bytes
from tests.animate.test_animate_flow import attachment_bytes, result_message
from standins.comfy_server import ComfyTestServer
from tests.moderation_discord.helpers import reply, slash_with

pytestmark = pytest.mark.timeout(60)


async def test_animate_without_vhs_uses_the_core_workflow_and_explains_the_rest(
    animate_bot: AnimateFactory, comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]]
) -> None:
    bare = await comfy_server_factory(step_time=0.01, without_nodes=["VHS_VideoCombine"])
    env = await animate_bot(comfy=[bare])
    stand_in = env.stand_in
    image = {"image": ("cat.png", png_bytes(), "image/png")}

    record = await stand_in.slash(None, None, None, "animate", options={"steps": 3, "frames": 3}, attachments=image)
    await record.wait_for(lambda r: result_message(r) is not None, timeout=30)
    message = result_message(record)
    assert message is not None
    video = next(a for a in message["attachments"] if a["filename"].startswith("animation_"))
    assert video["filename"].endswith(".mp4")
    assert attachment_bytes(stand_in, video)[4:8] == b"ftyp"

    refused = await stand_in.slash(None, None, None, "animate", options={"workflow": "svd_img2vid"},
                                   attachments=image)
    text = await reply(refused)
    assert refused.ephemeral
    assert "can't run the **svd_img2vid** workflow" in text and "Try workflow **svd_img2vid_core**" in text
    assert "VHS" not in text and "http" not in text  # the details are for the admin

    # GIF needs VideoHelperSuite: the member is told which formats the server can make
    gif = await stand_in.slash(None, None, None, "animate", options={"format": "gif"}, attachments=image)
    text = await reply(gif)
    assert gif.ephemeral and text == "format must be one of mp4, webp (gif isn't available)"

    owner = stand_in.guild.members[0]  # the stand-in's application owner
    servers = await reply(await slash_with(stand_in, owner, "owner servers"))
    assert "can't run **svd_img2vid**" in servers and "ComfyUI-VideoHelperSuite" in servers
    assert "can't run **svd_img2vid_core**" not in servers
    assert not stand_in.violations
