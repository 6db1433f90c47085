"""Helpers for the content-safety tests through the Discord stand-in (issue 16).

Images are solid marker colours read by the deterministic detector
(:meth:`standins.fake_safety.FakeSafetyDetector.with_markers`): magenta is explicit, orange
suggestive, grey clean. The ComfyUI test server's video zooms into its input, so a result keeps
its input's colour.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from bot.safety.messages import NOT_RUN, WITHHELD_NOTICE
from standins.discord_server import Channel, DiscordStandIn, InteractionRecord, Member, message_text
from standins.fake_safety import EXPLICIT_MARKER, SUGGESTIVE_MARKER
from tests.animate.conftest import AnimateEnv

CLEAN = (128, 128, 128)
EXPLICIT = EXPLICIT_MARKER
SUGGESTIVE = SUGGESTIVE_MARKER

__all__ = ["CLEAN", "EXPLICIT", "NOT_RUN", "SUGGESTIVE", "WITHHELD_NOTICE", "animate_colour", "colour_png",
           "comfy_uploads", "outcome", "result_of", "video_attachment"]


def colour_png(colour: tuple[int, int, int], size: tuple[int, int] = (320, 192)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


async def animate_colour(env: AnimateEnv, colour: tuple[int, int, int], *, user: Member | None = None,
                         channel: Channel | None = None, dm: bool = False) -> InteractionRecord:
    """``/animate`` with a solid-colour image (small and quick: 2 frames, 4 steps)."""
    return await env.stand_in.slash(None, channel, user, "animate", options={"steps": 4, "frames": 2},
                                    attachments={"image": ("picture.png", colour_png(colour), "image/png")}, dm=dm)


def video_attachment(message: dict[str, Any] | None) -> dict[str, Any] | None:
    """The video of a result message (``animation_...`` or ``SPOILER_animation_...``)."""
    for attachment in (message or {}).get("attachments", []):
        if attachment["filename"].removeprefix("SPOILER_").startswith("animation_"):
            return dict(attachment)
    return None


def result_of(record: InteractionRecord) -> dict[str, Any] | None:
    return record.original if video_attachment(record.original) is not None else None


def _ended(record: InteractionRecord) -> bool:
    content = str((record.original or {}).get("content") or "")
    return result_of(record) is not None or content in (NOT_RUN, WITHHELD_NOTICE) or (
        record.ephemeral and bool(record.original) and not (record.original or {}).get("flags", 0) & 128)


async def outcome(record: InteractionRecord, timeout: float = 20.0) -> str:
    """``delivered``, ``spoiler``, ``refused`` (the neutral notice), ``withheld`` or ``private``
    (refused privately before anything was shown), once the interaction reached one."""
    await record.wait_for(_ended, timeout=timeout)
    if record.ephemeral:
        return "private"
    content = str((record.original or {}).get("content") or "")
    if content == NOT_RUN:
        return "refused"
    if content == WITHHELD_NOTICE:
        return "withheld"
    video = video_attachment(record.original)
    assert video is not None
    return "spoiler" if video["filename"].startswith("SPOILER_") else "delivered"


async def private_text(record: InteractionRecord, timeout: float = 10.0) -> str:
    """The ephemeral follow-up that came after a public status message."""
    await record.wait_for(lambda r: any(m.get("flags", 0) & 64 for m in r.followups), timeout=timeout)
    return "\n".join(message_text(m) for m in record.followups if m.get("flags", 0) & 64)


def comfy_uploads(env: AnimateEnv) -> list[tuple[str, str]]:
    return [r for server in env.comfy for r in server.requests if r == ("POST", "/upload/image")]


def channel_videos(stand_in: DiscordStandIn, channel: Channel | None = None) -> list[dict[str, Any]]:
    return [m for m in stand_in.channel_messages(channel) if video_attachment(m) is not None]
