"""``python -m bot animate IMAGE --out FILE``: one generation from the shell, without Discord.

The same steps as ``/animate`` (:mod:`bot.jobs.pipeline`): read and prepare the image, pick the
workflow and the server (the first answering one that can run the workflow, unless ``--server``
is given; without ``--workflow`` another workflow when none can), upload,
build the graph, post it with the server's persisted clientId, follow it with a progress bar on
stderr, download the result, convert or shrink it when asked (``--out x.mp4`` for a GIF/WebP
result, or ``--max-bytes``), and print the file's size, format and seed.

``--safety strict|standard|off`` (default strict): the bot's content-safety check, with the same
detector, thresholds and policy table (:mod:`bot.safety`): the prepared input is checked before it
is uploaded, the original result file (first, middle and last frame) before it is written, and the
verdict is printed. The shell counts as an age-restricted channel, so ``standard`` lets explicit
images through (and prints that they would be refused in an ordinary channel); ``strict`` refuses
them (exit 1, nothing written). A detector that cannot load is a failure unless ``--safety off``.

Exit status: 0 done; 1 with a one-line reason (bad image, server down, refused workflow,
failed generation); 2 for usage errors (bad ``-o``, unknown workflow or server); 130 after
Ctrl+C, which first interrupts the prompt on the server. The safety check is
:mod:`bot.tools.shell_safety`; the exit statuses and :class:`ShellError` are
:mod:`bot.tools.shell_errors` (both re-exported here).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from bot.comfy.client import ComfyClient
from bot.comfy.errors import ComfyError
from bot.comfy.events import Event, Reconnected
from bot.comfy.follow import Outcome
from bot.comfy.client_id import load_or_create_client_id
from bot.comfy.hub import ComfyHub
from bot.errors import InvalidInput, UserFacingError
from bot.jobs import pipeline
from bot.jobs.progress import ProgressUpdate, progress_from_event
from bot.media.images import check_declared_size, content_upload_name, prepare_image_async
from bot.media.video import fit_video_async, sniff_format
from bot.safety.detector import SafetyDetector
from bot.safety.policy import Mode
from bot.settings import ServerConfig, Settings
from bot.tools.progress_bar import ProgressBar
from bot.tools.shell_errors import EXIT_FAILED as EXIT_FAILED
from bot.tools.shell_errors import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from bot.tools.shell_errors import EXIT_OK as EXIT_OK
from bot.tools.shell_errors import EXIT_USAGE as EXIT_USAGE
from bot.tools.shell_errors import ShellError as ShellError
from bot.tools.shell_safety import ShellSafety as ShellSafety
from bot.workflows import Workflow, WorkflowRegistry, load_registry, resolve_options
from bot.workflows.model import ResolvedOptions
from bot.workflows.support import WorkflowSupport

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0
INTERRUPT_TIMEOUT = 5.0
# --out suffix -> the value of a workflow's "format" option that produces it directly.
SUFFIX_FORMATS = {".mp4": "mp4", ".gif": "gif", ".webp": "webp"}


@dataclass(frozen=True)
class AnimateResult:
    """What was written, for the final summary line."""

    path: Path
    size: int
    format: str
    seed: Any
    server: str
    prompt_id: str
    converted: bool


def parse_options(pairs: Sequence[str]) -> dict[str, str]:
    """``["frames=8", "motion=100"]`` -> ``{"frames": "8", "motion": "100"}`` (values checked later)."""
    options: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ShellError(f"option {pair!r} must look like NAME=VALUE (e.g. -o frames=14)", EXIT_USAGE)
        if name in options:
            raise ShellError(f"option {name!r} is given twice", EXIT_USAGE)
        options[name] = value
    return options


def usable_workflows(settings: Settings) -> WorkflowRegistry:
    """The workflows of ``WORKFLOWS_DIR`` (:func:`~bot.workflows.load_registry` logs those that did
    not load); none at all is a failure."""
    loaded = load_registry(settings.workflows_dir)
    if not len(loaded.registry):
        reasons = "; ".join(str(e) for e in loaded.errors) or "no workflow files"
        raise ShellError(f"no workflow could be loaded from {settings.workflows_dir}: {reasons}")
    return loaded.registry


def pick_workflow(registry: WorkflowRegistry, name: str | None) -> Workflow:
    workflow = registry.get(name)
    if workflow is None:
        raise ShellError(f"unknown workflow {name!r} (available: {', '.join(registry.names())})", EXIT_USAGE)
    return workflow


async def choose_server_and_workflow(
    session: aiohttp.ClientSession,
    settings: Settings,
    servers: Sequence[ServerConfig],
    registry: WorkflowRegistry,
    workflow: Workflow,
    *,
    explicit: bool,
    bar: ProgressBar,
) -> tuple[ServerConfig, Workflow]:
    """The first answering server that can run ``workflow``. Without ``--workflow``, failing
    that, the first server and other workflow that can (a server without VideoHelperSuite gets
    the core-nodes workflow). Otherwise a one-line error with what the server lacks, before
    anything is uploaded. A server whose node list cannot be read is tried as it is."""
    support = WorkflowSupport(timeout=3 * PROBE_TIMEOUT)  # logs what a server lacks (WARNING)
    for server in servers:
        client = _client(session, settings, server, timeout=min(settings.comfyui_timeout, PROBE_TIMEOUT))
        if not await support.check(server.name, client, list(registry)):
            return server, workflow  # its node list could not be read: try it as it is
        if support.can_run(server.name, workflow.name):
            return server, workflow
    if not explicit:
        for server in servers:
            for other in registry:
                if other.name != workflow.name and support.can_run(server.name, other.name):
                    bar.update(f"{workflow.name} cannot run on {server.name}; using {other.name}")
                    return server, other
    first = servers[0].name
    raise ShellError(f"workflow {workflow.name} cannot run on {first}: {'; '.join(support.problems(first, workflow.name))}")


def format_for_suffix(workflow: Workflow, options: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Ask the workflow for the --out file's format when the operator did not choose one."""
    chosen = dict(options)
    wanted = SUFFIX_FORMATS.get(out.suffix.lower())
    spec = workflow.options.get("format")
    if wanted and spec is not None and spec.type == "choice" and "format" not in chosen and wanted in spec.choices:
        chosen["format"] = wanted
    return chosen


