"""Injection: options and derived values land in a new graph; bad options get member messages."""

from __future__ import annotations

import copy
import json
import random

import pytest

from bot.errors import InvalidInput
from bot.workflows import ResolvedOptions, load_workflow, load_workflows, resolve_options, inject

from .conftest import WORKFLOWS


@pytest.fixture(scope="module")
def svd():
    return load_workflow(WORKFLOWS / "svd_img2vid.json")


@pytest.fixture(scope="module")
def core():
    return load_workflow(WORKFLOWS / "svd_img2vid_core.json")


def test_injection_does_not_mutate_the_template(svd) -> None:
    before = copy.deepcopy(dict(svd.template))
    graph = inject(svd, {"motion": 50, "format": "mp4", "seed": 1}, image_name="a.png", width=576, height=1024, filename_prefix="j1")
    graph["3"]["inputs"]["steps"] = 999
    assert dict(svd.template) == before
    again = inject(svd, {"seed": 1}, image_name="b.png", width=1024, height=576, filename_prefix="j2")
    assert again["12"]["inputs"]["motion_bucket_id"] == 127  # default, not the previous job's 50
    assert "pix_fmt" not in again["24"]["inputs"]


def test_options_and_derived_values_are_written(svd) -> None:
    opts = resolve_options(svd, {"motion": 200, "frames": 25, "fps": 12, "seed": 42, "augmentation": 0.5, "steps": 30, "cfg": 3})
    graph = inject(svd, opts, image_name="animate_7_ab.png", width=576, height=1024, filename_prefix="job_7")
    cond, sampler, video = graph["12"]["inputs"], graph["3"]["inputs"], graph["24"]["inputs"]
    assert (cond["motion_bucket_id"], cond["video_frames"], cond["fps"], cond["augmentation_level"]) == (200, 25, 12, 0.5)
    assert (cond["width"], cond["height"]) == (576, 1024)
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (42, 30, 3.0)
    assert video["frame_rate"] == 12 and video["filename_prefix"] == "job_7"
    assert graph["23"]["inputs"]["image"] == "animate_7_ab.png"
    assert graph["15"]["inputs"]["ckpt_name"] == "svd_xt_1_1.safetensors"  # admin value
    json.dumps(graph)  # serialisable as sent to POST /prompt


def test_format_switch_fills_the_formats_inputs(svd) -> None:
    mp4 = inject(svd, {"format": "mp4", "seed": 1}, image_name="a.png", width=1024, height=576, filename_prefix="p")["24"]["inputs"]
    assert mp4["format"] == "video/h264-mp4"
    assert (mp4["pix_fmt"], mp4["crf"]) == ("yuv420p", 19)
    assert "save_metadata" in mp4 and "lossless" not in mp4
    webp = inject(svd, {"format": "webp", "seed": 1}, image_name="a.png", width=1024, height=576, filename_prefix="p")["24"]["inputs"]
    assert webp["format"] == "image/webp" and webp["lossless"] is False
    assert "pix_fmt" not in webp and "crf" not in webp
    gif = inject(svd, {"format": "GIF", "seed": 1}, image_name="a.png", width=1024, height=576, filename_prefix="p")["24"]["inputs"]
    assert gif["format"] == "image/gif" and "pix_fmt" not in gif


def test_core_workflow_keeps_only_the_chosen_output_node(core) -> None:
    mp4 = inject(core, {"format": "mp4", "fps": 10, "seed": 1}, image_name="a.png", width=768, height=768, filename_prefix="p")
    classes = {n["class_type"] for n in mp4.values()}
    assert {"CreateVideo", "SaveVideo"} <= classes and "SaveAnimatedWEBP" not in classes
    assert next(n for n in mp4.values() if n["class_type"] == "CreateVideo")["inputs"]["fps"] == 10
    webp = inject(core, {"format": "webp", "seed": 1}, image_name="a.png", width=768, height=768, filename_prefix="p")
    classes = {n["class_type"] for n in webp.values()}
    assert "SaveAnimatedWEBP" in classes and not {"CreateVideo", "SaveVideo"} & classes
    for node in webp.values():  # no link points to a dropped node
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in webp


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"motion": 0}, "motion must be between 1 and 255"),
        ({"motion": 256}, "motion must be between 1 and 255"),
        ({"motion": "lots"}, "motion must be a whole number"),
        ({"motion": 2.5}, "motion must be a whole number"),
        ({"cfg": float("nan")}, "cfg must be a number"),
        ({"format": "avi"}, "format must be one of gif, mp4, webp (avi isn't available)"),
        ({"seed": 2**53}, "seed must be between 0 and 9007199254740991"),
        ({"seed": -1}, "seed must be between 0 and"),
        ({"checkpoint": "evil.ckpt"}, "unknown option 'checkpoint'"),
        ({"bogus": 1}, "unknown option 'bogus'"),
    ],
)
def test_bad_member_options_are_refused_with_a_friendly_message(svd, raw, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        resolve_options(svd, raw, random.Random(0))
    assert message in caught.value.user_message


def test_defaults_and_random_seed(svd) -> None:
    a = resolve_options(svd, {}, random.Random(5))
    b = resolve_options(svd, {}, random.Random(5))
    c = resolve_options(svd, {}, random.Random(6))
    assert isinstance(a, ResolvedOptions)
    assert a["seed"] == b["seed"] != c["seed"]
    assert 0 <= a["seed"] <= 2**53 - 1
    assert (a["motion"], a["format"], a["fit"]) == (127, "gif", "crop")
    assert resolve_options(svd, {"motion": "64", "seed": None}, random.Random(1))["motion"] == 64  # shell strings


def test_admin_options_only_when_allowed(svd) -> None:
    opts = resolve_options(svd, {"checkpoint": "other.safetensors", "seed": 1}, allow_admin=True)
    graph = inject(svd, opts, image_name="a.png", width=1024, height=576, filename_prefix="p")
    assert graph["15"]["inputs"]["ckpt_name"] == "other.safetensors"


def test_registry_lists_member_options_for_commands() -> None:
    registry = load_workflows(WORKFLOWS).registry
    wf = registry.get("svd_img2vid")
    fmt = wf.options["format"]
    assert fmt.choices == ("gif", "mp4", "webp") and fmt.default == "gif" and fmt.description
