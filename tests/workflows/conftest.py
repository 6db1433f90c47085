"""Fixtures for workflow tests: the repo's workflows folder and the recorded /object_info."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
FIXTURES = REPO / "tests" / "fixtures" / "comfyui"


def recorded_object_info() -> dict[str, Any]:
    """Every recorded node definition merged into one /object_info-like dict."""
    merged: dict[str, Any] = {}
    for path in sorted(FIXTURES.glob("http-object_info-*.json")):
        data = json.loads(path.read_text())
        if "classes" in data:
            merged.update(data["classes"])
        elif "json" in data.get("response", {}):
            merged.update(data["response"]["json"])
    return merged


@pytest.fixture
def object_info() -> dict[str, Any]:
    return recorded_object_info()


@pytest.fixture
def wf_dir(tmp_path: Path) -> Path:
    """A private copy of the workflows folder that a test may change."""
    dest = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, dest)
    return dest
