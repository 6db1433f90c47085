"""/mod defaults and /mod caps through the stand-in: who may set them, what /animate, the job
buttons and /help do with them, a restart, and values no fallback workflow could honour."""

from __future__ import annotations

import pytest

from bot.moderation.actions import Actions
from standins.discord_server import InteractionRecord, message_text
from tests.animate.conftest import AnimateFactory, png_bytes, wait_job
from tests.animate.test_buttons_and_errors import job_id_of
from tests.moderation_discord.helpers import PERM_MANAGE_GUILD, animate, member_with, mod, refusal
from tests.moderation_discord.test_settings import NOT_MOD, delivered
from tests.storage.helpers import list_audit

pytestmark = pytest.mark.timeout(90)


async def result_of(record: InteractionRecord) -> tuple[dict, str]:
    """The result message of a button's interaction, and its text (with the embed's notes)."""
    message = await delivered(record, timeout=30)
    return message, message_text(message)


async def test_defaults_fill_animate_and_caps_refuse_privately_before_anything_is_counted(
    animate_bot: AnimateFactory,
) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    bob = member_with(stand_in, "bob")

    # members cannot set or even read them; nothing is stored
    assert NOT_MOD in await mod(env, bob, "caps", max_frames=3)
    assert NOT_MOD in await mod(env, bob, "defaults", format="mp4")
    assert NOT_MOD in await mod(env, bob, "caps")
    assert (await env.bot.policy.option_rules(stand_in.guild.id)).is_default

    assert "option defaults the workflows' own → frames 3, format mp4" in await mod(
        env, admin, "defaults", format="mp4", frames=3)
    assert "max frames none → 4" in await mod(env, admin, "caps", max_frames=4, formats="mp4, webp")
    await mod(env, admin, "limits", daily_quota=1)
    shown = await mod(env, admin, "caps")
    assert "frames 3 · format mp4" in shown and "frames at most 4 · formats mp4, webp" in shown
    assert "frames at most 4 · formats mp4, webp · 3 extensions per result" in await mod(env, admin, "settings")

    # above a cap: refused privately, naming the cap, and the day's one generation is still there
    over = await refusal(await stand_in.slash(None, None, bob, "animate", options={"frames": 6, "steps": 3},
                                              attachments=_image()))
    assert over == "This server caps frames at 4 (you asked for 6)."
    gif = await refusal(await animate(env, bob, format="gif"))
    assert gif == "This server allows only mp4 and webp results (you asked for gif)."
    assert await env.service.recent_jobs(bob.id, stand_in.guild.id) == []

    # what bob leaves out comes from the server's defaults (steps is his)
    record = await stand_in.slash(None, None, bob, "animate", options={"steps": 3}, attachments=_image())
    message = await delivered(record)
    job = await wait_job(env.service, job_id_of(message), "delivered")
    assert job.options["frames"] == 3 and job.options["format"] == "mp4" and job.options["steps"] == 3
    assert any(a["filename"].endswith(".mp4") for a in message["attachments"])

    # /help shows this server's caps and defaults to everyone
    help_record = await stand_in.slash(None, None, bob, "help")
    text = message_text(await help_record.wait_message())
    assert "Caps: frames at most 4 · formats mp4, webp · 3 extensions per result." in text
    assert "Defaults: frames 3 · format mp4." in text

    # each change is in the audit log, and clearing goes back to the workflows' own
    actions = [r.action for r in await list_audit(env.service.store, stand_in.guild.id, limit=50)]
    assert Actions.OPTION_DEFAULTS in actions and Actions.OPTION_CAPS in actions
    assert "option defaults frames 3, format mp4 → the workflows' own" in await mod(env, admin, "defaults", clear="all")
    assert "max frames 4 → none" in await mod(env, admin, "caps", clear="all")
    assert (await env.bot.policy.option_rules(stand_in.guild.id)).caps.is_default
    assert not stand_in.violations


async def test_values_no_workflow_could_honour_are_refused_with_the_reason(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    admin = member_with(env.stand_in, "admin", permissions=PERM_MANAGE_GUILD)

    gif = await mod(env, admin, "defaults", format="gif")
    assert "format gif is not available on the fallback workflow svd_img2vid_core (it offers mp4, webp)" in gif
    assert "every workflow's range (2–25)" in await mod(env, admin, "defaults", frames=30)
    only_gif = await mod(env, admin, "caps", formats="gif")
    assert "the fallback workflow svd_img2vid_core could make no result (it offers mp4, webp)" in only_gif
    assert "so it would cap nothing" in await mod(env, admin, "caps", max_steps=400)
    # a default must respect the caps, and a cap may not fall below a default
    await mod(env, admin, "caps", max_frames=10)
    assert "the default frames 12 is above the cap of 10" in await mod(env, admin, "defaults", frames=12)
    await mod(env, admin, "defaults", frames=8)
    assert "the server's default frames 8 is above the cap of 6" in await mod(env, admin, "caps", max_frames=6)
    rules = await env.bot.policy.option_rules(env.stand_in.guild.id)
    assert dict(rules.defaults) == {"frames": 8} and rules.caps.max_frames == 10 and rules.caps.allowed_formats is None


async def test_caps_survive_a_restart_and_an_older_results_reroll_uses_the_lowered_cap(
    animate_bot: AnimateFactory,
) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    first = await delivered(await animate(env, None, frames=5, steps=4, format="gif"))
    parent_id = job_id_of(first)
    await wait_job(env.service, parent_id, "delivered")
    await mod(env, admin, "caps", max_frames=3, max_steps=3, formats="mp4 webp", max_extensions=1)

    assert env.stop is not None
    await env.stop()
    env = await animate_bot(comfy=env.comfy)  # a new bot on the same DATA_DIR
    caps = await env.bot.policy.caps_for(stand_in.guild.id)
    assert (caps.max_frames, caps.max_steps, caps.allowed_formats, caps.max_extensions) == (3, 3, ("mp4", "webp"), 1)
    assert "This server caps frames at 3 (you asked for 5)." == await refusal(await animate(env, None, frames=5))

    message, notes = await result_of(await stand_in.click(first, f"animate:reroll:{parent_id}"))
    child = await env.service.get(job_id_of(message))
    assert child is not None and child.parent_job_id == parent_id
    assert (child.options["frames"], child.options["steps"], child.options["format"]) == (3, 3, "mp4")
    assert "Used 3 frames: this server now caps frames at 3." in notes
    assert "Used 3 steps: this server now caps steps at 3." in notes
    assert "Made an mp4 instead of a gif: this server now allows only mp4 and webp results." in notes

    # More motion keeps the seed, moves the motion, and is held to the caps the same way
    message, notes = await result_of(await stand_in.click(first, f"animate:more:{parent_id}"))
    moved = await env.service.get(job_id_of(message))
    parent = await env.service.get(parent_id)
    assert moved is not None and parent is not None and moved.options["frames"] == 3
    assert moved.options["seed"] == parent.options["seed"] and moved.options["motion"] == parent.options["motion"] + 40
    assert "Used 3 frames: this server now caps frames at 3." in notes
    # a re-roll of the capped result is under the caps already: nothing to say
    _, again = await result_of(await stand_in.click(message, f"animate:reroll:{moved.id}"))
    assert "this server now caps" not in again and "instead of" not in again
    assert not stand_in.violations


def _image() -> dict[str, tuple[str, bytes, str]]:
    return {"image": ("cat.png", png_bytes(), "image/png")}
