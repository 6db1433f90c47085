"""Shared pieces of the benchmarks: test-server processes, inputs, the service, measurements.

Nothing here is a test. The ComfyUI test servers always run in their own processes
(``standins.comfy_server.fixtures.start_server_process``), so what a scenario measures in its
own process is the bot's cost. Instrumentation wraps product objects from the outside
(a recording :class:`~bot.jobs.service.Delivery`, class-level wrappers installed by
:func:`instrument`); no product file is changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import random
import resource
import statistics
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from bench.report import percentile as percentile
from bot.comfy.client import ComfyClient
from bot.comfy.events import Event, Executing, ExecutionSuccess
from bot.comfy.hub import ComfyHub
from bot.jobs.models import Job
from bot.jobs.service import JobService
from bot.settings import ServerConfig, Settings

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]

#: Small, fast generations: the servers have no step time, so this only sizes the output files.
FAST_OPTIONS: dict[str, Any] = {"frames": 4, "steps": 3}
WORKFLOWS_DIR = REPO / "workflows"


# ---------------------------------------------------------------------------- numbers


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / (1024 * 1024)
    except OSError:
        return math.nan


# ---------------------------------------------------------------------------- inputs


def png_about_1mb(seed: int = 1) -> bytes:
    """A photo-like PNG of about 1 MB (gradients plus grain, 1024x768)."""
    w, h = 1024, 768
    rng = random.Random(seed)
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((w, h)),
            Image.radial_gradient("L").resize((w, h)),
            Image.effect_noise((w, h), 20 + rng.random()),
        ),
    )
    buf = io.BytesIO()
    base.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def jpeg_12mp() -> bytes:
    """The 4000x3000 JPEG of ``bench/bench_prepare.py`` (the image-preparation benchmark)."""
    from bench.bench_prepare import make_jpeg

    return make_jpeg((4000, 3000))


def small_png(index: int, size: tuple[int, int] = (320, 180)) -> bytes:
    """A small solid PNG whose colour depends on ``index`` (load runs)."""
    colour = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------- servers


@dataclass
class ServerFarm:
    """ComfyUI test servers, each in its own process (step time 0)."""

    urls: list[str]
    _procs: list[Any] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, count: int, root: Path, *, step_time: float = 0.0) -> ServerFarm:
        from standins.comfy_server.fixtures import start_server_process

        procs = [start_server_process(root / f"comfy{i}", step_time=step_time) for i in range(count)]
        return cls(urls=[p.url for p in procs], _procs=procs)

    def stop(self) -> None:
        for proc in self._procs:
            proc.stop()


# ---------------------------------------------------------------------------- the service


@dataclass
class RecordingDelivery:
    """Stands in for the Discord layer: timestamps every hand-over (perf_counter seconds)."""

    delivered: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    async def deliver(self, job: Job, result: Path, attempt: int = 1) -> int | None:
        now = time.perf_counter()
        self.delivered.setdefault(job.id, now)
        self.counts[job.id] = self.counts.get(job.id, 0) + 1
        self._check()
        return 1000 + len(self.delivered)

    async def job_ended(self, job: Job) -> None:
        self.ended[job.id] = f"{job.state.value}: {job.error_detail or job.error}"
        self._check()

    def follow(self, job: Job) -> None:
        """Jobs recovered from an earlier run's store have no status to show here."""

    def _check(self) -> None:
        if self.expected and len(self.delivered) + len(self.ended) >= self.expected:
            self.done.set()


def bench_settings(urls: Sequence[str], data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        comfyui_servers=tuple(ServerConfig(name=f"gpu{i + 1}", url=u) for i, u in enumerate(urls)),
        workflows_dir=WORKFLOWS_DIR,
        data_dir=data_dir,
        comfyui_timeout=30.0,
        max_jobs_per_member=5,
        max_waiting_jobs=1000,
        job_timeout=30.0,  # a job takes well under a second here; a lost one shows up as timed out
    )
    values.update(overrides)
    return Settings(**values)


async def open_service(
    settings: Settings, session: aiohttp.ClientSession, delivery: RecordingDelivery | None
) -> JobService:
    """The job service as ``python -m bot run`` builds it (:func:`bot.services.build_services`),
    connected to the given delivery (not started)."""
    from bot.services import build_services

    service = (await build_services(settings, session)).jobs
    if delivery is not None:
        service.connect(delivery)
    return service


# ---------------------------------------------------------------------------- instrumentation


