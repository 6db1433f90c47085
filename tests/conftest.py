"""Shared test fixtures. Tests only ever talk to 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

pytest_plugins = ["standins.comfy_server.fixtures"]


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
