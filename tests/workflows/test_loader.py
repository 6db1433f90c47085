"""Loading workflows: binding by class_type, re-exports, and refusals that say what to do."""

from __future__ import annotations

import json
import random
import tomllib
from pathlib import Path

import pytest

from bot.workflows import WorkflowError, build_workflow, inject, load_workflow, load_workflows

from .conftest import WORKFLOWS


def test_every_file_in_workflows_loads() -> None:
    result = load_workflows(WORKFLOWS)
    assert result.errors == []
    jsons = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    assert len(result.registry) == len(jsons) >= 2
    for wf in result.registry:
        assert wf.description
        assert wf.progress_node_id in wf.template
        for opt in wf.member_options:
            assert opt.description, opt.name
        # every workflow can build a job graph with its defaults
        graph = inject(wf, {}, image_name="x.png", width=1024, height=576, filename_prefix="t", rng=random.Random(0))
        assert all("class_type" in n for n in graph.values())


def test_seed_workflow_is_the_unchanged_export() -> None:
    ours = json.loads((WORKFLOWS / "svd_img2vid.json").read_text(encoding="utf-8"))
    assert ours["24"]["_meta"]["title"] == "合并为视频"
    assert ours["23"]["class_type"] == "LoadImage"


def test_seed_workflow_binds_by_class_type() -> None:
    wf = load_workflow(WORKFLOWS / "svd_img2vid.json")
    registry = load_workflows(WORKFLOWS).registry
    assert registry.default is not None and registry.default.name == "svd_img2vid"
    assert registry.get("SVD_IMG2VID") is not None and registry.get("nope") is None
    assert wf.progress_node_id == "3" and wf.output_node_id == "24"
    motion = wf.options["motion"]
    assert [(t.node_id, t.input) for t in motion.targets] == [("12", "motion_bucket_id")]
    fps = wf.options["fps"]
    assert {(t.node_id, t.input) for t in fps.targets} == {("12", "fps"), ("24", "frame_rate")}
    assert [(t.node_id, t.input) for t in wf.derived["image"]] == [("23", "image")]
    assert {o.name for o in wf.member_options} == {"motion", "frames", "fps", "seed", "augmentation", "steps", "cfg", "format", "fit", "loop"}
    assert [(t.node_id, t.input) for t in wf.options["loop"].targets] == [("24", "pingpong")]
    assert wf.options["seed"].max == 2**53 - 1 and wf.options["seed"].random
    assert wf.describe_progress("3", 4, 20) == "step 4 of 20"
    assert wf.describe_progress("24", 4, 14) == "encoding"


def test_reexport_with_renumbered_ids_still_binds(wf_dir: Path) -> None:
    original = json.loads((wf_dir / "svd_img2vid.json").read_text(encoding="utf-8"))
    renumber = {old: str(100 + i) for i, old in enumerate(sorted(original, key=int))}
    renumbered = {}
    for old, node in original.items():
        node = json.loads(json.dumps(node))
        for key, value in node["inputs"].items():
            if isinstance(value, list):
                node["inputs"][key] = [renumber[value[0]], value[1]]
        renumbered[renumber[old]] = node
    (wf_dir / "svd_img2vid.json").write_text(json.dumps(renumbered), encoding="utf-8")
    wf = load_workflow(wf_dir / "svd_img2vid.json")
    graph = inject(wf, {"motion": 200, "seed": 7}, image_name="up.png", width=576, height=1024, filename_prefix="job")
    cond = next(n for n in graph.values() if n["class_type"] == "SVD_img2vid_Conditioning")
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")
    assert (cond["inputs"]["motion_bucket_id"], cond["inputs"]["width"], cond["inputs"]["height"]) == (200, 576, 1024)
    assert sampler["inputs"]["seed"] == 7
    assert wf.progress_node_id == renumber["3"]


def test_ui_format_file_is_refused_with_what_to_do(wf_dir: Path) -> None:
    (wf_dir / "ui.json").write_text(json.dumps({"last_node_id": 3, "nodes": [], "links": []}))
    (wf_dir / "ui.toml").write_text((wf_dir / "svd_img2vid.toml").read_text(encoding="utf-8").replace('name = "svd_img2vid"', 'name = "ui"'))
    result = load_workflows(wf_dir)
    assert [e.path.name for e in result.errors] == ["ui.json"]
    assert "Save (API Format)" in result.errors[0].message
    assert "svd_img2vid" in result.registry.names()  # one bad file does not stop the others


def _manifest() -> dict:
    return tomllib.loads((WORKFLOWS / "svd_img2vid.toml").read_text(encoding="utf-8"))


def _graph() -> dict:
    return json.loads((WORKFLOWS / "svd_img2vid.json").read_text(encoding="utf-8"))


def test_binding_to_missing_node_is_refused() -> None:
    graph = _graph()
    del graph["24"]
    with pytest.raises(WorkflowError, match="no node with class_type 'VHS_VideoCombine'"):
        build_workflow(graph, _manifest(), fallback_name="x")


def test_ambiguous_binding_asks_for_a_title() -> None:
    graph = _graph()
    graph["99"] = json.loads(json.dumps(graph["3"]))
    graph["99"]["_meta"]["title"] = "second sampler"
    with pytest.raises(WorkflowError, match="add a distinct title"):
        build_workflow(graph, _manifest(), fallback_name="x")
    manifest = _manifest()
    manifest["nodes"]["sampler"] = {"class_type": "KSampler", "title": "K采样器"}
    wf = build_workflow(graph, manifest, fallback_name="x")
    assert wf.nodes["sampler"] == "3"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["options"]["motion"].update(default=999), "outside its range"),
        (lambda m: m["options"]["motion"].update(type="decimal"), "type must be one of"),
        (lambda m: m["options"]["motion"].update(bind=["conditioning.no_such_input"]), "has no input 'no_such_input'"),
        (lambda m: m["options"]["format"].update(default="avi"), "not one of the choices"),
        (lambda m: m["options"]["motion"].update(bind=["nowhere.x"]), "unknown node alias"),
        (lambda m: m["nodes"]["sampler"].update(id="3"), "not by node id"),
    ],
)
def test_bad_manifest_is_refused(change, message: str) -> None:
    manifest = _manifest()
    change(manifest)
    with pytest.raises(WorkflowError, match=message):
        build_workflow(_graph(), manifest, fallback_name="x")


def test_missing_manifest_and_bad_json_are_reported_per_file(wf_dir: Path) -> None:
    (wf_dir / "lonely.json").write_text(json.dumps(_graph()))
    (wf_dir / "broken.json").write_text("{not json")
    (wf_dir / "broken.toml").write_text("")
    result = load_workflows(wf_dir)
    messages = {e.path.name: e.message for e in result.errors}
    assert "add lonely.toml" in messages["lonely.json"]
    assert "not valid JSON" in messages["broken.json"]
    assert len(result.registry) == 2
