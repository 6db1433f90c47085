"""Pytest fixtures that start ComfyUI test servers on 127.0.0.1.

- ``comfy_server``: one started ``ComfyTestServer`` rooted in ``tmp_path / "comfy"``.
- ``comfy_server_factory``: ``await factory(**kwargs)`` starts another server (its own root
  under tmp_path unless ``root=`` is given); every one is stopped at teardown.
- ``start_server_process(root, ...)``: run ``python -m standins.comfy_server`` in a subprocess
  and wait for its URL (returns a ``ServerProcess``; call ``stop()``). Also as the fixture
  ``comfy_server_process_factory``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .server import ComfyTestServer

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServerProcess:
    """A test server running in its own process."""

    process: subprocess.Popen[str]
    url: str
    root: Path

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def start_server_process(
    root: Path,
    *,
    port: int = 0,
    step_time: float = 0.0,
    checkpoints: tuple[str, ...] = (),
    extra_args: tuple[str, ...] = (),
    timeout: float = 20.0,
) -> ServerProcess:
    """Start ``python -m standins.comfy_server`` and wait until it prints its URL."""
    args = [sys.executable, "-m", "standins.comfy_server", "--port", str(port), "--root", str(root)]
    args += ["--step-time", str(step_time)]
    for name in checkpoints:
        args += ["--checkpoint", name]
    args += list(extra_args)
    proc = subprocess.Popen(  # noqa: S603 - our own module
        args,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("URL "):
            return ServerProcess(process=proc, url=line[4:].strip(), root=root)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise RuntimeError("test server process did not report its URL")


@pytest.fixture
async def comfy_server(tmp_path: Path) -> AsyncIterator[ComfyTestServer]:
    server = ComfyTestServer(tmp_path / "comfy")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def comfy_server_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ComfyTestServer]]]:
    started: list[ComfyTestServer] = []

    async def factory(**kwargs: Any) -> ComfyTestServer:
        root = kwargs.pop("root", None) or tmp_path / f"comfy{len(started)}"
        port = kwargs.pop("port", 0)
        server = ComfyTestServer(root, **kwargs)
        await server.start(port)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            await server.stop()


@pytest.fixture
def comfy_server_process_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(**kwargs: Any) -> ServerProcess:
        root = kwargs.pop("root", None) or tmp_path / f"comfy-proc{len(started)}"
        proc = start_server_process(root, **kwargs)
        started.append(proc)
        return proc

    try:
        yield factory
    finally:
        for proc in started:
            proc.stop()
