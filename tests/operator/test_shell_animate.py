"""``python -m bot animate`` from a shell: a real run against a test server in its own process,
friendly one-line failures, and Ctrl+C stopping the prompt on the server."""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import re
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from bot.tools.progress_bar import ProgressBar
from bot.tools.shell_animate import ShellError, format_for_suffix, parse_options, run_animate
from bot.workflows import load_workflows
from standins.comfy_server.fixtures import ServerProcess
from standins.comfy_server.server import ComfyTestServer
from standins.fake_safety import EXPLICIT_MARKER, SUGGESTIVE_MARKER, FakeSafetyDetector
from standins.wait import wait_until
from tests.safety_discord.test_withheld import ExplicitResults

from .helpers import WORKFLOWS, bot_command, env_for, free_port, process_env, settings_for

Factory = Callable[..., Awaitable[ComfyTestServer]]


def make_image(path: Path, size: tuple[int, int] = (640, 360)) -> Image.Image:
    """A picture with big, distinct shapes, so a downscaled frame can be compared with it."""
    im = Image.new("RGB", size, (20, 60, 200))
    draw = ImageDraw.Draw(im)
    w, h = size
    draw.rectangle((0, 0, w // 2, h), fill=(230, 40, 30))
    draw.ellipse((w // 2, h // 4, w * 7 // 8, h * 3 // 4), fill=(250, 220, 30))
    im.save(path)
    return im


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    size = (64, 36)
    diff = ImageChops.difference(a.convert("RGB").resize(size), b.convert("RGB").resize(size))
    return sum(ImageStat.Stat(diff).mean) / 3


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def namespace(image: Path, out: Path, *options: str, workflow: str | None = None, server: str | None = None,
              safety: str = "strict") -> argparse.Namespace:
    return argparse.Namespace(image=str(image), out=str(out), workflow=workflow, server=server, option=list(options),
                              safety=safety)


@pytest.fixture
def server_process(comfy_server_process_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return comfy_server_process_factory()


def test_animate_writes_a_gif_that_starts_like_the_input(server_process: ServerProcess, tmp_path: Path) -> None:
    source = make_image(tmp_path / "img.png")
    env = process_env(env_for(tmp_path, [("local", server_process.url)]))
    result = run(bot_command("animate", "img.png", "--out", "out.gif", "-o", "frames=8", "-o", "steps=4"), env, tmp_path)
    assert result.returncode == 0, result.stderr
    summary, verdict = result.stdout.strip().splitlines()
    assert summary.startswith("wrote out.gif") and "gif" in summary and "seed " in summary
    assert verdict == "safety (strict): input clean; result (3 of 8 frames) clean"  # the real detector, by default
    assert "step 4 of 4" in result.stderr  # the progress, in plain lines because stderr is a pipe
    assert "\r" not in result.stderr
    with Image.open(tmp_path / "out.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 8
        gif.seek(0)
        first = gif.convert("RGB")
    assert mean_difference(first, source) < 25
    assert mean_difference(first, Image.new("RGB", source.size, (128, 128, 128))) > 40  # not just any picture
    assert not list(tmp_path.glob(".animate-*"))  # no temporary files left beside the output


def test_animate_mp4_out_converts_a_gif_result(server_process: ServerProcess, tmp_path: Path) -> None:
    make_image(tmp_path / "img.png")
    env = process_env(env_for(tmp_path, [("local", server_process.url)]))
    cmd = bot_command("animate", "img.png", "--out", "clip.mp4", "-o", "frames=6", "-o", "steps=2", "-o", "format=gif", "-o", "seed=42")
    result = run(cmd, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "converted" in result.stdout and "seed 42" in result.stdout
    assert (tmp_path / "clip.mp4").read_bytes()[4:8] == b"ftyp"


def test_corrupt_image_is_one_friendly_line_exit_1(server_process: ServerProcess, tmp_path: Path) -> None:
    make_image(tmp_path / "img.png")
    (tmp_path / "broken.png").write_bytes((tmp_path / "img.png").read_bytes()[:200])
    env = process_env(env_for(tmp_path, [("local", server_process.url)]))
    result = run(bot_command("animate", "broken.png", "--out", "out.gif"), env, tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: broken.png:") and "damaged" in lines[0]
    assert not (tmp_path / "out.gif").exists()


def test_down_server_is_one_friendly_line_exit_1(tmp_path: Path) -> None:
    make_image(tmp_path / "img.png")
    url = f"http://127.0.0.1:{free_port()}"
    env = process_env(env_for(tmp_path, [("gpu-box", url)]))
    result = run(bot_command("animate", "img.png", "--out", "out.gif"), env, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no ComfyUI server is reachable") and "gpu-box" in last
    assert url not in result.stderr and "Traceback" not in result.stderr


def test_file_over_max_input_bytes_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_image(tmp_path / "img.png")
    big = tmp_path / "big.png"
    with big.open("wb") as fh:  # sparse: 30 MB declared, nothing to read
        fh.truncate(30 * 1024 * 1024)
    read: list[Path] = []
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or real_read(self))
    err = io.StringIO()
    settings = settings_for(tmp_path, [("gpu-box", f"http://127.0.0.1:{free_port()}")], MAX_INPUT_BYTES=str(25 * 1024 * 1024))
    code = run_animate(settings, namespace(big, tmp_path / "o.gif"), err=err)
    assert code == 1
    assert err.getvalue().startswith("error: big.png: That file is 30.0 MB; the limit is 25.0 MB")
    assert big not in read


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-o", "frames=99"], "frames must be between 2 and 25"),
        (["-o", "frames"], "NAME=VALUE"),
        (["-o", "colour=red"], "unknown option 'colour'"),
        (["--workflow", "nope"], "unknown workflow 'nope'"),
        (["--server", "elsewhere"], "unknown server 'elsewhere'"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    make_image(tmp_path / "img.png")
    err = io.StringIO()
    settings = settings_for(tmp_path, [("gpu-box", f"http://127.0.0.1:{free_port()}")])
    flag, value = args
    options = [value] if flag == "-o" else []
    ns = namespace(tmp_path / "img.png", tmp_path / "o.gif", *options,
                   workflow=value if flag == "--workflow" else None, server=value if flag == "--server" else None)
    code = run_animate(settings, ns, err=err)
    assert code == 2
    assert expected in err.getvalue() and err.getvalue().count("\n") == 1


async def test_refused_workflow_names_the_missing_checkpoint(comfy_server_factory: Factory, tmp_path: Path) -> None:
    server = await comfy_server_factory(checkpoints=["other.safetensors"])
    make_image(tmp_path / "img.png")
    out, err = io.StringIO(), io.StringIO()
    settings = settings_for(tmp_path, [("gpu-box", server.url)])
    code = await asyncio.to_thread(run_animate, settings, namespace(tmp_path / "img.png", tmp_path / "o.gif"), out=out, err=err)
    assert code == 1
    last = err.getvalue().strip().splitlines()[-1]
    assert last.startswith("error: workflow svd_img2vid cannot run on gpu-box:")
    assert "svd_xt_1_1.safetensors" in last and "it has: other.safetensors" in last  # what to change, and to what
    assert server.url not in err.getvalue()
    assert not [p for m, p in server.requests if m == "POST"]  # refused before uploading anything


async def test_without_videohelpersuite_it_falls_back_to_the_core_workflow(
    comfy_server_factory: Factory, tmp_path: Path
) -> None:
    server = await comfy_server_factory(without_nodes=["VHS_VideoCombine"])
    make_image(tmp_path / "img.png")
    out, err = io.StringIO(), io.StringIO()
    settings = settings_for(tmp_path, [("gpu-box", server.url)])
    args = namespace(tmp_path / "img.png", tmp_path / "o.mp4", "steps=2", "frames=4")
    code = await asyncio.to_thread(run_animate, settings, args, out=out, err=err)
    assert code == 0, err.getvalue()
    assert "svd_img2vid cannot run on gpu-box; using svd_img2vid_core" in err.getvalue()
    assert "mp4" in out.getvalue() and "workflow svd_img2vid_core on gpu-box" in out.getvalue()
    assert (tmp_path / "o.mp4").read_bytes()[4:8] == b"ftyp"
    # naming the VHS workflow is refused with what to install
    err = io.StringIO()
    args = namespace(tmp_path / "img.png", tmp_path / "p.mp4", workflow="svd_img2vid")
    code = await asyncio.to_thread(run_animate, settings, args, out=io.StringIO(), err=err)
    last = err.getvalue().strip().splitlines()[-1]
    assert code == 1 and "VHS_VideoCombine" in last and "ComfyUI-VideoHelperSuite" in last


async def test_execution_error_exit_1_names_the_node(comfy_server_factory: Factory, tmp_path: Path) -> None:
    server = await comfy_server_factory()
    server.fail_at = "KSampler"
    make_image(tmp_path / "img.png")
    err = io.StringIO()
    settings = settings_for(tmp_path, [("gpu-box", server.url)])
    args = namespace(tmp_path / "img.png", tmp_path / "o.gif", "steps=2", "frames=4")
    code = await asyncio.to_thread(run_animate, settings, args, out=io.StringIO(), err=err)
    assert code == 1
    last = err.getvalue().strip().splitlines()[-1]
    assert last.startswith("error: server gpu-box:") and "KSampler" in last and "Traceback" not in last
    assert not (tmp_path / "o.gif").exists()


async def test_ctrl_c_interrupts_the_prompt_on_the_server(comfy_server_factory: Factory, tmp_path: Path) -> None:
    server = await comfy_server_factory(step_time=0.1)
    make_image(tmp_path / "img.png")
    env = process_env(env_for(tmp_path, [("gpu-box", server.url)]))
    proc = await asyncio.create_subprocess_exec(
        *bot_command("animate", "img.png", "--out", "o.gif", "-o", "steps=40"),
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen = b""
    async with asyncio.timeout(30):
        while b"step 2 of 40" not in seen:
            line = await proc.stderr.readline()
            assert line, seen.decode()
            seen += line
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, (seen + stderr).decode()
    assert ("POST", "/interrupt") in server.requests
    text = (seen + stderr).decode()
    assert "interrupted" in text and "Traceback" not in text
    history = [entry async for entry in _history(server)]
    assert history and all(status != "success" for status in history)
    assert not (tmp_path / "o.gif").exists()


async def _history(server: ComfyTestServer):  # type: ignore[no-untyped-def]
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def entries() -> dict:  # type: ignore[type-arg]
            async with session.get(f"{server.url}/history") as resp:
                return await resp.json()

        body = await wait_until(entries, timeout=5, what="a history entry", interval=0.05)
        for entry in body.values():
            yield entry["status"]["status_str"]


def test_parse_options() -> None:
    assert parse_options(["frames=8", "motion= 100", "fit=pad"]) == {"frames": "8", "motion": " 100", "fit": "pad"}
    with pytest.raises(ShellError) as info:
        parse_options(["frames=8", "frames=9"])
    assert info.value.code == 2


def test_out_suffix_picks_the_format_unless_given() -> None:
    registry = load_workflows(WORKFLOWS).registry
    vhs, core = registry.get("svd_img2vid"), registry.get("svd_img2vid_core")
    assert vhs is not None and core is not None
    assert format_for_suffix(vhs, {}, Path("a.mp4"))["format"] == "mp4"
    assert format_for_suffix(vhs, {"format": "gif"}, Path("a.mp4"))["format"] == "gif"
    assert "format" not in format_for_suffix(core, {}, Path("a.gif"))  # core has no gif
    assert "format" not in format_for_suffix(vhs, {}, Path("a.bin"))


def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, tty=True, width=10)
    bar.update("step 1 of 4", 0.25)
    bar.update("step 2 of 4", 0.5)
    bar.update("encoding")
    bar.finish("done")
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\r[#####-----]  50%  step 2 of 4" in text
    assert text.split("\r")[-1].rstrip() == "done"


def test_progress_bar_writes_plain_lines_when_piped() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, tty=False)
    for text in ("running", "step 1 of 2", "step 1 of 2", "step 2 of 2", "encoding", "encoding"):
        bar.update(text, 0.5)
    bar.finish("done")
    assert stream.getvalue().splitlines() == ["running", "step 1 of 2", "step 2 of 2", "encoding", "done"]


async def test_without_server_the_first_one_that_can_run_the_workflow_is_used(
    comfy_server_factory: Factory, tmp_path: Path
) -> None:
    bare = await comfy_server_factory(without_nodes=["VHS_VideoCombine"])
    full = await comfy_server_factory()
    make_image(tmp_path / "img.png")
    out, err = io.StringIO(), io.StringIO()
    settings = settings_for(tmp_path, [("bare-box", bare.url), ("full-box", full.url)])
    args = namespace(tmp_path / "img.png", tmp_path / "o.gif", "steps=2", "frames=3")
    code = await asyncio.to_thread(run_animate, settings, args, out=out, err=err)
    assert code == 0, err.getvalue()
    assert "workflow svd_img2vid on full-box" in out.getvalue()  # the VHS workflow, on the server that has VHS
    assert not [p for m, p in bare.requests if m == "POST"]


# ---------------------------------------------------------------------------- --safety (issue 16)


def colour_image(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (320, 192), colour).save(path)
    return path


async def shell(server: ComfyTestServer, tmp_path: Path, image: Path, safety: str,
                detector: FakeSafetyDetector) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    settings = settings_for(tmp_path, [("gpu-box", server.url)])
    args = namespace(image, tmp_path / "o.gif", "steps=2", "frames=4", safety=safety)
    code = await asyncio.to_thread(functools.partial(run_animate, settings, args, out=out, err=err, detector=detector))
    return code, out.getvalue(), err.getvalue()


async def test_safety_strict_refuses_an_explicit_input_before_uploading_it(comfy_server_factory: Factory,
                                                                          tmp_path: Path) -> None:
    server = await comfy_server_factory()
    image = colour_image(tmp_path / "img.png", EXPLICIT_MARKER)
    code, _out, err = await shell(server, tmp_path, image, "strict", FakeSafetyDetector.with_markers())
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "error: input refused by the safety check (strict): explicit: FEMALE_BREAST_EXPOSED 0.90")
    assert ("POST", "/upload/image") not in server.requests and not (tmp_path / "o.gif").exists()


async def test_safety_standard_and_off_print_the_verdict(comfy_server_factory: Factory, tmp_path: Path) -> None:
    server = await comfy_server_factory()
    image = colour_image(tmp_path / "img.png", EXPLICIT_MARKER)
    code, out, err = await shell(server, tmp_path, image, "standard", FakeSafetyDetector.with_markers())
    assert code == 0, err
    # (a GIF of a plain colour keeps fewer frames: its writer merges identical ones)
    assert re.fullmatch(
        r"safety \(standard\): input explicit: FEMALE_BREAST_EXPOSED 0\.90 \(allowed in age-restricted channels only\); "
        r"result \(\d of \d frames\) explicit: FEMALE_BREAST_EXPOSED 0\.90 \(allowed in age-restricted channels only\)",
        out.splitlines()[-1]), out
    suggestive = colour_image(tmp_path / "orange.png", SUGGESTIVE_MARKER)
    code, out, err = await shell(server, tmp_path, suggestive, "strict", FakeSafetyDetector.with_markers())
    assert code == 0, err
    assert out.splitlines()[-1].endswith("suggestive: BELLY_EXPOSED 0.45 (posted as a spoiler in a channel)")
    detector = FakeSafetyDetector.with_markers()
    code, out, err = await shell(server, tmp_path, image, "off", detector)
    assert code == 0, err
    assert out.splitlines()[-1] == "safety (off): not checked" and detector.calls == [] and detector.load_calls == 0


async def test_safety_strict_withholds_an_explicit_result_and_writes_nothing(comfy_server_factory: Factory,
                                                                            tmp_path: Path) -> None:
    server = await comfy_server_factory()
    image = colour_image(tmp_path / "img.png", (0, 200, 200))  # clean as an input, explicit as a result
    code, _out, err = await shell(server, tmp_path, image, "strict", ExplicitResults.with_markers())
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: result withheld by the safety check (strict): explicit: FEMALE_BREAST_EXPOSED 0.90")
    assert last.endswith("nothing was written") and not (tmp_path / "o.gif").exists()


async def test_safety_detector_that_cannot_load_fails_unless_off(comfy_server_factory: Factory, tmp_path: Path) -> None:
    server = await comfy_server_factory()
    image = colour_image(tmp_path / "img.png", (128, 128, 128))
    broken = FakeSafetyDetector(fail_load="nudenet is not installed")
    code, _out, err = await shell(server, tmp_path, image, "strict", broken)
    assert code == 1 and err.strip().splitlines()[-1] == (
        "error: the safety detector cannot load: nudenet is not installed (--safety off animates without checks)")
    assert ("POST", "/upload/image") not in server.requests
    code, out, err = await shell(server, tmp_path, image, "off", broken)
    assert code == 0 and out.splitlines()[-1] == "safety (off): not checked"
