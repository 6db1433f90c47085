"""Picking the result file from recorded /history outputs, whatever key the node used."""

from __future__ import annotations

import json
from pathlib import Path

from bot.media.outputs import pick_result

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui"


def _outputs(name: str) -> dict:
    history = json.loads((FIXTURES / name).read_text())["history_after"]["response"]["json"]
    (entry,) = history.values()
    return entry["outputs"]


def test_vhs_gif_under_gifs_key() -> None:
    result = pick_result(_outputs("ws-success-vhs_gif.json"))
    assert result is not None
    assert (result.node_id, result.filename, result.format, result.is_video) == ("9", "peer_vhs_00004.gif", "gif", True)


def test_vhs_mp4_is_still_under_gifs_and_sidecar_png_is_skipped() -> None:
    outputs = _outputs("ws-success-vhs_h264_mp4.json")
    # older VHS versions also list the workflow sidecar PNG beside the video
    outputs["9"]["gifs"].insert(0, {"filename": "peer_vhs_00005.png", "subfolder": "", "type": "output"})
    result = pick_result(outputs)
    assert result is not None and result.filename == "peer_vhs_00005.mp4" and result.format == "mp4"


def test_core_nodes_prefer_the_video_over_stills() -> None:
    outputs = _outputs("ws-success-core_outputs.json")
    result = pick_result(outputs)
    assert result is not None
    assert (result.node_id, result.filename, result.subfolder, result.format) == ("15", "peer_core_00002_.mp4", "video", "mp4")
    webp = pick_result(outputs, prefer_format="webp")
    assert webp is not None and webp.filename == "peer_webp_00002_.webp" and webp.is_video
    still_only = {"13": outputs["13"]}
    still = pick_result(still_only)
    assert still is not None and not still.is_video and still.filename == "peer_still_00003_.png"


def test_no_files() -> None:
    assert pick_result({}) is None
    assert pick_result({"5": {"text": ["hello"]}}) is None
