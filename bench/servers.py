"""Where the ComfyUI test servers of a benchmark run: pluggable process layouts.

A layout starts ``count`` test servers (step time 0 unless said) outside the bot's process and
gives their URLs; :func:`start_layout` picks one by name:

- ``separate``: one process per server (``python -m standins.comfy_server``), as the other
  benchmarks run them;
- ``shared``: all servers in one process (``python -m bench.server_host``), for many servers
  (e.g. 64) on a small machine.

Add a layout by writing a class with ``description``, ``urls``, ``pids()`` and ``stop()`` and
registering its starter in :data:`LAYOUTS`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parents[1]


class ServerLayout(Protocol):
    """Started test servers: their URLs, their processes, and how to stop them."""

    description: str
    urls: list[str]

    def pids(self) -> list[int]: ...

    def stop(self) -> None: ...


@dataclass
class SeparateProcesses:
    """One ``python -m standins.comfy_server`` process per server."""

    urls: list[str]
    description: str
    _procs: list[object] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, count: int, root: Path, *, step_time: float = 0.0) -> SeparateProcesses:
        from standins.comfy_server.fixtures import start_server_process

        procs = []
        try:
            for i in range(count):
                procs.append(start_server_process(root / f"comfy{i}", step_time=step_time))
        except BaseException:
            for proc in procs:
                proc.stop()
            raise
        return cls(urls=[p.url for p in procs], description=f"{count} ComfyUI test servers, one process each",
                   _procs=list(procs))

    def pids(self) -> list[int]:
        return [p.process.pid for p in self._procs]  # type: ignore[attr-defined]

    def stop(self) -> None:
        for proc in self._procs:
            proc.stop()  # type: ignore[attr-defined]


@dataclass
class OneProcess:
    """All servers in one ``python -m bench.server_host`` process."""

    urls: list[str]
    description: str
    _proc: subprocess.Popen[str] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, count: int, root: Path, *, step_time: float = 0.0, timeout: float = 120.0) -> OneProcess:
        args = [sys.executable, "-m", "bench.server_host", "--count", str(count), "--root", str(root),
                "--step-time", str(step_time)]
        proc = subprocess.Popen(  # noqa: S603 - our own module
            args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)},
        )
        assert proc.stdout is not None
        urls: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("URL "):
                urls.append(line[4:].strip())
            elif line.strip() == "READY":
                return cls(urls=urls, description=f"{count} ComfyUI test servers in one process", _proc=proc)
            elif not line and proc.poll() is not None:
                break
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the server host did not report READY ({len(urls)} of {count} servers up)")

    def pids(self) -> list[int]:
        return [self._proc.pid] if self._proc is not None else []

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


LAYOUTS: dict[str, Callable[..., ServerLayout]] = {
    "separate": SeparateProcesses.start,
    "shared": OneProcess.start,
}


def start_layout(name: str, count: int, root: Path, *, step_time: float = 0.0) -> ServerLayout:
    """Start ``count`` servers in layout ``name`` (see :data:`LAYOUTS`)."""
    try:
        starter = LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown server layout {name!r} (known: {', '.join(LAYOUTS)})") from None
    return starter(count, root, step_time=step_time)
