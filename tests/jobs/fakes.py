"""Fakes for the job-service unit tests that need no HTTP: a scripted ComfyUI client and a job
service built on it (hubs never connect; the test hands events to a hub itself).

:class:`FakeComfy` answers what the runner and the follower ask (upload, ``POST /prompt``,
``/queue``, ``/history``, stop, download), keeps its queue and history in memory, and can hold
``stop_prompt`` or ``download`` on a gate, so a test can make two things happen "at once".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.comfy.events import Event
from bot.comfy.hub import ComfyHub
from bot.comfy.models import FileRef, HistoryEntry, QueuedPrompt, QueueState
from bot.jobs.backends import Backend, BackendPool
from bot.jobs.service import JobService, ServiceLimits
from bot.storage import Storage
from bot.workflows import load_registry
from standins.fake_clock import FakeClock
from tests.jobs.helpers import ROOT, RecordingDelivery

REGISTRY = load_registry(ROOT / "workflows").registry


@dataclass
class FakeComfy:
    """A ComfyUI server in memory (see the module docstring)."""

    name: str
    running: list[str] = field(default_factory=list)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    posted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    stop_gate: asyncio.Event | None = None
    download_gate: asyncio.Event | None = None
    posted_event: asyncio.Event = field(default_factory=asyncio.Event)
    stop_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    download_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def queue_remaining(self) -> int:
        return len(self.running)

    async def system_stats(self) -> Any:
        return {}

    async def upload_image(self, data: bytes, filename: str, **_: Any) -> FileRef:
        return FileRef(filename=filename, subfolder="", type="input")

    async def queue_prompt(self, graph: dict[str, Any], *, client_id: str, prompt_id: str | None = None,
                           extra_data: dict[str, Any] | None = None, front: bool = False) -> QueuedPrompt:
        assert prompt_id is not None
        self.posted.append(prompt_id)
        self.running.append(prompt_id)
        self.posted_event.set()
        return QueuedPrompt(prompt_id=prompt_id, number=len(self.posted))

    async def get_queue(self) -> QueueState:
        return QueueState.from_json({"queue_running": [[i, p, {}, {}, []] for i, p in enumerate(self.running)],
                                     "queue_pending": []})

    async def get_history_entry(self, prompt_id: str) -> HistoryEntry | None:
        body = self.history.get(prompt_id)
        return None if body is None else HistoryEntry.from_json(prompt_id, body)

    async def stop_prompt(self, prompt_id: str) -> None:
        self.stopped.append(prompt_id)
        self.stop_arrived.set()
        if self.stop_gate is not None:
            await self.stop_gate.wait()
        if prompt_id in self.running:
            self.running.remove(prompt_id)

    async def delete_history(self, ids: Any) -> None:
        for prompt_id in ids:
            self.history.pop(prompt_id, None)

    async def download(self, ref: FileRef, dest: Path, *, max_bytes: int) -> int:
        self.download_arrived.set()
        if self.download_gate is not None:
            await self.download_gate.wait()
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"GIF89a fake result")
        return dest.stat().st_size

    def finish(self, prompt_id: str, output_node: str) -> None:
        """The prompt ran to success: its history entry names a GIF."""
        if prompt_id in self.running:
            self.running.remove(prompt_id)
        self.history[prompt_id] = {
            "status": {"status_str": "success", "completed": True, "messages": [["execution_success", {}]]},
            "outputs": {output_node: {"gifs": [{"filename": f"{prompt_id}.gif", "subfolder": "", "type": "output"}]}},
        }

    @property
    def last_prompt(self) -> str:
        return self.posted[-1]


@dataclass
class World:
    """A job service over fake servers, not started: the test dispatches and sends events."""

    service: JobService
    servers: dict[str, FakeComfy]
    clock: FakeClock
    delivery: RecordingDelivery
    events: list[tuple[str, str, int | None]]

    def hub(self, name: str = "gpu1") -> ComfyHub:
        return self.service.hubs[name]

    def backend(self, name: str = "gpu1") -> Backend:
        return self.service.pool.get(name)

    async def send(self, event: Event, server: str = "gpu1") -> None:
        """The server's websocket says ``event``."""
        await self.hub(server)._dispatch(event)

    def ended(self, job_id: str) -> list[str]:
        """The terminal events the listeners heard for a job (exactly one when it ended once)."""
        return [event for jid, event, _ in self.events if jid == job_id and event != "queued"]


async def make_world(tmp_path: Path, servers: tuple[str, ...] = ("gpu1",), *, job_timeout: float = 60.0,
                     max_in_flight: int = 5) -> World:
    clock = FakeClock()
    fakes = {name: FakeComfy(name) for name in servers}
    store = await Storage.open(tmp_path / "jobs.sqlite", clock=clock)
    pool = BackendPool([Backend(name=name, client=fake, max_pending=0) for name, fake in fakes.items()], clock=clock)
    hubs = {name: ComfyHub(fake, None, f"client-{name}") for name, fake in fakes.items()}  # type: ignore[arg-type]
    service = JobService(store=store, pool=pool, hubs=hubs, workflows=REGISTRY, data_dir=tmp_path / "data",
                         limits=ServiceLimits(job_timeout=job_timeout, max_in_flight=max_in_flight), clock=clock,
                         owns_hubs=False)
    delivery = RecordingDelivery()
    service.connect(delivery)
    events: list[tuple[str, str, int | None]] = []

    async def listen(job: Any, event: str, actor: int | None) -> None:
        events.append((job.id, event, actor))

    service.add_listener(listen)
    return World(service, fakes, clock, delivery, events)
