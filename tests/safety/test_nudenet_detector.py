"""The real NudeNet detector, offline, on the model inside the installed wheel.

It finds the astronaut's face and nothing explicit, lets ordinary photos through, gives exactly
what ``nudenet.NudeDetector().detect`` gives, and turns every load problem into a one-line
``SafetyUnavailable``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import nudenet
import nudenet.nudenet as nn
import numpy as np
import pytest
from PIL import Image

from bot.safety import (
    Level,
    Mode,
    NudeNetDetector,
    RGBArray,
    SafetyDetector,
    SafetyUnavailable,
    Stage,
    Thresholds,
    UnreadableMedia,
    check_input,
    check_input_async,
    decide,
    detect_async,
    judge,
    packaged_model_path,
)
from bot.safety.verdict import Detections
from tests.safety.conftest import PHOTOS, photo, photo_path



@pytest.fixture(scope="module")
def theirs() -> nudenet.NudeDetector:
    """NudeNet's own detector (its own session, its default threads), to compare with."""
    return nudenet.NudeDetector()


def as_dicts(found: Detections) -> list[dict[str, object]]:
    """Our detections in NudeNet's own format, to compare with ``NudeDetector.detect``."""
    return [
        {"class": d.label, "score": d.score, "box": [d.box.x, d.box.y, d.box.width, d.box.height]} for d in found.items
    ]


