"""Parsing of recorded ComfyUI 0.8.0 HTTP bodies into the client's dataclasses."""

from __future__ import annotations

from typing import Any

import pytest

from bot.comfy.client import error_for_status
from bot.comfy.errors import ComfyBadRequest, ComfyServerError, ComfyValidationError
from bot.comfy.models import HistoryEntry, QueuedPrompt, QueueState, SystemStats

from .conftest import load_fixture


def history_of(name: str) -> HistoryEntry:
    body = load_fixture(name)["history_after"]["response"]["json"]
    ((pid, entry),) = body.items()
    return HistoryEntry.from_json(pid, entry)


def test_vhs_gif_output_found_under_gifs_key() -> None:
    entry = history_of("ws-success-vhs_gif.json")
    assert entry.succeeded and not entry.failed and not entry.interrupted
    assert entry.error_message() is None
    (f,) = entry.output_files()
    assert (f.node_id, f.key, f.filename, f.format, f.animated) == ("9", "gifs", "peer_vhs_00004.gif", "image/gif", True)
    assert f.ref.as_dict() == {"filename": "peer_vhs_00004.gif", "subfolder": "", "type": "output"}


def test_vhs_mp4_is_also_under_gifs_with_video_format() -> None:
    (f,) = history_of("ws-success-vhs_h264_mp4.json").output_files()
    assert f.key == "gifs" and f.format == "video/h264-mp4" and f.animated and f.extension == ".mp4"


def test_core_outputs_animated_flags_and_formats() -> None:
    files = {f.filename: f for f in history_of("ws-success-core_outputs.json").output_files()}
    assert files["peer_webp_00002_.webp"].animated and files["peer_webp_00002_.webp"].format == "image/webp"
    assert files["peer_apng_00002_.png"].animated
    assert not files["peer_still_00003_.png"].animated and not files["peer_still_00004_.png"].animated
    mp4 = files["peer_core_00002_.mp4"]
    assert mp4.animated and mp4.subfolder == "video" and mp4.key == "images" and mp4.format == "video/mp4"


def test_execution_error_entry_explains_failure() -> None:
    entry = history_of("ws-execution_error.json")
    assert entry.failed and not entry.succeeded and not entry.interrupted
    assert entry.output_files() == []
    message = entry.error_message()
    assert message is not None and "LoadImage #1" in message and "PIL.UnidentifiedImageError" in message
    assert entry.extra_data["client_id"] == "34d52e8c620a4ba1986d8405e3e9bdfb"
    assert entry.number == 16


@pytest.mark.parametrize("name", ["ws-interrupted-global.json", "ws-interrupted-by_prompt_id.json"])
def test_interrupted_entry(name: str) -> None:
    entry = history_of(name)
    assert entry.interrupted and entry.failed and entry.output_files() == []
    assert (entry.error_message() or "").startswith("interrupted at")


def test_history_list_and_unknown_id() -> None:
    cases = load_fixture("http-history.json")["cases"]
    body = cases["GET_history_max_items_2"]["response"]["json"]
    entries = [HistoryEntry.from_json(k, v) for k, v in body.items()]
    assert len(entries) == 2 and all(e.status_str in ("success", "error") for e in entries)
    assert cases["GET_history_unknown_id"]["response"]["json"] == {}


def test_queue_pending_sorted_by_number_and_positions() -> None:
    requests = load_fixture("ws-queue_management.json")["requests"]
    body = requests["GET_queue_busy"]["response"]["json"]
    state = QueueState.from_json(body)
    numbers = [i.number for i in state.pending]
    assert numbers == sorted(numbers) and numbers[0] < 0  # the front:true job runs first
    running = state.running[0].prompt_id
    assert state.position(running) == 0 and state.contains(running)
    assert state.position(state.pending[0].prompt_id) == 1
    assert state.position("nope") is None and not state.contains("nope")
    assert state.size == 1 + len(state.pending)


def test_system_stats_and_queued_prompt() -> None:
    stats = SystemStats.from_json(load_fixture("http-system_stats.json")["response"]["json"])
    assert stats.comfyui_version == "0.8.0" and stats.python_version.startswith("3.11")
    assert stats.devices[0].type == "cpu" and stats.devices[0].vram_total > 0
    queued = QueuedPrompt.from_json(load_fixture("ws-success-vhs_gif.json")["post_prompt"]["response"]["json"])
    assert queued.node_errors == {} and queued.prompt_id


def _validation_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = load_fixture("http-prompt-validation_errors.json")["cases"]
    return [(k, c["response"]) for k, c in cases.items() if k.startswith("POST")]


@pytest.mark.parametrize(("case", "response"), _validation_cases(), ids=[c for c, _ in _validation_cases()])
def test_recorded_prompt_errors_map_to_exceptions(case: str, response: dict[str, Any]) -> None:
    import json

    body = json.dumps(response["json"]).encode() if "json" in response else response.get("text", "").encode()
    err = error_for_status("gpu-box", response["status"], body)
    if response["status"] == 500:
        assert isinstance(err, ComfyServerError) and err.status == 500
        return
    assert isinstance(err, ComfyValidationError)
    assert err.node_errors == response["json"]["node_errors"] and err.error == response["json"]["error"]
    assert err.server == "gpu-box" and err.summary and str(err).startswith("gpu-box: ")


def test_validation_summaries_are_readable() -> None:
    cases = {k: r["json"] for k, r in _validation_cases() if "json" in r}

    def summary(case: str) -> str:
        return ComfyValidationError("s", cases[case]["error"], cases[case]["node_errors"]).summary

    assert summary("POST_int_below_min") == "RepeatImageBatch #3: amount: Value 0 smaller than min of 1"
    assert summary("POST_missing_required_input") == "ImageScale #2: width: Required input is missing"
    assert summary("POST_svd_missing_checkpoint") == (
        "ImageOnlyCheckpointLoader #1: ckpt_name: Value not in list ('svd.safetensors' not in [])"
    )
    assert summary("POST_unknown_class_type") == "Cannot execute because node NoSuchNodeType does not exist. (Node ID '#4')"
    assert summary("POST_no_output_node") == "Prompt has no outputs"


def test_bare_400_is_bad_request() -> None:
    err = error_for_status("gpu-box", 400, b"400: Bad Request")
    assert isinstance(err, ComfyBadRequest) and not isinstance(err, ComfyValidationError) and err.status == 400
