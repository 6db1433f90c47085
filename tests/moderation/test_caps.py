"""The pure rules of a server's option defaults and caps, on the workflows that ship with the bot."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest

from bot.errors import InvalidInput
from bot.moderation.caps import (
    DEFAULTABLE,
    OptionCaps,
    OptionRules,
    apply_defaults,
    cap_workflow_defaults,
    check_caps,
    clamp_to_caps,
    describe_rules,
    parse_formats,
    validate_caps,
    validate_defaults,
)
from bot.moderation.option_actions import CAP_NAMES
from bot.workflows import WorkflowRegistry, load_workflows, resolve_options
from cogs.mod import CapName, DefaultName

REPO = Path(__file__).resolve().parents[2]
BOTH = load_workflows(REPO / "workflows").registry  # svd_img2vid (default, VHS: gif mp4 webp) and svd_img2vid_core (mp4 webp)
VHS = BOTH.get("svd_img2vid")
CORE = BOTH.get("svd_img2vid_core")
assert VHS is not None and CORE is not None
VHS_ONLY = WorkflowRegistry({"svd_img2vid": VHS}, default="svd_img2vid")


def refusal(call: Any, *args: Any) -> str:
    with pytest.raises(InvalidInput) as exc:
        call(*args)
    return exc.value.user_message


def test_a_default_must_work_on_every_workflow_the_bot_may_fall_back_to() -> None:
    assert refusal(validate_defaults, {"format": "gif"}, BOTH, OptionCaps()) == (
        "Those defaults can't be used: format gif is not available on the fallback workflow svd_img2vid_core "
        "(it offers mp4, webp).")
    assert validate_defaults({"format": "gif"}, VHS_ONLY, OptionCaps()) == {"format": "gif"}  # no fallback without it
    assert validate_defaults({"format": "MP4", "frames": 14}, BOTH, OptionCaps()) == {"format": "mp4", "frames": 14}
    assert "frames 30 is outside every workflow's range (2–25)" in refusal(validate_defaults, {"frames": 30}, BOTH,
                                                                           OptionCaps())
    assert "seed cannot have a server default" in refusal(validate_defaults, {"seed": 1}, BOTH, OptionCaps())
    text = refusal(validate_defaults, {"frames": 1, "format": "avi"}, BOTH, OptionCaps())
    assert text.startswith("Those defaults can't be used:\n• ") and "frames 1" in text and "format avi" in text


def test_defaults_and_caps_must_agree_whichever_is_set_first() -> None:
    assert "the default frames 20 is above the cap of 14 (/mod caps)" in refusal(
        validate_defaults, {"frames": 20}, BOTH, OptionCaps(max_frames=14))
    assert "the default format webp is not among the allowed formats" in refusal(
        validate_defaults, {"format": "webp"}, BOTH, OptionCaps(allowed_formats=("mp4",)))
    assert "the server's default frames 20 is above the cap of 14: change or clear that default first" in refusal(
        validate_caps, OptionCaps(max_frames=14), BOTH, {"frames": 20})
    assert validate_caps(OptionCaps(max_frames=20), BOTH, {"frames": 20}).max_frames == 20


def test_caps_stay_within_the_workflows_ranges_and_leave_every_workflow_a_format() -> None:
    assert "max frames 1 is below what every workflow needs (at least 2 frames)" in refusal(
        validate_caps, OptionCaps(max_frames=1), BOTH)
    assert "max steps 41 is above every workflow's own limit (40), so it would cap nothing" in refusal(
        validate_caps, OptionCaps(max_steps=41), BOTH)
    only_gif = refusal(validate_caps, OptionCaps(allowed_formats=("gif",)), BOTH)
    assert "the fallback workflow svd_img2vid_core could make no result (it offers mp4, webp)" in only_gif
    assert validate_caps(OptionCaps(allowed_formats=("gif",)), VHS_ONLY).allowed_formats == ("gif",)
    assert "format avi is not offered by any workflow" in refusal(validate_caps, OptionCaps(allowed_formats=("avi",)), BOTH)
    assert "max extensions must be between 0 and 10" in refusal(validate_caps, OptionCaps(max_extensions=11), BOTH)
    caps = validate_caps(OptionCaps(max_frames=14, allowed_formats=("WEBP", "mp4", "webp")), BOTH)
    assert caps == OptionCaps(max_frames=14, allowed_formats=("webp", "mp4"))
    assert parse_formats("mp4, webp  gif,,") == ("mp4", "webp", "gif")


def test_a_member_value_above_a_cap_is_refused_naming_the_cap() -> None:
    caps = OptionCaps(max_frames=14, max_steps=20, allowed_formats=("mp4", "webp"))
    assert refusal(check_caps, caps, {"frames": 25}) == "This server caps frames at 14 (you asked for 25)."
    assert refusal(check_caps, caps, {"steps": 30}) == "This server caps steps at 20 (you asked for 30)."
    assert refusal(check_caps, caps, {"format": "gif"}) == "This server allows only mp4 and webp results (you asked for gif)."
    check_caps(caps, {"frames": 14, "steps": 20, "format": "MP4", "motion": 255})  # at the cap is fine
    check_caps(OptionCaps(), {"frames": 25, "format": "gif"})


def test_left_out_options_take_the_servers_defaults_then_the_workflows_under_the_caps() -> None:
    caps = OptionCaps(max_frames=10, max_steps=12, allowed_formats=("mp4", "webp"))
    rules = OptionRules({"format": "webp", "fps": 8}, caps)
    given = apply_defaults(rules, {"fps": 12, "motion": None}, BOTH)
    assert given == {"fps": 12, "format": "webp"}  # the member's own value wins
    filled = cap_workflow_defaults(VHS, caps, given)
    assert filled == {"fps": 12, "format": "webp", "frames": 10, "steps": 12}  # VHS defaults: 14 frames, 20 steps
    # without a server default, the workflow's own format is replaced by the first allowed one
    assert cap_workflow_defaults(VHS, caps, {})["format"] == "mp4"
    assert "format" not in cap_workflow_defaults(CORE, caps, {})  # core's default (mp4) is allowed
    resolved = resolve_options(VHS, filled)
    assert (resolved["frames"], resolved["steps"], resolved["format"]) == (10, 12, "webp")
    # a default the reloaded workflows no longer take is skipped, not pressed on the member
    assert apply_defaults(OptionRules({"format": "gif"}), {}, BOTH) == {}


def test_an_older_jobs_options_are_clamped_to_todays_caps_with_a_note_each() -> None:
    caps = OptionCaps(max_frames=14, max_steps=20, allowed_formats=("mp4", "webp"))
    old = {"frames": 25, "steps": 20, "format": "gif", "seed": 7, "motion": 200}
    clamped = clamp_to_caps(VHS, caps, old)
    assert clamped.changed == {"frames": 14, "format": "mp4"}
    assert clamped.options == old | clamped.changed
    assert clamped.notes == ("Used 14 frames: this server now caps frames at 14.",
                             "Made an mp4 instead of a gif: this server now allows only mp4 and webp results.")
    assert clamp_to_caps(VHS, OptionCaps(), old).changed == {}
    assert clamp_to_caps(None, OptionCaps(allowed_formats=("webp",)), {"format": "gif"}).changed == {"format": "webp"}


def test_descriptions_and_the_names_the_commands_offer() -> None:
    rules = OptionRules({"format": "mp4", "frames": 14}, OptionCaps(max_frames=14, allowed_formats=("mp4", "webp")))
    assert describe_rules(rules) == ("frames at most 14 · formats mp4, webp · 3 extensions per result",
                                     "frames 14 · format mp4")
    assert describe_rules(OptionRules()) == ("3 extensions per result", "the workflow's own")
    assert OptionRules().is_default and not rules.is_default and OptionCaps().max_extensions == 3
    assert set(get_args(DefaultName)) == {*DEFAULTABLE, "all"}
    assert set(get_args(CapName)) == {*CAP_NAMES, "all"}
