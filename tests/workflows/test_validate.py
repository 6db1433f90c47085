"""Validation against a server's /object_info (the recorded ComfyUI 0.8.0 + VHS definitions)."""

from __future__ import annotations

import copy
from typing import Any

from bot.workflows import load_workflow, validate_against

from .conftest import WORKFLOWS

INSTALLED = ["svd_xt_1_1.safetensors", "svd.safetensors"]


def _with_checkpoints(info: dict[str, Any], names: list[str]) -> dict[str, Any]:
    info = copy.deepcopy(info)
    info["ImageOnlyCheckpointLoader"]["input"]["required"]["ckpt_name"] = [names]
    return info


def test_a_complete_server_has_no_problems(object_info) -> None:
    info = _with_checkpoints(object_info, INSTALLED)
    for name in ("svd_img2vid.json", "svd_img2vid_core.json"):
        assert validate_against(load_workflow(WORKFLOWS / name), info) == []


def test_missing_node_pack_and_missing_checkpoint_are_reported_together(object_info) -> None:
    info = copy.deepcopy(object_info)
    del info["VHS_VideoCombine"]
    # as recorded: no checkpoints installed -> ckpt_name: [[]]
    assert info["ImageOnlyCheckpointLoader"]["input"]["required"]["ckpt_name"] == [[]]
    problems = validate_against(load_workflow(WORKFLOWS / "svd_img2vid.json"), info)
    kinds = sorted(p.kind for p in problems)
    assert kinds == ["bad_value", "missing_node"]
    text = "\n".join(p.message for p in problems)
    assert "VHS_VideoCombine" in text and "ComfyUI-VideoHelperSuite" in text
    assert "no checkpoints installed" in text


def test_wrong_checkpoint_lists_what_the_server_has(object_info) -> None:
    info = _with_checkpoints(object_info, ["sd15.safetensors", "svd.safetensors"])
    problems = validate_against(load_workflow(WORKFLOWS / "svd_img2vid.json"), info)
    assert len(problems) == 1
    assert "svd_xt_1_1.safetensors" in problems[0].message
    assert "it has: sd15.safetensors, svd.safetensors" in problems[0].message


def test_missing_bound_input_and_unknown_format_value(object_info) -> None:
    info = _with_checkpoints(object_info, INSTALLED)
    del info["SVD_img2vid_Conditioning"]["input"]["required"]["motion_bucket_id"]
    fmt = info["VHS_VideoCombine"]["input"]["required"]["format"]
    fmt[0] = [f for f in fmt[0] if f != "image/webp"]
    problems = validate_against(load_workflow(WORKFLOWS / "svd_img2vid.json"), info)
    messages = [p.message for p in problems]
    assert any("no input 'motion_bucket_id'" in m for m in messages)
    assert any("'image/webp'" in m and "video/h264-mp4" in m for m in messages)


def test_only_problems_that_stop_every_job_are_blocking(object_info) -> None:
    """A missing pack or checkpoint stops every job; a format the server lacks, or a member
    maximum above the server's, stops only jobs that choose it (routing keeps the workflow)."""
    info = _with_checkpoints(object_info, INSTALLED)
    fmt = info["VHS_VideoCombine"]["input"]["required"]["format"]
    fmt[0] = [f for f in fmt[0] if f != "image/webp"]
    info["SVD_img2vid_Conditioning"]["input"]["required"]["video_frames"][1]["max"] = 16
    problems = validate_against(load_workflow(WORKFLOWS / "svd_img2vid.json"), info)
    assert len(problems) == 2 and not any(p.blocking for p in problems)
    assert {p.input for p in problems} == {"format", "video_frames"}
    info = _with_checkpoints(object_info, ["other.safetensors"])
    problems = validate_against(load_workflow(WORKFLOWS / "svd_img2vid.json"), info)
    assert [p.blocking for p in problems] == [True]
    del info["VHS_VideoCombine"]
    assert all(p.blocking for p in validate_against(load_workflow(WORKFLOWS / "svd_img2vid.json"), info))


def test_core_workflow_needs_no_node_pack(object_info) -> None:
    info = _with_checkpoints(object_info, INSTALLED)
    del info["VHS_VideoCombine"]
    assert validate_against(load_workflow(WORKFLOWS / "svd_img2vid_core.json"), info) == []


def test_new_style_combo_values_are_checked(object_info) -> None:
    info = _with_checkpoints(object_info, INSTALLED)
    info["SaveVideo"]["input"]["required"]["codec"][1]["options"] = ["auto"]
    problems = validate_against(load_workflow(WORKFLOWS / "svd_img2vid_core.json"), info)
    assert [p.input for p in problems] == ["codec"]
    assert "it has: auto" in problems[0].message
