"""Every workflow in workflows/, for every choice a member can make, is a graph a real server accepts.

Two layers:
- the graphs a job can send (each format, each fit, every member number at its min and max, the
  three target sizes) are checked with the test server's validator (the rules ComfyUI 0.8.0
  applies to POST /prompt, on the recorded /object_info), plus the rule VHS adds: every
  per-format input listed for the chosen format is present with a valid value;
- each format of each workflow is posted to a running test server, which answers 200, runs it
  and writes a file of that format.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.workflows import Workflow, inject, load_workflows, validate_against
from bot.workflows.validate import combo_options
from standins.comfy_server.nodedefs import Validator, load_node_definitions, with_dynamic_lists
from standins.wait import wait_until

from .conftest import WORKFLOWS

IMAGE = "animate_check.png"
CHECKPOINT = "svd_xt_1_1.safetensors"
SIZES = ((1024, 576), (576, 1024), (768, 768))


def _workflows() -> list[Workflow]:
    loaded = load_workflows(WORKFLOWS)
    assert not loaded.errors, [str(e) for e in loaded.errors]
    return list(loaded.registry)


def _option_sets(workflow: Workflow) -> list[dict[str, Any]]:
    """Every combination of member choices, each with member numbers at min, default and max."""
    choices = [s for s in workflow.member_options if s.type == "choice"]
    numbers = [s for s in workflow.member_options if s.type in ("int", "float")]
    sets = []
    for combo in itertools.product(*(s.choices for s in choices)):
        base = {s.name: c for s, c in zip(choices, combo)}
        for bound in ("min", None, "max"):
            values = dict(base)
            if bound is not None:
                values.update({s.name: getattr(s, bound) for s in numbers if getattr(s, bound) is not None})
            values.setdefault("seed", 12345)
            sets.append(values)
    return sets


def _graphs(workflow: Workflow) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for options, (w, h) in itertools.product(_option_sets(workflow), SIZES):
        graph = inject(workflow, options, image_name=IMAGE, width=w, height=h, filename_prefix="job_check", rng=random.Random(0))
        out.append((f"{workflow.name} {options} {w}x{h}", graph))
    return out


def _validator() -> Validator:
    defs = with_dynamic_lists(load_node_definitions(), [IMAGE], [CHECKPOINT])
    return Validator(lambda: defs, lambda name: name == IMAGE)


def _vhs_format_problems(graph: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """VHS's own rule: the chosen format's listed inputs are all present with valid values."""
    problems = []
    for node_id, node in graph.items():
        if node["class_type"] != "VHS_VideoCombine":
            continue
        inputs = node["inputs"]
        fmt_spec = defs["VHS_VideoCombine"]["input"]["required"]["format"]
        assert inputs["format"] in fmt_spec[0]
        for widget in fmt_spec[1]["formats"].get(inputs["format"], []):
            name, kind = widget[0], widget[1]
            limits = widget[2] if len(widget) > 2 else {}
            if name not in inputs:
                problems.append(f"node {node_id} {inputs['format']}: {name} missing")
                continue
            value = inputs[name]
            if isinstance(kind, list):
                ok = value in kind
            elif kind == "BOOLEAN":
                ok = isinstance(value, bool)
            elif kind == "INT":
                ok = isinstance(value, int) and not isinstance(value, bool) and limits.get("min", value) <= value <= limits.get("max", value)
            else:
                ok = True
            if not ok:
                problems.append(f"node {node_id} {inputs['format']}: {name}={value!r} invalid")
        # inputs of another format must not linger (VHS would read them for nothing)
        listed = {w[0] for ws in fmt_spec[1]["formats"].values() for w in ws}
        mine = {w[0] for w in fmt_spec[1]["formats"].get(inputs["format"], [])}
        stale = sorted((listed - mine) & set(inputs))
        if stale:
            problems.append(f"node {node_id} {inputs['format']}: inputs of other formats left: {stale}")
    return problems


@pytest.mark.parametrize("workflow", _workflows(), ids=lambda w: w.name)
def test_every_graph_a_member_can_ask_for_passes_server_validation(workflow: Workflow) -> None:
    validator = _validator()
    defs = load_node_definitions()
    graphs = _graphs(workflow)
    assert len(graphs) >= 9
    for label, graph in graphs:
        ok, error, outputs, node_errors = validator.validate(copy.deepcopy(graph))
        assert ok and not node_errors, f"{label}: {error} {json.dumps(node_errors)[:800]}"
        assert len(outputs) == 1, f"{label}: one output node expected, got {outputs}"
        assert _vhs_format_problems(graph, defs) == [], label


def test_each_vhs_format_sets_exactly_the_inputs_vhs_lists() -> None:
    defs = load_node_definitions()
    formats = defs["VHS_VideoCombine"]["input"]["required"]["format"][1]["formats"]
    svd = next(w for w in _workflows() if "VHS_VideoCombine" in w.class_types())
    spec = svd.options["format"]
    for choice in spec.choices:
        graph = inject(svd, {"format": choice, "seed": 1}, image_name=IMAGE, width=1024, height=576, filename_prefix="p")
        node = next(n for n in graph.values() if n["class_type"] == "VHS_VideoCombine")
        listed = {w[0] for w in formats.get(node["inputs"]["format"], [])}
        assert listed <= set(node["inputs"]), (choice, listed - set(node["inputs"]))
        assert node["inputs"]["frame_rate"] == graph[svd.nodes["conditioning"]]["inputs"]["fps"]
    mp4 = inject(svd, {"format": "mp4", "fps": 12, "seed": 1}, image_name=IMAGE, width=1024, height=576, filename_prefix="p")
    video = next(n for n in mp4.values() if n["class_type"] == "VHS_VideoCombine")["inputs"]
    assert (video["pix_fmt"], video["save_metadata"], video["trim_to_audio"], video["frame_rate"]) == ("yuv420p", False, False, 12)


def test_validation_reports_a_format_input_the_manifest_forgot(tmp_path: Path) -> None:
    """If a manifest stops setting pix_fmt for mp4, the doctor's validation says so."""
    from .conftest import recorded_object_info

    wf_dir = tmp_path / "wf"
    wf_dir.mkdir()
    (wf_dir / "svd_img2vid.json").write_bytes((WORKFLOWS / "svd_img2vid.json").read_bytes())
    toml = (WORKFLOWS / "svd_img2vid.toml").read_text().replace('"video.pix_fmt" = "yuv420p"\n', "")
    (wf_dir / "svd_img2vid.toml").write_text(toml)
    workflow = next(iter(load_workflows(wf_dir).registry))
    info = recorded_object_info()
    info["ImageOnlyCheckpointLoader"]["input"]["required"]["ckpt_name"] = [[CHECKPOINT]]
    problems = validate_against(workflow, info)
    assert [(p.kind, p.input) for p in problems] == [("missing_input", "pix_fmt")]
    assert "video/h264-mp4" in problems[0].message