def variants() -> list[tuple[str, RGBArray]]:
    """The photographs and some edits of them (flipped, cropped, rotated, small, a collage)."""
    out: list[tuple[str, RGBArray]] = []
    for name in PHOTOS:
        rgb = photo(name)
        h, w = rgb.shape[:2]
        out += [
            (f"{name}", rgb),
            (f"{name}-flipped", np.ascontiguousarray(rgb[:, ::-1])),
            (f"{name}-cropped", np.ascontiguousarray(rgb[h // 6 :, w // 5 : w - 7])),
            (f"{name}-rotated", np.ascontiguousarray(np.rot90(rgb))),
            (f"{name}-small", photo(name, (w // 3, h // 3))),
            (f"{name}-1024x576", photo(name, (1024, 576))),
        ]
    collage = Image.new("RGB", (1024, 576))
    collage.paste(Image.fromarray(photo("astronaut", (512, 512))), (0, 32))
    collage.paste(Image.fromarray(photo("coffee", (512, 341))), (512, 0))
    collage.paste(Image.fromarray(photo("chelsea", (512, 235))), (512, 341))
    out.append(("collage", np.asarray(collage)))
    return out


VARIANTS = variants()


def test_it_is_a_safety_detector(detector: NudeNetDetector) -> None:
    assert isinstance(detector, SafetyDetector)
    assert detector.loaded and detector.name.startswith("nudenet 3.4")
    assert packaged_model_path() == Path(nn.__file__).parent / "320n.onnx"


def test_finds_the_astronauts_face_and_nothing_explicit(detector: NudeNetDetector) -> None:
    found = detector.detect(photo("astronaut"))
    labels = {d.label: d for d in found.items}
    assert "FACE_FEMALE" in labels and labels["FACE_FEMALE"].score > 0.6
    face = labels["FACE_FEMALE"].box
    assert 150 < face.x + face.width / 2 < 300 and 60 < face.y + face.height / 2 < 200  # her face, not elsewhere
    verdict = judge(found, Thresholds())
    assert verdict.level is Level.CLEAN and verdict.labels == ()


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut"])
def test_ordinary_photos_pass_strict(detector: NudeNetDetector, name: str) -> None:
    verdict = check_input(detector, photo_path(name).read_bytes(), Thresholds())
    assert verdict.level is Level.CLEAN
    for stage in Stage:
        decision = decide(Mode.STRICT, verdict, stage=stage, age_restricted_channel=False, forced_strict=True)
        assert decision == "allow"


@pytest.mark.parametrize("name", PHOTOS)
def test_same_as_nudenet_on_the_files(detector: NudeNetDetector, theirs: nudenet.NudeDetector, name: str) -> None:
    assert as_dicts(detector.detect(photo(name))) == theirs.detect(str(photo_path(name)))


@pytest.mark.parametrize(("name", "rgb"), VARIANTS, ids=[name for name, _ in VARIANTS])
def test_same_as_nudenet_on_edited_photos(
    detector: NudeNetDetector, theirs: nudenet.NudeDetector, name: str, rgb: RGBArray
) -> None:
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # NudeNet takes arrays as OpenCV does: BGR
    assert as_dicts(detector.detect(rgb)) == theirs.detect(bgr)


def test_same_as_nudenet_with_two_threads(theirs: nudenet.NudeDetector) -> None:
    two = NudeNetDetector(intra_op_threads=2, inter_op_threads=2)
    two.load_sync()
    for _, rgb in VARIANTS:
        assert as_dicts(two.detect(rgb)) == theirs.detect(np.ascontiguousarray(rgb[:, :, ::-1]))


def test_the_variants_exercise_more_than_one_detection(detector: NudeNetDetector) -> None:
    counts = [len(detector.detect(rgb).items) for _, rgb in VARIANTS]
    assert sum(counts) >= 6 and 0 in counts  # with and without detections (busy cases: below)


@pytest.mark.parametrize("size", [(512, 512), (451, 300), (300, 451), (1024, 576), (37, 20)])
def test_preprocessing_gives_nudenets_blob(detector: NudeNetDetector, size: tuple[int, int]) -> None:
    rgb = photo("chelsea", size)
    blob, x_pad, y_pad = detector._preprocess(rgb)
    theirs = nn._read_image(np.ascontiguousarray(rgb[:, :, ::-1]), 320)
    assert np.array_equal(blob, theirs[0]) and (x_pad, y_pad) == (theirs[3], theirs[4])


@pytest.mark.parametrize("seed", range(6))
def test_postprocessing_gives_nudenets_boxes_on_busy_outputs(detector: NudeNetDetector, seed: int) -> None:
    """Random raw outputs with many candidates over the floor, overlapping and crossing the edges."""
    rng = np.random.default_rng(seed)
    n = 2100
    output = np.zeros((1, 22, n), dtype=np.float32)
    output[0, 0:2] = rng.uniform(-20, 340, (2, n))
    output[0, 2:4] = rng.uniform(1, 200, (2, n))
    output[0, 4:] = rng.uniform(0, 0.3, (18, n)) ** 2
    hot = rng.choice(n, 150, replace=False)
    output[0, 4 + rng.integers(0, 18, 150), hot] = rng.uniform(0.15, 0.99, 150)
    width, height = [(640, 360), (300, 451), (512, 512)][seed % 3]
    x_pad, y_pad = max(width, height) - width, max(width, height) - height
    best = output[0, 4:].max(axis=0)
    assert ((best >= 0.2) & (best <= 0.25)).any()  # candidates NudeNet keeps but its NMS then drops
    ours = detector._postprocess(output, width, height, x_pad, y_pad)
    theirs = nn._postprocess([output], x_pad, y_pad, 1.0, 1.0, width, height, 320, 320)
    assert len(theirs) > 10
    assert as_dicts(Detections(ours, width, height)) == theirs
    assert all(d.score > 0.25 for d in ours)  # NMS's score threshold is the real floor


def test_bad_arrays_are_refused(detector: NudeNetDetector) -> None:
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32),
                np.zeros((0, 10, 3), np.uint8)):
        with pytest.raises(ValueError):
            detector.detect(bad)  # type: ignore[arg-type]  # deliberately the wrong kind of array


def test_inputs_as_bytes_pil_or_array_agree(detector: NudeNetDetector) -> None:
    data = photo_path("astronaut").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        results = {check_input(detector, source, Thresholds()).scores for source in (data, im, photo("astronaut"))}
    assert len(results) == 1
    with pytest.raises(UnreadableMedia, match="cannot decode"):
        check_input(detector, b"not an image", Thresholds())


async def test_async_load_and_detect_run_off_the_event_loop() -> None:
    fresh = NudeNetDetector()
    assert not fresh.loaded
    with pytest.raises(SafetyUnavailable, match="not loaded"):
        fresh.detect(photo("astronaut"))
    await fresh.load()
    await fresh.load()  # a second call does nothing
    found = await detect_async(fresh, photo("astronaut"))
    assert [d.label for d in found.items] == ["FACE_FEMALE"]
    verdict = await check_input_async(fresh, photo_path("coffee").read_bytes(), Thresholds())
    assert verdict.level is Level.CLEAN


# Load failures: one line, our exception.
def assert_one_line(exc: SafetyUnavailable) -> None:
    assert str(exc) == exc.reason and "\n" not in exc.reason and 0 < len(exc.reason) < 400


def test_corrupt_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "320n.onnx"
    bad.write_bytes(b"\x08\x07this is not an onnx model" * 100)
    with pytest.raises(SafetyUnavailable, match=r"cannot load the NudeNet model 320n.onnx") as info:
        NudeNetDetector(bad).load_sync()
    assert_one_line(info.value)


def test_truncated_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(packaged_model_path().read_bytes()[:200_000])
    with pytest.raises(SafetyUnavailable, match="cannot load") as info:
        NudeNetDetector(bad).load_sync()
    assert_one_line(info.value)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(SafetyUnavailable, match="model file not found") as info:
        NudeNetDetector(tmp_path / "nothing.onnx").load_sync()
    assert_one_line(info.value)


async def test_async_load_failure_is_the_same_exception(tmp_path: Path) -> None:
    detector = NudeNetDetector(tmp_path / "nothing.onnx")
    with pytest.raises(SafetyUnavailable):
        await detector.load()
    assert not detector.loaded


def test_nudenet_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nudenet" else real(name, *a))
    with pytest.raises(SafetyUnavailable, match="nudenet is not installed") as info:
        NudeNetDetector().load_sync()
    assert_one_line(info.value)


def test_onnxruntime_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(SafetyUnavailable, match="onnxruntime is not installed") as info:
        NudeNetDetector().load_sync()
    assert_one_line(info.value)


def test_model_file_missing_from_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.machinery
    import importlib.util

    empty = tmp_path / "nudenet"
    empty.mkdir()
    spec = importlib.machinery.ModuleSpec("nudenet", None, is_package=True)
    spec.submodule_search_locations = [str(empty)]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "nudenet" else real(name, *a))
    with pytest.raises(SafetyUnavailable, match="320n.onnx is missing") as info:
        NudeNetDetector().load_sync()
    assert_one_line(info.value)


def test_thread_counts_are_checked() -> None:
    with pytest.raises(ValueError):
        NudeNetDetector(intra_op_threads=0)