def resolve(workflow: Workflow, options: Mapping[str, Any]) -> ResolvedOptions:
    try:
        return resolve_options(workflow, options, allow_admin=True)
    except InvalidInput as exc:
        raise ShellError(exc.user_message, EXIT_USAGE) from exc


async def read_and_prepare(settings: Settings, image: Path, fit: str) -> Any:
    try:
        size = (await asyncio.to_thread(image.stat)).st_size
        check_declared_size(size, settings.max_input_bytes)  # before reading, as /animate checks before downloading
        data = await asyncio.to_thread(image.read_bytes)
    except InvalidInput as exc:
        raise ShellError(f"{image.name}: {exc.user_message}") from exc
    except OSError as exc:
        raise ShellError(f"cannot read {image}: {exc.strerror or type(exc).__name__}") from exc
    try:
        check_declared_size(len(data), settings.max_input_bytes)  # the file may have grown meanwhile
        return await prepare_image_async(data, fit=fit, max_pixels=settings.max_input_pixels)
    except InvalidInput as exc:
        raise ShellError(f"{image.name}: {exc.user_message}") from exc


def _client(session: aiohttp.ClientSession, settings: Settings, server: ServerConfig, **kwargs: Any) -> ComfyClient:
    return ComfyClient(session, server, token=settings.comfyui_token, **kwargs)


def find_server(settings: Settings, name: str) -> ServerConfig:
    """The configured server called ``name`` (exact, else case-insensitive); a usage error if none."""
    servers = settings.comfyui_servers
    found = next((s for s in servers if s.name == name), None) or next(
        (s for s in servers if s.name.lower() == name.lower()), None
    )
    if found is None:
        raise ShellError(f"unknown server {name!r} (configured: {', '.join(s.name for s in servers)})", EXIT_USAGE)
    return found


async def answering_servers(session: aiohttp.ClientSession, settings: Settings, name: str | None) -> list[ServerConfig]:
    """The named server, or every server that answers ``GET /prompt``, in configuration order."""
    servers = settings.comfyui_servers if name is None else (find_server(settings, name),)
    timeout = min(settings.comfyui_timeout, PROBE_TIMEOUT)

    async def answers(server: ServerConfig) -> str | None:
        try:
            async with asyncio.timeout(timeout + 0.5):
                await _client(session, settings, server, timeout=timeout, retries=0).queue_remaining()
        except ComfyError as exc:
            return exc.message
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        return None

    problems = await asyncio.gather(*(answers(s) for s in servers))
    for server, problem in zip(servers, problems):
        if problem is not None:
            log.info("server %s skipped: %s", server.name, problem)
    up = [server for server, problem in zip(servers, problems) if problem is None]
    if up:
        return up
    reasons = "; ".join(f"{s.name}: {p}" for s, p in zip(servers, problems))
    if name is not None:
        raise ShellError(f"ComfyUI server {reasons} (is it running?)")
    raise ShellError(f"no ComfyUI server is reachable ({reasons})")


