"""500 generated bad inputs: each one is refused with a member-facing message or handled.

Image cases go through ``prepare_image`` (as a member's attachment would), option cases through
``resolve_options`` (as a member's slash-command values would), name cases through
``content_upload_name`` (the upload name comes from the bytes only, whatever they hold). Refused means :class:`bot.errors.InvalidInput` with a short message that
shows no traceback or path; handled means a sane result (a metadata-free RGB PNG of a target
size; option values inside their bounds). Any other exception is a crash. The whole run must
keep the process's memory flat.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import math
import os
import pickle
import random
import re
import resource
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.errors import InvalidInput
from bot.media.images import DEFAULT_TARGETS, content_upload_name, prepare_image
from bot.tools.shell_animate import run_animate
from bot.workflows import Workflow, load_workflows, resolve_options
from standins.comfy_server.server import ComfyTestServer

from .generator import TOTAL, WORKFLOWS_DIR, Case, generate_cases

# Pillow warns about the very files this suite feeds it; the warnings are expected here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

CASES = generate_cases()
WORKFLOWS: dict[str, Workflow] = {w.name: w for w in load_workflows(WORKFLOWS_DIR).registry}

# Crashes found in other modules: case id -> reason (each must still fail: strict xfail). None open.
KNOWN_BUGS: dict[str, str] = {}

_FORBIDDEN_IN_MESSAGE = re.compile(r"Traceback|File \"|site-packages|/tmp|/work|/home|/usr|\\\\|\.py\b|0x[0-9a-f]{6,}")
_UPLOAD_NAME = re.compile(r"animate_[0-9a-f]{32}\.png")


def message_problem(exc: InvalidInput) -> str | None:
    message = exc.user_message
    if not message or not message.strip():
        return "empty user_message"
    if len(message) >= 300:
        return f"user_message is {len(message)} characters"
    if _FORBIDDEN_IN_MESSAGE.search(message):
        return f"user_message shows internals: {message!r}"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in message):
        return f"user_message has control characters: {message!r}"
    return None


def output_problem(prepared: Any) -> str | None:
    png = prepared.png
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        return "output is not a PNG"
    with Image.open(io.BytesIO(png)) as out:
        if out.size != (prepared.width, prepared.height) or out.size not in DEFAULT_TARGETS:
            return f"output size {out.size} is not a target size"
        if out.mode != "RGB":
            return f"output mode {out.mode}"
        leaked = set(out.info) - {"dpi"}
        if leaked:
            return f"output keeps metadata {sorted(leaked)}"
        out.load()
    return None


def check_image(case: Case) -> str | None:
    try:
        prepared = prepare_image(case.data, fit=case.fit, max_pixels=case.max_pixels)
    except InvalidInput as exc:
        if case.expect == "accept":
            return f"refused a valid image: {exc.user_message!r} ({exc.detail})"
        if case.must_say and not re.search(case.must_say, exc.user_message):
            return f"refused for the wrong reason: {exc.user_message!r}"
        return message_problem(exc)
    except Exception as exc:  # noqa: BLE001 - this is what the suite hunts for
        return f"crashed with {type(exc).__name__}: {exc}"
    if case.expect == "refuse":
        return f"accepted: {prepared.source_format} {prepared.source_size}"
    return output_problem(prepared)


def _in_bounds(spec: Any, value: Any) -> bool:
    if spec.type == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec.type == "float":
        ok = isinstance(value, float) and math.isfinite(value)
    elif spec.type == "choice":
        return value in spec.choices
    elif spec.type == "bool":
        return isinstance(value, bool)
    else:
        return isinstance(value, str)
    return ok and (spec.min is None or value >= spec.min) and (spec.max is None or value <= spec.max)


def check_option(case: Case) -> str | None:
    workflow = WORKFLOWS[case.workflow]
    try:
        resolved = resolve_options(workflow, case.options, random.Random(0))
    except InvalidInput as exc:
        if case.expect == "accept":
            return f"refused {case.options!r}: {exc.user_message!r}"
        return message_problem(exc)
    except Exception as exc:  # noqa: BLE001
        return f"crashed with {type(exc).__name__}: {exc}"
    if case.expect == "refuse":
        return f"accepted {case.options!r} as {resolved.as_dict()!r}"
    for spec in workflow.member_options:
        if spec.name not in resolved.values:
            return f"member option {spec.name} missing from the result"
        value = resolved[spec.name]
        if not _in_bounds(spec, value):
            return f"{spec.name} = {value!r} is out of bounds or of the wrong type"
    return None


def check_name(case: Case) -> str | None:
    try:
        raw = case.name.encode("utf-8", "surrogatepass")
        first, second = content_upload_name(raw), content_upload_name(raw + b"\x00")
    except Exception as exc:  # noqa: BLE001
        return f"crashed with {type(exc).__name__}: {exc}"
    for name in (first, second):
        if not _UPLOAD_NAME.fullmatch(name):
            return f"unsafe upload name {name!r}"
        if ".." in name or "/" in name or "\\" in name:
            return f"upload name {name!r} has a path part"
    if first == second:
        return "two different images got the same upload name"
    if content_upload_name(raw) != first:
        return "the same image got two upload names (ComfyUI would keep a copy of each)"
    return None


def check(case: Case) -> str | None:
    if case.kind == "image":
        return check_image(case)
    if case.kind == "option":
        return check_option(case)
    return check_name(case)


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case.id])] if case.id in KNOWN_BUGS else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case: Case) -> None:
    problem = check(case)
    assert problem is None, f"{case.id}: {problem}"


def test_generator_is_deterministic_and_complete() -> None:
    def digest(cases: list[Case]) -> str:
        h = hashlib.sha256()
        for c in cases:
            h.update(c.id.encode() + c.data + pickle.dumps(c.options) + c.name.encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    again = generate_cases()
    assert len(again) == TOTAL == 500
    assert digest(again) == digest(CASES)
    assert digest(generate_cases(seed=7)) != digest(CASES)
    kinds = {c.id.split("-")[0] for c in CASES}
    assert {"png", "jpeg", "webp", "gif", "bmp", "tiff", "bomb", "size", "type", "zeros", "random", "opt", "name"} <= kinds
    # every bound of every member option of every workflow is covered
    for workflow in WORKFLOWS.values():
        for spec in workflow.member_options:
            if spec.type in ("int", "float"):
                for label in ("min", "below-min", "max", "above-max"):
                    assert f"opt-{workflow.name}-{spec.name}-{label}" in {c.id for c in CASES}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.timeout(120)
def test_memory_stays_flat_over_the_whole_run() -> None:
    """All 500 cases on 2 threads, twice: the second pass must not grow the process."""
    runnable = [c for c in CASES if c.id not in KNOWN_BUGS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = list(pool.map(check, runnable))
        after_first = _rss_bytes()
        second = list(pool.map(check, runnable))
        after_second = _rss_bytes()
    assert [p for p in first if p] == [] and [p for p in second if p] == []
    growth = after_second - after_first
    assert growth < 48 * 1024 * 1024, f"RSS grew {growth / 2**20:.0f} MiB during the second pass"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak < 1024 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MiB"


async def test_upload_name_never_comes_from_the_members_file_name(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    """A hostile file name reaches neither the server's input folder nor the graph."""
    from tests.operator.helpers import settings_for

    folder = tmp_path / "in"
    folder.mkdir()
    hostile = folder / "..evil name\x1b[31m ünï 🐱;rm -rf.png"
    Image.new("RGB", (200, 120), (200, 30, 30)).save(hostile, format="PNG")
    args = argparse.Namespace(image=str(hostile), out=str(tmp_path / "o.gif"), workflow=None, server=None,
                              option=["frames=2", "steps=1"])
    settings = settings_for(tmp_path, [("gpu-box", comfy_server.url)])
    code = await asyncio.to_thread(run_animate, settings, args, out=io.StringIO(), err=io.StringIO())
    assert code == 0
    uploaded = [p.name for p in comfy_server.input_dir.iterdir()]
    assert uploaded and all(_UPLOAD_NAME.fullmatch(name) for name in uploaded), uploaded
    assert not any("evil" in name or "rm" in name for name in uploaded)