def test_validation_reports_a_member_range_the_server_refuses(tmp_path: Path) -> None:
    from .conftest import recorded_object_info

    wf_dir = tmp_path / "wf"
    wf_dir.mkdir()
    (wf_dir / "svd_img2vid.json").write_bytes((WORKFLOWS / "svd_img2vid.json").read_bytes())
    toml = (WORKFLOWS / "svd_img2vid.toml").read_text()
    toml = toml.replace("max = 255\n", "max = 2000\n", 1)  # motion: the server allows 1..1023
    (wf_dir / "svd_img2vid.toml").write_text(toml)
    workflow = next(iter(load_workflows(wf_dir).registry))
    info = recorded_object_info()
    info["ImageOnlyCheckpointLoader"]["input"]["required"]["ckpt_name"] = [[CHECKPOINT]]
    problems = validate_against(workflow, info)
    assert [(p.kind, p.input) for p in problems] == [("bad_value", "motion_bucket_id")]
    assert "above the server's max 1023" in problems[0].message
    assert combo_options(info["KSampler"]["input"]["required"]["sampler_name"])  # shapes understood


def _png() -> bytes:
    buf = io.BytesIO()
    Image.linear_gradient("L").resize((1024, 576)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


_MAGIC = {"gif": b"GIF8", "webp": b"WEBP", "mp4": b"ftyp"}


@pytest.mark.timeout(90)
async def test_each_format_of_each_workflow_is_accepted_and_run_by_the_server(comfy_server) -> None:
    (comfy_server.input_dir / IMAGE).write_bytes(_png())
    async with aiohttp.ClientSession() as session:
        for workflow in _workflows():
            for choice in workflow.options["format"].choices:
                options = {"format": choice, "frames": 2, "steps": 1, "seed": 7}
                graph = inject(workflow, options, image_name=IMAGE, width=1024, height=576, filename_prefix=f"chk_{workflow.name}_{choice}")
                async with session.post(f"{comfy_server.url}/prompt", json={"prompt": graph, "client_id": "check"}) as resp:
                    body = await resp.json(content_type=None)
                    assert resp.status == 200, f"{workflow.name} {choice}: {body}"
                prompt_id = body["prompt_id"]
                entry: dict[str, Any] = {}

                async def ended(prompt_id: str = prompt_id) -> bool:
                    nonlocal entry
                    async with session.get(f"{comfy_server.url}/history/{prompt_id}") as resp:
                        entry = (await resp.json()).get(prompt_id, {})
                    return entry.get("status", {}).get("completed") is not None and bool(entry["status"].get("status_str"))

                await wait_until(ended, timeout=30, what=f"{workflow.name} {choice} to end", interval=0.05)
                assert entry.get("status", {}).get("status_str") == "success", f"{workflow.name} {choice}: {entry.get('status')}"
                files = [
                    item for out in entry["outputs"].values() for items in out.values() if isinstance(items, list)
                    for item in items if isinstance(item, dict) and item.get("filename", "").split(".")[-1] != "png"
                ]
                assert len(files) == 1, files
                item = files[0]
                path = comfy_server.output_dir / item.get("subfolder", "") / item["filename"]
                assert _MAGIC[choice] in path.read_bytes()[:16], (workflow.name, choice, item)