class ProgressReporter:
    """Draws a prompt's events on the progress bar, as the bot's status message reads them
    (:func:`bot.jobs.progress.progress_from_event`)."""

    def __init__(self, workflow: Workflow, bar: ProgressBar) -> None:
        self.workflow = workflow
        self.bar = bar
        self.latest: ProgressUpdate | None = None

    async def __call__(self, event: Event) -> None:
        if isinstance(event, Reconnected):
            self.bar.update("connection to the server was lost; checking what happened")
            return
        update = progress_from_event(event, self.workflow, job_id="shell", latest=self.latest)
        if update is None:
            return
        self.latest = update
        if update.phase == "starting":
            self.bar.update("running")
        elif update.phase == "running":
            fraction = update.step / update.steps if update.step is not None and update.steps else None
            self.bar.update(update.message or "running", fraction)
        else:
            self.bar.update(update.message or update.phase)


async def stop_prompt(client: ComfyClient, prompt_id: str) -> None:
    """Stop ``prompt_id`` on the server (:meth:`ComfyClient.stop_prompt`; best effort, bounded)."""
    try:
        async with asyncio.timeout(INTERRUPT_TIMEOUT):
            await client.stop_prompt(prompt_id)
    except (ComfyError, TimeoutError) as exc:
        log.warning("could not stop prompt %s on %s: %s", prompt_id, client.name, exc)


def _describe_failure(outcome: Outcome) -> str:
    if outcome.status == "error":
        return f"{pipeline.failure_message(outcome)} [{outcome.message}]"
    if outcome.status == "interrupted":
        return "the prompt was interrupted on the server (someone pressed cancel or restarted it)"
    return "the server no longer knows this prompt (it may have restarted); try again"


async def run_job(
    session: aiohttp.ClientSession,
    settings: Settings,
    server: ServerConfig,
    workflow: Workflow,
    resolved: ResolvedOptions,
    prepared: Any,
    out: Path,
    *,
    max_bytes: int | None,
    bar: ProgressBar,
    safety: ShellSafety | None = None,
) -> AnimateResult:
    """Upload, post, follow, download, check (``safety``) and write ``out`` on one server."""
    client = _client(session, settings, server, timeout=settings.comfyui_timeout)
    client_id = await asyncio.to_thread(load_or_create_client_id, settings.data_dir, server.name)
    job_id = f"shell{uuid.uuid4().hex[:12]}"
    prompt_id = str(uuid.uuid4())
    hub = ComfyHub(client, session, client_id)
    await hub.start()
    posted = False
    try:
        bar.update(f"connecting to {server.name}")
        if not await hub.wait_connected(min(settings.comfyui_timeout, 15.0)):
            raise ShellError(f"server {server.name}: websocket not reachable ({hub.last_error or 'no answer'})")
        bar.update("uploading the image")
        image_name = await pipeline.upload_input(client, prepared.png, content_upload_name(prepared.png))
        graph = pipeline.build_graph(
            workflow, resolved, image_name=image_name, width=prepared.width, height=prepared.height, job_id=job_id
        )
        # The hub keeps events of a prompt nobody follows yet, so following right after the
        # POST misses nothing (pipeline.follow subscribes).
        await pipeline.post_prompt(hub, graph, prompt_id=prompt_id, extra_data={"job_id": job_id})
        posted = True
        log.info("job %s: prompt %s posted to %s", job_id, prompt_id, server.name)
        bar.update("waiting in the server's queue")
        async with asyncio.timeout(settings.job_timeout):
            outcome = await pipeline.follow(hub, prompt_id, on_event=ProgressReporter(workflow, bar))
        if outcome.status != "success":
            raise ShellError(f"server {server.name}: {_describe_failure(outcome)}")
        found = pipeline.result_file(outcome, workflow)
        bar.update(f"downloading {found.format}")
        with tempfile.TemporaryDirectory(prefix=".animate-", dir=out.parent) as tmp:
            path = await pipeline.download_result(client, found, Path(tmp), job_id)
            if safety is not None:
                bar.update("checking the result")
                await safety.check_result(path)  # the original file, before any re-encode
            result = await write_output(path, out, found.format, max_bytes)
        log.info("job %s: prompt %s done, wrote %s", job_id, prompt_id, out)
        bar.finish("done")
        return AnimateResult(out, result[0], result[1], resolved.get("seed"), server.name, prompt_id, result[2])
    except asyncio.CancelledError:
        if posted:
            bar.finish(f"interrupted: stopping prompt {prompt_id} on {server.name}")
            await stop_prompt(client, prompt_id)
        raise
    except TimeoutError:
        if posted:
            await stop_prompt(client, prompt_id)
        raise ShellError(f"server {server.name}: no result within JOB_TIMEOUT ({settings.job_timeout:g} s); the prompt was stopped") from None
    finally:
        bar.finish()
        await hub.close()