@dataclass
class Marks:
    """Timestamps (perf_counter seconds) collected by :func:`instrument`, by prompt id or job id."""

    posted: dict[str, float] = field(default_factory=dict)  # prompt_id -> POST /prompt about to be sent
    posted_job: dict[str, str] = field(default_factory=dict)  # prompt_id -> job id (from extra_data)
    completed: dict[str, float] = field(default_factory=dict)  # prompt_id -> first completion event read
    prepared: list[float] = field(default_factory=list)  # durations of prepare_image (seconds)
    prepare_end: dict[int, float] = field(default_factory=dict)  # id(bytes) -> end time
    upload: dict[str, tuple[float, float]] = field(default_factory=dict)  # upload name -> (start, end) of its last upload
    download: dict[str, tuple[float, float]] = field(default_factory=dict)  # job id -> (start, end) of the download


@contextlib.contextmanager
def instrument(marks: Marks) -> Iterator[None]:
    """Wrap ``ComfyClient.queue_prompt``, ``ComfyHub._dispatch`` and image preparation (restored on exit)."""
    import bot.jobs.intake as intake_module

    original_queue = ComfyClient.queue_prompt
    original_dispatch = ComfyHub._dispatch
    original_prepare = intake_module.prepare_image_async
    original_upload = ComfyClient.upload_image
    original_download = ComfyClient.download

    async def upload_image(self: ComfyClient, data: bytes, filename: str, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = await original_upload(self, data, filename, **kwargs)
        marks.upload[filename] = (start, time.perf_counter())
        return result

    async def download(self: ComfyClient, ref: Any, dest: Path, **kwargs: Any) -> int:
        start = time.perf_counter()
        result = await original_download(self, ref, dest, **kwargs)
        marks.download[Path(dest).stem] = (start, time.perf_counter())
        return result

    async def queue_prompt(self: ComfyClient, graph: dict[str, Any], **kwargs: Any) -> Any:
        prompt_id = kwargs.get("prompt_id")
        if prompt_id:
            marks.posted[prompt_id] = time.perf_counter()
            job_id = (kwargs.get("extra_data") or {}).get("animate_job")
            if job_id:
                marks.posted_job[prompt_id] = job_id
        return await original_queue(self, graph, **kwargs)

    async def dispatch(self: ComfyHub, event: Event) -> None:
        if isinstance(event, ExecutionSuccess) or (isinstance(event, Executing) and event.node is None):
            prompt_id = getattr(event, "prompt_id", None)
            if prompt_id and prompt_id not in marks.completed:
                marks.completed[prompt_id] = time.perf_counter()
        await original_dispatch(self, event)

    async def prepare(data: bytes, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = await original_prepare(data, **kwargs)
        end = time.perf_counter()
        marks.prepared.append(end - start)
        marks.prepare_end[id(data)] = end
        return result

    ComfyClient.queue_prompt = queue_prompt  # type: ignore[method-assign]
    ComfyHub._dispatch = dispatch  # type: ignore[method-assign]
    intake_module.prepare_image_async = prepare  # type: ignore[assignment]
    ComfyClient.upload_image = upload_image  # type: ignore[method-assign]
    ComfyClient.download = download  # type: ignore[method-assign]
    try:
        yield
    finally:
        ComfyClient.queue_prompt = original_queue  # type: ignore[method-assign]
        ComfyHub._dispatch = original_dispatch  # type: ignore[method-assign]
        intake_module.prepare_image_async = original_prepare  # type: ignore[assignment]
        ComfyClient.upload_image = original_upload  # type: ignore[method-assign]
        ComfyClient.download = original_download  # type: ignore[method-assign]


# ---------------------------------------------------------------------------- the loop and the sockets


class LoopWatch:
    """Event-loop lag (a task sleeps 10 ms and records the overshoot), RSS and hub sockets, sampled together."""

    def __init__(self, hubs: Sequence[ComfyHub] = (), interval: float = 0.010) -> None:
        self.hubs = list(hubs)
        self.interval = interval
        self.lags_ms: list[float] = []
        self.max_connections = 0
        self.disconnected_samples = 0
        self.samples = 0
        self.peak_rss_sampled = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench-loop-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.lags_ms.append(max(0.0, (loop.time() - start - self.interval) * 1000))
            self.samples += 1
            for hub in self.hubs:
                self.max_connections = max(self.max_connections, hub.connections)
                if not hub.connected:
                    self.disconnected_samples += 1
            tick += 1
            if tick % 10 == 0:
                self.peak_rss_sampled = max(self.peak_rss_sampled, current_rss_mb())


def tracemalloc_peak_mb() -> float:
    if not tracemalloc.is_tracing():
        return math.nan
    return tracemalloc.get_traced_memory()[1] / (1024 * 1024)


def quiet_logs() -> None:
    """Benchmarks print a table; the product's INFO lines (one per job state) would drown it."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
