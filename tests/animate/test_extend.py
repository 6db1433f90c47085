"""The Extend button through the Discord stand-in and the ComfyUI test server: the joined clip's
frames, the chain kept in the store across a restart, the per-server limit, a result re-encoded to
fit the upload limit, and a boomerang result."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bot.media.clips import last_frame, read_clip
from bot.moderation.caps import DEFAULT_MAX_EXTENSIONS
from bot.safety import RGBArray
from bot.safety.verdict import Detections
from standins.fake_safety import EXPLICIT_DETECTIONS, FakeSafetyDetector
from standins.comfy_server import ComfyTestServer
from standins.discord_server import DiscordStandIn, InteractionRecord, message_text
from standins.wait import wait_until
from tests.animate.conftest import AnimateEnv, AnimateFactory, wait_job
from tests.animate.test_animate_flow import attachment_bytes, custom_ids, result_message
from tests.animate.test_upload_limit import noisy_png
from tests.moderation_discord.helpers import PERM_MANAGE_GUILD, member_with, mod, refusal
from tests.safety_discord.helpers import WITHHELD_NOTICE, outcome

pytestmark = pytest.mark.timeout(120)

Frames = list[np.ndarray[Any, np.dtype[np.float64]]]


def rings_png(width: int = 320, height: int = 180) -> bytes:
    """Rings around the middle: a zoom changes every frame (flat halves would not)."""
    y, x = np.mgrid[0:height, 0:width]
    r = np.hypot(x - width / 2, y - height / 2)
    grey = (127 + 127 * np.sin(r / 4)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.stack([grey, 255 - grey, grey // 2], axis=-1), mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


async def animate(env: AnimateEnv, image: bytes, **options: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {"steps": 2, "frames": 5, "motion": 255, "format": "mp4"}
    opts.update(options)
    record = await env.stand_in.slash(None, None, None, "animate", options=opts,
                                      attachments={"image": ("rings.png", image, "image/png")})
    return await finished(record)


async def finished(record: InteractionRecord, timeout: float = 60) -> dict[str, Any]:
    def ended(r: InteractionRecord) -> bool:  # the result, or the notice of a job that did not run
        return result_message(r) is not None or "❌" in str((r.original or {}).get("content")) or r.ephemeral

    await record.wait_for(ended, timeout=timeout)
    message = result_message(record)
    assert message is not None, [message_text(m) for m in record.followups]
    return message


async def extend(env: AnimateEnv, message: dict[str, Any]) -> dict[str, Any]:
    return await finished(await env.stand_in.click(message, f"animate:extend:{job_id_of(message)}"))


def job_id_of(message: dict[str, Any]) -> str:
    return str(message["embeds"][0]["footer"]["text"].split()[-1])


def video_frames(stand_in: DiscordStandIn, message: dict[str, Any], tmp_path: Path) -> Frames:
    video = next(a for a in message["attachments"] if a["filename"].removeprefix("SPOILER_").startswith("animation_"))
    path = tmp_path / video["filename"]
    path.write_bytes(attachment_bytes(stand_in, video))
    return [f.astype(np.float64) for f in read_clip(path).frames]


def comfy_output(server: ComfyTestServer, job_id: str) -> Path:
    """The file ComfyUI wrote for a job (its prefix is ``animate_<job id>``)."""
    found = [p for p in server.output_dir.rglob(f"animate_{job_id}_*") if p.suffix != ".png"]
    assert len(found) == 1, found
    return found[0]


def original_frames(server: ComfyTestServer, job_id: str) -> Frames:
    return [f.astype(np.float64) for f in read_clip(comfy_output(server, job_id)).frames]


def nearest(frames: Frames, among: Frames) -> list[int]:
    """Each frame as the index of the nearest of ``among`` (lossy encodes: nearest, not equal)."""
    return [min(range(len(among)), key=lambda i: float(((among[i] - f) ** 2).mean())) for f in frames]


async def test_extend_joins_the_new_clip_onto_the_first_without_the_shared_frame(
    animate_bot: AnimateFactory, tmp_path: Path
) -> None:
    env = await animate_bot()
    first = await animate(env, rings_png())
    first_id = job_id_of(first)
    assert f"animate:extend:{first_id}" in custom_ids(first)
    extended = await extend(env, first)
    job = await wait_job(env.service, job_id_of(extended), "delivered")
    parent = await env.service.get(first_id)
    assert parent is not None
    # the chain is in the store; the new seed is shown, with "Extended 1/3" and the first result's link
    assert (job.parent_job_id, job.chain_root_id, job.extension_index) == (first_id, first_id, 1)
    assert job.options["seed"] != parent.options["seed"]
    description = extended["embeds"][0]["description"]
    assert f"Extended 1/{DEFAULT_MAX_EXTENSIONS}" in description
    assert f"/{first['channel_id']}/{first['id']})" in description
    assert str(job.options["seed"]) in message_text(extended)
    assert f"animate:extend:{job.id}" in custom_ids(extended)
    # the frames: the first clip's, then the new clip's without its first (the shared) frame
    one, two = original_frames(env.comfy[0], first_id), original_frames(env.comfy[0], job.id)
    assert len(one) == len(two) == 5
    joined = video_frames(env.stand_in, extended, tmp_path)
    expected = one + two[1:]
    assert len(joined) == len(expected) == 9
    assert nearest(joined, expected) == list(range(len(expected)))
    assert max(float(((a - b) ** 2).mean()) for a, b in zip(joined, expected)) < 40.0
    # the poster is the joined clip's first frame (the first clip's), not the extension's input
    poster = next(a for a in extended["attachments"] if a["filename"].startswith("poster_"))
    with Image.open(io.BytesIO(attachment_bytes(env.stand_in, poster))) as im:
        shown = np.asarray(im.convert("RGB").resize((joined[0].shape[1], joined[0].shape[0])), dtype=np.float64)
    assert nearest([shown], joined) == [0]
    # the new clip started from the first clip's last frame
    assert float(((two[0] - one[-1]) ** 2).mean()) < float(((two[0] - one[-2]) ** 2).mean())
    # the joined clip and the new clip's original are kept in DATA_DIR for the next Extend
    assert job.result_path.endswith(f"{job.id}.joined.mp4") and Path(job.result_path).exists()
    assert Path(job.result_meta["segment_path"]).exists()
    # a Re-roll of the extended result makes that extension again (new seed), joined onto the same clip
    again = await finished(await env.stand_in.click(extended, f"animate:reroll:{job.id}"))
    rerolled = await wait_job(env.service, job_id_of(again), "delivered")
    assert (rerolled.parent_job_id, rerolled.chain_root_id, rerolled.extension_index) == (job.id, first_id, 1)
    assert rerolled.options["seed"] != job.options["seed"]
    assert len(video_frames(env.stand_in, again, tmp_path)) == 9
    assert "Extended 1/3" in again["embeds"][0]["description"]
    assert not env.stand_in.violations


async def test_extend_after_a_restart_and_the_limit(animate_bot: AnimateFactory, tmp_path: Path) -> None:
    env = await animate_bot()
    first = await animate(env, rings_png(), frames=3)
    once = await extend(env, first)
    await wait_job(env.service, job_id_of(once), "delivered")
    assert env.stop is not None
    await env.stop()
    # a new bot on the same DATA_DIR: the chain comes from the store
    restarted = await animate_bot(comfy=env.comfy)
    twice = await extend(restarted, once)
    thrice = await extend(restarted, twice)
    third = await wait_job(restarted.service, job_id_of(thrice), "delivered")
    assert third.chain_root_id == job_id_of(first) and third.extension_index == 3
    assert f"Extended 3/{DEFAULT_MAX_EXTENSIONS}" in thrice["embeds"][0]["description"]
    assert len(video_frames(restarted.stand_in, thrice, tmp_path)) == 3 + 3 * 2
    # a fourth is refused privately, before anything is counted or deferred publicly
    posts = sum(1 for method, path in restarted.comfy[0].requests if (method, path) == ("POST", "/prompt"))
    assert posts == 4  # the first job and three extensions
    refused = await restarted.stand_in.click(thrice, f"animate:extend:{third.id}")
    message = await refused.wait_message()
    assert refused.ephemeral
    assert "extended 3 times already" in message_text(message) and "at most 3 times" in message_text(message)
    assert sum(1 for method, path in restarted.comfy[0].requests if (method, path) == ("POST", "/prompt")) == posts
    assert len(await restarted.service.recent_jobs(third.user_id, None, limit=10)) == 4


async def test_extend_on_a_result_re_encoded_to_fit_takes_the_original_last_frame(
    animate_bot: AnimateFactory, comfy_server_factory: Callable[..., Awaitable[ComfyTestServer]], tmp_path: Path
) -> None:
    full = await comfy_server_factory(step_time=0.0, full_size=True)
    env = await animate_bot(comfy=[full])
    env.stand_in.upload_limit = 1536 * 1024
    first = await animate(env, noisy_png(), frames=4, format="gif", motion=40)
    assert first["attachments"][0]["filename"].endswith(".mp4")  # ComfyUI's GIF did not fit: re-encoded
    assert "re-encoded to fit" in first["embeds"][0]["description"]
    original = comfy_output(full, job_id_of(first))
    assert original.suffix == ".gif" and original.stat().st_size > 1536 * 1024
    extended = await extend(env, first)
    job = await wait_job(env.service, job_id_of(extended), "delivered")
    # the extension's input is the original GIF's last frame, pixel for pixel, not the MP4 members saw
    given = np.asarray(Image.open(job.input_path).convert("RGB"), dtype=np.float64)
    assert np.array_equal(given, np.asarray(last_frame(original), dtype=np.float64))
    seen = video_frames(env.stand_in, first, tmp_path)[-1]
    assert float(((given - seen) ** 2).mean()) > 10.0  # the re-encoded copy's last frame differs
    # the joined clip (a GIF, like the job asked) was fitted the same way: 4 + 3 frames
    assert extended["attachments"][0]["filename"].endswith(".mp4")
    assert Path(job.result_path).name == f"{job.id}.joined.gif"
    assert len(video_frames(env.stand_in, extended, tmp_path)) == 7


@pytest.mark.parametrize("workflow", ["svd_img2vid", "svd_img2vid_core"])
async def test_extend_on_a_boomerang_continues_from_the_turning_point_and_ping_pongs_the_joined_clip(
    animate_bot: AnimateFactory, tmp_path: Path, workflow: str
) -> None:
    env = await animate_bot()
    first = await animate(env, rings_png(), frames=4, loop="boomerang", workflow=workflow)
    extended = await extend(env, first)
    job = await wait_job(env.service, job_id_of(extended), "delivered")
    assert job.options["loop"] == "boomerang"
    # forward parts of what ComfyUI made (VHS ping-pongs it there; the core workflow does not)
    one, two = original_frames(env.comfy[0], job_id_of(first)), original_frames(env.comfy[0], job.id)
    one, two = one[:4], two[:4]
    forward = one + two[1:]
    expected = forward + forward[-2:0:-1]
    joined = video_frames(env.stand_in, extended, tmp_path)
    assert len(joined) == len(expected) == 2 * 7 - 2
    assert nearest(joined, forward) == list(range(7)) + list(range(5, 0, -1))
    # the new clip started from the turning point (the forward part's last frame), not from frame 1
    assert nearest([two[0]], one) == [3]
    # kept: the joined clip and the new clip as ComfyUI made it (the core workflow's bot-made boomerang is gone)
    assert sorted(p.name for p in Path(job.result_path).parent.glob(f"{job.id}.*")) == [
        f"{job.id}.joined.mp4", f"{job.id}.mp4"]


class ExplicitResultsFromNowOn(FakeSafetyDetector):
    """Clean until ``results_explicit`` is set; then every result frame (the ComfyUI test server
    renders at most 128 px; a prepared input is 1024 px wide) is explicit, and inputs stay clean."""

    results_explicit = False

    def detect(self, image: RGBArray) -> Detections:
        found = super().detect(image)
        if self.results_explicit and image.shape[1] <= 256:
            return Detections(items=EXPLICIT_DETECTIONS, width=found.width, height=found.height)
        return found


async def test_the_joined_clip_goes_through_the_result_safety_check(animate_bot: AnimateFactory) -> None:
    detector = ExplicitResultsFromNowOn()
    env = await animate_bot(safety=detector)
    first = await animate(env, rings_png(), frames=3)
    detector.results_explicit = True  # the first result was posted; the next one will not be
    record = await env.stand_in.click(first, f"animate:extend:{job_id_of(first)}")
    assert await outcome(record, timeout=30) == "withheld"  # the input (a clean frame) was let through
    assert (record.original or {})["content"] == WITHHELD_NOTICE
    jobs = await env.service.recent_jobs(env.stand_in.user.id, env.stand_in.guild.id, limit=1)
    job = await wait_job(env.service, jobs[0].id, "failed")
    assert job.extension_index == 1
    withheld = await env.service.store.withheld.get(job.id)
    assert withheld is not None and withheld.result_path == job.result_path  # what was judged: the joined clip
    assert Path(job.result_path).name == f"{job.id}.joined.mp4"


async def test_a_bot_stopped_while_posting_an_extension_posts_it_once_after_the_restart(
    animate_bot: AnimateFactory,
) -> None:
    env = await animate_bot()
    first = await animate(env, rings_png(), frames=3)
    upload = env.stand_in.hold("*", "*", with_files=True, stage="after")  # Discord has it; the bot never hears
    record = await env.stand_in.click(first, f"animate:extend:{job_id_of(first)}")
    await upload.wait_held()
    jobs = await env.service.recent_jobs(env.stand_in.user.id, env.stand_in.guild.id, limit=1)
    job = await wait_job(env.service, jobs[0].id, "delivering")
    assert Path(job.result_path).name == f"{job.id}.joined.mp4"  # joined and stored before the upload
    assert env.stop is not None
    stopping = asyncio.ensure_future(env.stop())
    await wait_until(lambda: env.service.closing, what="the job service to close")  # its tasks are cancelled
    upload.release(drop=True)  # the bot never hears back (else closing waits for the answer)
    await stopping
    restarted = await animate_bot(comfy=env.comfy)
    job = await wait_job(restarted.service, job.id, "delivered")
    message = result_message(record)
    assert message is not None and job.delivered_message_id == int(message["id"])
    posted = [m for m in env.stand_in.messages.values()
              if any(a["filename"].startswith(f"animation_{job.id}.") for a in m.get("attachments", []))]
    assert len(posted) == 1  # not posted twice
    assert sorted(p.name for p in Path(job.result_path).parent.glob(f"{job.id}.*")) == [
        f"{job.id}.joined.mp4", f"{job.id}.mp4"]


async def test_extend_counts_as_a_generation(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    admin = member_with(env.stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "limits", daily_quota=2)
    first = await animate(env, rings_png(), frames=3)
    record = await env.stand_in.click(first, f"animate:extend:{job_id_of(first)}")
    await finished(record)

    def private_notes() -> list[str]:
        sent = env.stand_in.requests_to("POST", f"/webhooks/*/{record.token}")
        return [str(r.json.get("content")) for r in sent if isinstance(r.json, dict) and r.json.get("flags", 0) & 64]

    notes = await wait_until(private_notes, what="the private note after the Extend")
    assert notes == ["0 of 2 generations left today; resets at 00:00 UTC."]  # the Extend was counted
    over = await refusal(await env.stand_in.click(first, f"animate:extend:{job_id_of(first)}"))
    assert "You've used all 2 generations for today" in over


async def test_the_limit_is_the_servers_mod_caps_max_extensions(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    admin = member_with(env.stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    await mod(env, admin, "caps", max_extensions=1)
    first = await animate(env, rings_png(), frames=3)
    once = await extend(env, first)
    assert "Extended 1/1" in once["embeds"][0]["description"]
    refused = await refusal(await env.stand_in.click(once, f"animate:extend:{job_id_of(once)}"))
    assert refused == ("This animation has been extended 1 time already; "
                       "this server allows extending an animation at most once.")
    await mod(env, admin, "caps", max_extensions=0)
    assert await refusal(await env.stand_in.click(first, f"animate:extend:{job_id_of(first)}")) == (
        "This server does not allow extending animations.")


async def test_extending_another_members_animation_follows_mod_others(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    admin = member_with(env.stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    bob = member_with(env.stand_in, "bob")
    first = await animate(env, rings_png(), frames=3)  # alice's
    refused = await refusal(await env.stand_in.click(first, f"animate:extend:{job_id_of(first)}", user=bob))
    assert refused == "On this server you can only animate your own images."
    await mod(env, admin, "others", allowed=True)
    extended = await finished(await env.stand_in.click(first, f"animate:extend:{job_id_of(first)}", user=bob))
    job = await wait_job(env.service, job_id_of(extended), "delivered")
    assert job.user_id == bob.id and job.chain_root_id == job_id_of(first)
    assert job.result_meta["safety"]["others_image"] is True  # judged strictly, as another member's picture