async def write_output(path: Path, out: Path, fmt: str, max_bytes: int | None) -> tuple[int, str, bool]:
    """Move (or convert / shrink) the downloaded result to ``out``: (size, format, converted)."""
    size = (await asyncio.to_thread(path.stat)).st_size
    want_mp4 = out.suffix.lower() == ".mp4" and fmt != "mp4"
    if want_mp4 or (max_bytes is not None and size > max_bytes):
        # fit_video keeps a file that already fits, so converting asks for "smaller than it is".
        limit = max_bytes if max_bytes is not None else size - 1
        fitted = await fit_video_async(path, limit, dest=out)
        if fitted.path is None or Path(fitted.path) != out:
            await asyncio.to_thread(_replace, Path(fitted.path) if fitted.path else path, out)
        return fitted.size, fitted.format, fitted.reencoded
    await asyncio.to_thread(_replace, path, out)
    return size, fmt, False


def _replace(src: Path, dest: Path) -> None:
    os.replace(src, dest)


def _human(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KB"


async def animate(settings: Settings, args: argparse.Namespace, out_stream: TextIO, err_stream: TextIO,
                  detector: SafetyDetector | None = None) -> int:
    """The whole command; raises :class:`ShellError` for a one-line failure."""
    options = parse_options(getattr(args, "option", None) or [])
    safety = ShellSafety(Mode(getattr(args, "safety", None) or "strict"), detector)
    max_bytes = getattr(args, "max_bytes", None)
    if max_bytes is not None and max_bytes < 1024:
        raise ShellError("--max-bytes must be at least 1024", EXIT_USAGE)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ShellError(f"the folder of --out ({out.parent}) does not exist", EXIT_USAGE)
    if getattr(args, "server", None) is not None:
        find_server(settings, args.server)  # a typo is a usage error before any work
    registry = await asyncio.to_thread(usable_workflows, settings)
    explicit = getattr(args, "workflow", None)
    workflow = pick_workflow(registry, explicit)
    resolved = resolve(workflow, format_for_suffix(workflow, options, out))
    prepared = await read_and_prepare(settings, Path(args.image), str(resolved.get("fit") or "crop"))
    bar = ProgressBar(err_stream)
    bar.update(f"prepared {prepared.source_format} {prepared.source_size[0]}x{prepared.source_size[1]} "
               f"-> {prepared.width}x{prepared.height}")
    await safety.load()
    await safety.check_input(prepared.png)  # before anything is uploaded
    async with aiohttp.ClientSession() as session:
        servers = await answering_servers(session, settings, getattr(args, "server", None))
        server, runnable = await choose_server_and_workflow(
            session, settings, servers, registry, workflow, explicit=explicit is not None, bar=bar
        )
        if runnable is not workflow:
            workflow = runnable
            resolved = resolve(workflow, format_for_suffix(workflow, options, out))
        result = await run_job(
            session, settings, server, workflow, resolved, prepared, out, max_bytes=max_bytes, bar=bar, safety=safety
        )
    head = await asyncio.to_thread(_head, result.path)
    actual = sniff_format(head)
    note = ", converted" if result.converted else ""
    out_stream.write(
        f"wrote {result.path}: {_human(result.size)}, {actual if actual != 'unknown' else result.format}{note}; "
        f"seed {result.seed}; workflow {workflow.name} on {result.server} (prompt {result.prompt_id})\n"
        f"{safety.summary()}\n"
    )
    out_stream.flush()
    return EXIT_OK


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(16)


def run_animate(
    settings: Settings, args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None,
    detector: SafetyDetector | None = None,
) -> int:
    """Entry point of ``python -m bot animate`` (runs its own event loop). ``detector``: the safety
    detector (default NudeNet; tests give the deterministic one)."""
    out_stream = out if out is not None else sys.stdout
    err_stream = err if err is not None else sys.stderr
    try:
        return asyncio.run(animate(settings, args, out_stream, err_stream, detector))
    except ShellError as exc:
        err_stream.write(f"error: {' '.join(exc.message.split())}\n")
        return exc.code
    except UserFacingError as exc:  # e.g. JobFailed from the pipeline or the video fitter
        detail = f" [{exc.detail}]" if exc.detail and exc.detail != exc.user_message else ""
        err_stream.write(f"error: {' '.join((exc.user_message + detail).split())}\n")
        return EXIT_FAILED
    except ComfyError as exc:
        err_stream.write(f"error: server {exc.server}: {' '.join(exc.message.split())}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err_stream.write("interrupted\n")
        return EXIT_INTERRUPTED
    except OSError as exc:
        err_stream.write(f"error: {exc.strerror or type(exc).__name__}{f' ({exc.filename})' if exc.filename else ''}\n")
        return EXIT_FAILED
