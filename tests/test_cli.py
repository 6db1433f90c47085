"""The command line as an operator meets it: clear one-line errors, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "COMFYUI_URLS", "LOG_LEVEL")}
    base["PYTHONPATH"] = str(ROOT)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=base, cwd=cwd, timeout=60
    )


def test_run_without_token_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "DISCORD_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_names_variable(tmp_path: Path) -> None:
    result = run_cli("run", env={"COMFYUI_URLS": "not a url", "DISCORD_TOKEN": "x" * 30}, cwd=tmp_path)
    assert result.returncode == 2
    assert "COMFYUI_URLS" in result.stderr and "Traceback" not in result.stderr


def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=verbose\n")
    result = run_cli("run", cwd=tmp_path)
    assert result.returncode == 2 and "LOG_LEVEL" in result.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_commands(tmp_path: Path, flag: str) -> None:
    result = run_cli(flag, cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "doctor", "animate"):
        assert command in result.stdout
