"""``METRICS_ADDRESS`` and ``LOG_FORMAT`` at the command line: a bad value, or an address already
in use, stops ``python -m bot run`` with one line (exit status 2), never a traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.test_cli import run_cli

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.secretsecretsecretsecret"


@pytest.mark.parametrize(("variable", "value"), [
    ("METRICS_ADDRESS", "9108"), ("METRICS_ADDRESS", "127.0.0.1:99999"), ("METRICS_ADDRESS", "::1:9108"),
    ("METRICS_ADDRESS", "http://127.0.0.1:9108"), ("LOG_FORMAT", "yaml"),
])
def test_a_bad_value_stops_the_bot_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    result = run_cli("run", env={"DISCORD_TOKEN": TOKEN, variable: value}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"error: {variable}: ") and "Traceback" not in result.stderr


def test_an_address_in_use_stops_the_bot_before_it_logs_in(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", env={"DISCORD_TOKEN": TOKEN, "METRICS_ADDRESS": f"127.0.0.1:{port}",
                                     "LOG_FORMAT": "json", "DATA_DIR": str(tmp_path / "data"),
                                     "COMFYUI_URLS": "gpu=http://127.0.0.1:9"}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [json.loads(line) for line in result.stderr.splitlines() if '"ERROR"' in line]
    assert [e["message"] for e in errors if "METRICS_ADDRESS" in e["message"]] == [
        f"METRICS_ADDRESS: cannot listen on port {port} (address already in use)"]
    assert "Traceback" not in result.stderr and TOKEN not in result.stderr
