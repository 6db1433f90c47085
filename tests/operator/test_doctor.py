"""``python -m bot doctor`` against ComfyUI test servers: what an operator reads, and the exit status."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.safety import NudeNetDetector, SafetyDetector
from bot.tools.doctor import run_doctor, token_problem
from bot.settings import Settings
from standins.fake_safety import FakeSafetyDetector
from standins.comfy_server.server import ComfyTestServer

from .helpers import (
    COMFY_TOKEN,
    GOOD_TOKEN,
    WORKFLOWS,
    bot_command,
    env_for,
    free_port,
    process_env,
    settings_for,
    write_safetensors,
)

Factory = Callable[..., Awaitable[ComfyTestServer]]


async def doctor(settings: Settings, detector: SafetyDetector | None = None) -> tuple[int, str]:
    """Run the doctor as the CLI does (its own event loop, in a thread) and capture its output."""
    out = io.StringIO()
    code = await asyncio.to_thread(functools.partial(run_doctor, settings, out, detector=detector))
    return code, out.getvalue()


def lines_with(output: str, status: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(status + " ")]


async def test_healthy_server_passes_with_exit_0(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, [("gpu-box", comfy_server.url)])
    code, out = await doctor(settings)
    assert code == 0, out
    assert lines_with(out, "FAIL") == []
    server_line = next(line for line in out.splitlines() if line.startswith("PASS  server gpu-box:"))
    assert "ComfyUI 0.8.0" in server_line and "queue 0" in server_line
    assert any("server gpu-box gpu" in line and "cpu" in line for line in out.splitlines())
    for name in ("svd_img2vid", "svd_img2vid_core"):
        assert f"PASS  workflow {name} on gpu-box:" in out
    assert "PASS  discord token" in out and "PASS  data folder" in out and "PASS  job store" in out
    assert "permissions=274878024704" in out and "client_id=APPLICATION_ID" in out
    safety = next(line for line in out.splitlines() if "safety detector" in line)
    assert safety.startswith("PASS  safety detector: nudenet 3.4") and " loaded in " in safety
    # the recorded checkpoint has no file on the test server: metadata is advice, not a failure
    assert any(line.startswith("WARN  checkpoint svd_xt_1_1.safetensors on gpu-box") for line in out.splitlines())
    assert GOOD_TOKEN not in out and comfy_server.url not in out and "127.0.0.1" not in out
    assert out.splitlines()[-1].startswith("OK:")


async def test_checkpoint_metadata_is_shown_when_the_server_offers_it(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    write_safetensors(
        comfy_server.root / "models" / "checkpoints" / "svd_xt_1_1.safetensors",
        {"modelspec.title": "Stable Video Diffusion XT 1.1", "modelspec.architecture": "stable-video-diffusion-img2vid-v1"},
    )
    code, out = await doctor(settings_for(tmp_path, [("gpu-box", comfy_server.url)]))
    assert code == 0, out
    line = next(line for line in out.splitlines() if "checkpoint svd_xt_1_1.safetensors on gpu-box" in line)
    assert line.startswith("PASS") and "Stable Video Diffusion XT 1.1" in line


async def test_missing_checkpoint_fails_naming_it_and_listing_what_the_server_has(
    comfy_server_factory: Factory, tmp_path: Path
) -> None:
    server = await comfy_server_factory(checkpoints=["sd_xl_base_1.0.safetensors", "svd.safetensors"])
    code, out = await doctor(settings_for(tmp_path, [("gpu-box", server.url)]))
    assert code == 1
    fails = [line for line in lines_with(out, "FAIL") if line.startswith("FAIL  workflow svd_img2vid on gpu-box")]
    assert fails, out
    assert "svd_xt_1_1.safetensors" in fails[0]
    assert "sd_xl_base_1.0.safetensors" in fails[0] and "svd.safetensors" in fails[0]
    assert out.splitlines()[-1].startswith("FAILED:")


async def test_server_without_vhs_or_checkpoint_reports_both_at_once(comfy_server_factory: Factory, tmp_path: Path) -> None:
    """A server without VideoHelperSuite and without checkpoints: one line names the node pack to
    install and the missing checkpoint together; the core-nodes workflow's line names only the
    checkpoint."""
    server = await comfy_server_factory(checkpoints=[])
    server.uninstall("VHS_VideoCombine")  # as if the node pack were not installed
    code, out = await doctor(settings_for(tmp_path, [("gpu-box", server.url)]))
    assert code == 1
    vhs = next(line for line in lines_with(out, "FAIL") if line.startswith("FAIL  workflow svd_img2vid on gpu-box"))
    assert "VHS_VideoCombine" in vhs and "ComfyUI-VideoHelperSuite" in vhs
    assert "svd_xt_1_1.safetensors" in vhs and "no checkpoints installed" in vhs
    core = next(line for line in lines_with(out, "FAIL") if line.startswith("FAIL  workflow svd_img2vid_core on gpu-box"))
    assert "no checkpoints installed" in core and "VideoHelperSuite" not in core
    assert len(out.splitlines()) == len(set(out.splitlines()))  # one line per check


async def test_a_format_the_server_lacks_is_a_warning_the_workflow_still_runs(
    comfy_server_factory: Factory, tmp_path: Path
) -> None:
    server = await comfy_server_factory()
    server.offer_only("VHS_VideoCombine", "format", ["image/gif", "video/h264-mp4"])  # an older VHS
    code, out = await doctor(settings_for(tmp_path, [("gpu-box", server.url)]))
    line = next(line for line in out.splitlines() if line.split("  ", 1)[-1].startswith("workflow svd_img2vid on gpu-box"))
    assert line.startswith("WARN") and "runs, but the server refuses some option values" in line
    assert "'image/webp'" in line
    assert code == 0 and not lines_with(out, "FAIL"), out  # a warning: every job with another format runs


async def test_server_without_any_checkpoint_says_so(comfy_server_factory: Factory, tmp_path: Path) -> None:
    server = await comfy_server_factory(checkpoints=[])
    code, out = await doctor(settings_for(tmp_path, [("gpu-box", server.url)]))
    assert code == 1
    assert any("svd_xt_1_1.safetensors" in line and "no checkpoints installed" in line for line in lines_with(out, "FAIL"))


async def test_down_server_fails_and_the_other_is_still_checked(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    code, out = await doctor(settings_for(tmp_path, [("good", comfy_server.url), ("dead", down)]))
    assert code == 1
    assert any(line.startswith("FAIL  server dead:") and "cannot connect" in line for line in out.splitlines())
    assert any(line.startswith("PASS  server good:") for line in out.splitlines())
    assert "PASS  workflow svd_img2vid on good" in out
    assert down not in out


async def test_ui_format_workflow_file_fails_with_the_loader_message(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, folder)
    (folder / "from_editor.json").write_text('{"last_node_id": 3, "nodes": [{"id": 1, "type": "LoadImage"}], "links": []}')
    shutil.copy(folder / "svd_img2vid.toml", folder / "from_editor.toml")
    code, out = await doctor(settings_for(tmp_path, [("gpu-box", comfy_server.url)], WORKFLOWS_DIR=str(folder)))
    assert code == 1
    line = next(line for line in lines_with(out, "FAIL") if "from_editor.json" in line)
    assert "UI-format" in line and "API" in line
    assert "PASS  workflow svd_img2vid on gpu-box" in out  # the good files still load and validate


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "not set"),
        ("x" * 40, "3 parts"),
        ("MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abc+def/ghijklmnopqrstuv", "part 3"),
        ("aGVsbG8gd29ybGQgdGhpcw.GhIjKl.abcdefghijklmnopqrstuvwxyz", "application id"),
    ],
)
async def test_bad_discord_token_fails_without_showing_it(
    comfy_server: ComfyTestServer, tmp_path: Path, token: str | None, expected: str
) -> None:
    settings = settings_for(tmp_path, [("gpu-box", comfy_server.url)], DISCORD_TOKEN=token or "")
    code, out = await doctor(settings)
    assert code == 1
    line = next(line for line in out.splitlines() if "discord token" in line)
    assert line.startswith("FAIL") and expected in line
    if token:
        assert token not in out
        for part in token.split("."):
            assert part not in out


def test_token_form_accepts_a_real_looking_token() -> None:
    assert token_problem(GOOD_TOKEN) is None


async def test_credentials_are_never_printed(comfy_server_factory: Factory, tmp_path: Path) -> None:
    basic = await comfy_server_factory(basic_auth=("operator", "hunter2-very-secret"))
    bearer = await comfy_server_factory(api_token=COMFY_TOKEN)
    basic_url = basic.url.replace("http://", "http://operator:hunter2-very-secret@")
    settings = settings_for(tmp_path, [("basic", basic_url), ("bearer", bearer.url)])
    code, out = await doctor(settings)
    # the bearer server accepts the token only when COMFYUI_TOKEN is set; basic auth works by URL
    assert any(line.startswith("PASS  server basic:") for line in out.splitlines()), out
    assert any(line.startswith("FAIL  server bearer:") and "access refused" in line for line in out.splitlines())
    assert code == 1
    code, out2 = await doctor(settings_for(tmp_path, [("bearer", bearer.url)], COMFYUI_TOKEN=COMFY_TOKEN))
    assert code == 0, out2
    for secret in ("hunter2-very-secret", COMFY_TOKEN, GOOD_TOKEN, basic.url, bearer.url):
        assert secret not in out + out2


async def test_data_folder_that_cannot_be_created_fails(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out = await doctor(settings_for(tmp_path, [("gpu-box", comfy_server.url)], DATA_DIR=str(blocker / "data")))
    assert code == 1
    assert any(line.startswith("FAIL  data folder") for line in out.splitlines())
    assert any(line.startswith("FAIL  job store") for line in out.splitlines())


async def test_store_from_a_newer_bot_fails(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    import sqlite3

    from bot.storage import SCHEMA_VERSION

    settings = settings_for(tmp_path, [("gpu-box", comfy_server.url)])
    settings.data_dir.mkdir(parents=True)
    with sqlite3.connect(settings.store_path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    code, out = await doctor(settings)
    assert code == 1
    line = next(line for line in out.splitlines() if "job store" in line)
    assert line.startswith("FAIL") and "schema version" in line


async def test_python_m_bot_doctor_subprocess(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    env = process_env(env_for(tmp_path, [("gpu-box", comfy_server.url)]))
    proc = await asyncio.create_subprocess_exec(
        *bot_command("doctor"), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    out = stdout.decode()
    assert proc.returncode == 0, out + stderr.decode()
    assert "PASS  server gpu-box:" in out and "FAIL" not in out
    assert GOOD_TOKEN not in out + stderr.decode()
    assert "Traceback" not in stderr.decode()

    env["COMFYUI_URLS"] = f"dead=http://127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        *bot_command("doctor"), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "FAIL  server dead:" in stdout.decode() and "Traceback" not in stderr.decode()


async def test_doctor_says_whether_metrics_are_on_and_where(comfy_server: ComfyTestServer, tmp_path: Path) -> None:
    from dataclasses import replace

    settings = settings_for(tmp_path, [("gpu-box", comfy_server.url)])
    _, out = await doctor(settings)
    assert "PASS  metrics: off (set METRICS_ADDRESS" in out
    port = free_port()
    code, out = await doctor(replace(settings, metrics_address=("127.0.0.1", port)))
    assert code == 0, out
    assert f"PASS  metrics: on at http://127.0.0.1:{port}/metrics, /healthz and /readyz" in out
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        _, out = await doctor(replace(settings, metrics_address=("127.0.0.1", port)))
    assert f"WARN  metrics: on at http://127.0.0.1:{port}/metrics" in out and "address already in use" in out
    _, out = await doctor(replace(settings, metrics_address=("0.0.0.0", port)))
    assert "WARN  metrics:" in out and "not a loopback address" in out


@pytest.mark.parametrize("broken", ["corrupt model", "package missing"])
async def test_a_safety_detector_that_cannot_load_is_one_fail_line(comfy_server: ComfyTestServer, tmp_path: Path,
                                                                   broken: str) -> None:
    if broken == "corrupt model":
        model = tmp_path / "320n.onnx"
        model.write_bytes(b"this is not an onnx model")
        detector: SafetyDetector = NudeNetDetector(model)
    else:
        detector = FakeSafetyDetector(fail_load="onnxruntime is not installed")
    code, out = await doctor(settings_for(tmp_path, [("gpu-box", comfy_server.url)]), detector)
    assert code == 1
    assert lines_with(out, "FAIL") == [line for line in out.splitlines() if "safety detector" in line]
    [line] = lines_with(out, "FAIL")
    assert line.startswith("FAIL  safety detector: cannot load: ")
    assert ("320n.onnx" in line) if broken == "corrupt model" else ("onnxruntime is not installed" in line)
    assert "refuses every job in servers whose safety mode is not off" in line


async def test_python_m_bot_doctor_without_onnxruntime_fails_one_line(comfy_server: ComfyTestServer,
                                                                      tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'onnxruntime\'", name="onnxruntime")\n')
    env = process_env(env_for(tmp_path, [("gpu-box", comfy_server.url)]))
    env["PYTHONPATH"] = f"{shadow.parent}{os.pathsep}{env['PYTHONPATH']}"
    proc = await asyncio.create_subprocess_exec(
        *bot_command("doctor"), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    out = stdout.decode()
    assert proc.returncode == 1, out + stderr.decode()
    assert lines_with(out, "FAIL") == [
        "FAIL  safety detector: cannot load: onnxruntime is not installed: No module named 'onnxruntime'; "
        "the bot refuses every job in servers whose safety mode is not off"]
    assert "Traceback" not in stderr.decode()
