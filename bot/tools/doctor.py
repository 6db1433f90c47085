"""``python -m bot doctor``: check an installation and print one PASS/FAIL/WARN line per check.

Checks, in order: the settings, the Discord token's form (never printed), every ComfyUI server
(concurrently, each bounded by ``COMFYUI_TIMEOUT``: reachable, version, queue, GPU), every
workflow file in ``WORKFLOWS_DIR`` (loads; validates against each reachable server's
``/object_info``: node packs, inputs, checkpoint and other choice values; the checkpoint's
metadata via ``/view_metadata`` where the server offers it), the data folder (writable; the job
store opens at the current schema version), whether the metrics and health endpoints are on and
where (``METRICS_ADDRESS``: the port free to listen on; a warning when it is not loopback) the content-safety detector (one
PASS line naming it and its load time, or one FAIL line saying why it cannot load: the bot then
refuses every job in servers whose safety mode is not off) and the Discord permissions the invite
link asks for.

The exit status is 0 when no check FAILs (WARN lines are advice). Operators see server names and
paths; tokens, passwords and server URLs are never printed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import os
import random
import re
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import aiohttp

from bot.comfy.client import ComfyClient
from bot.comfy.errors import ComfyError
from bot.comfy.models import SystemStats
from bot.safety.detector import SafetyDetector
from bot.safety.errors import SafetyUnavailable
from bot.settings import ServerConfig, Settings
from bot.workflows import Workflow, inject, load_workflows, validate_against
from bot.workflows.loader import LoadResult
from bot.workflows.support import blocking
from bot.workflows.validate import combo_options

log = logging.getLogger(__name__)

Status = Literal["PASS", "FAIL", "WARN"]
APPLICATION_ID = "APPLICATION_ID"
DEFAULT_SERVER_TIMEOUT = 10.0
_TOKEN_PART = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Check:
    """The result of one check: shown as ``STATUS  name: detail``."""

    status: Status
    name: str
    detail: str = ""

    def line(self) -> str:
        detail = " ".join(self.detail.split())  # always one line
        return f"{self.status}  {self.name}" + (f": {detail}" if detail else "")


@dataclass
class ServerReport:
    """What was learnt about one server (object_info is None when it did not answer)."""

    server: ServerConfig
    checks: list[Check] = field(default_factory=list)
    object_info: dict[str, Any] | None = None
    client: ComfyClient | None = None


# ---------------------------------------------------------------------------- pure checks


def check_settings(settings: Settings) -> Check:
    names = ", ".join(s.name for s in settings.comfyui_servers) or "none"
    return Check(
        "PASS",
        "settings",
        f"loaded; ComfyUI servers: {names}; workflows: {settings.workflows_dir}; data: {settings.data_dir}; "
        f"log level {settings.log_level}, log format {settings.log_format}",
    )


def _bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now (None when it can)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"{host} does not resolve ({exc.strerror or type(exc).__name__})"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            return (os.strerror(exc.errno) if exc.errno else type(exc).__name__).lower()
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_metrics(settings: Settings) -> Check:
    """Whether ``/metrics``, ``/healthz`` and ``/readyz`` are served, and where."""
    if settings.metrics_address is None:
        return Check("PASS", "metrics", "off (set METRICS_ADDRESS to a loopback host:port to serve /metrics, "
                                        "/healthz and /readyz)")
    host, port = settings.metrics_address
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    where = f"on at http://{shown}/metrics, /healthz and /readyz"
    problem = _bind_problem(host, port)
    if problem is not None:
        return Check("WARN", "metrics", f"{where}, but the port cannot be listened on now ({problem}); "
                                        "`run` stops unless it is free (is the bot already running?)")
    if not _is_loopback(host):
        return Check("WARN", "metrics", f"{where}; {host} is not a loopback address and the endpoints have no "
                                        "authentication: keep the port behind a firewall")
    return Check("PASS", "metrics", where)


def token_problem(token: str | None) -> str | None:
    """Why ``token`` does not look like a Discord bot token (``None`` if it does). Never echoes it."""
    if not token:
        return "DISCORD_TOKEN is not set; the bot cannot run without it (Developer Portal, Bot tab, Reset Token)"
    parts = token.split(".")
    if len(parts) != 3:
        return f"DISCORD_TOKEN should have 3 parts separated by dots, it has {len(parts)}"
    for index, part in enumerate(parts, start=1):
        if not _TOKEN_PART.fullmatch(part):
            return f"DISCORD_TOKEN part {index} is not base64url text (letters, digits, - and _ only)"
    try:
        first = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        first = ""
    if not first.isdigit():
        return "DISCORD_TOKEN part 1 should encode the application id; was the whole token copied?"
    return None


def check_token(settings: Settings) -> Check:
    problem = token_problem(settings.discord_token)
    if problem is not None:
        return Check("FAIL", "discord token", problem)
    return Check("PASS", "discord token", "set and well-formed (not shown)")


def check_permissions() -> Check:
    from bot.discord.permissions import INVITE_PERMISSIONS, invite_url  # imports discord: only when asked

    sentinel = 999_999_999_999_999_999
    url = invite_url(sentinel).replace(str(sentinel), APPLICATION_ID)
    names = ", ".join(name for name, granted in INVITE_PERMISSIONS if granted)
    return Check(
        "PASS",
        "discord permissions",
        f"the invite asks for permissions={INVITE_PERMISSIONS.value} ({names}); invite URL: {url} "
        f"(replace {APPLICATION_ID} with the application id from the Developer Portal)",
    )


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024**3:.1f} GiB"


def describe_devices(stats: SystemStats) -> Check:
    if not stats.devices:
        return Check("WARN", "gpu", "the server reports no device")
    described = "; ".join(f"{d.name} ({d.type}, {_gib(d.vram_total)} VRAM, {_gib(d.vram_free)} free)" for d in stats.devices)
    if all(d.type == "cpu" for d in stats.devices):
        return Check("WARN", "gpu", f"no GPU, CPU only: generation will be very slow; {described}")
    return Check("PASS", "gpu", described)


def checkpoint_names(workflow: Workflow) -> list[str]:
    """The checkpoint files a default job of ``workflow`` loads (``ckpt_name`` inputs)."""
    graph = inject(workflow, {}, image_name="", width=1024, height=576, filename_prefix="doctor", rng=random.Random(0))
    names: list[str] = []
    for node in graph.values():
        value = node.get("inputs", {}).get("ckpt_name")
        if isinstance(value, str) and value not in names:
            names.append(value)
    return names


def _available(object_info: dict[str, Any], name: str) -> bool:
    """Whether any node's ``ckpt_name`` list on the server offers ``name``."""
    for info in object_info.values():
        inputs = info.get("input", {}) if isinstance(info, dict) else {}
        for group in ("required", "optional"):
            values = combo_options((inputs.get(group) or {}).get("ckpt_name"))
            if values and name in values:
                return True
    return False


def _summarize_metadata(meta: dict[str, Any]) -> str:
    keys = ("modelspec.title", "modelspec.architecture", "modelspec.resolution", "modelspec.date", "ss_base_model_version")
    shown = [f"{k.split('.')[-1]}={str(meta[k])[:60]}" for k in keys if k in meta]
    if not shown:
        shown = [f"{len(meta)} keys"]
    return ", ".join(shown)


# ---------------------------------------------------------------------------- I/O checks


async def check_server(session: aiohttp.ClientSession, settings: Settings, server: ServerConfig, timeout: float) -> ServerReport:
    """Reachable, version, queue and GPU of one server, bounded by ``timeout`` in total."""
    report = ServerReport(server)
    client = ComfyClient(session, server, token=settings.comfyui_token, timeout=timeout, retries=0)
    report.client = client
    prefix = f"server {server.name}"
    failure: str | None = None
    try:
        async with asyncio.timeout(timeout + 1.0):
            async with asyncio.TaskGroup() as group:  # the first failure cancels the others
                stats_task = group.create_task(client.system_stats())
                queue_task = group.create_task(client.queue_remaining())
                info_task = group.create_task(client.object_info())
    except* ComfyError as excs:
        first = excs.exceptions[0]
        failure = f"not usable: {first.message if isinstance(first, ComfyError) else first}"
    except* TimeoutError:
        failure = f"no answer within {timeout:g} s"
    if failure is not None:
        report.checks.append(Check("FAIL", prefix, failure))
        return report
    stats, queue, object_info = stats_task.result(), queue_task.result(), info_task.result()
    report.object_info = object_info
    report.checks.append(Check(
        "PASS", prefix,
        f"reachable; ComfyUI {stats.comfyui_version or 'version unknown'}; queue {queue}; {len(object_info)} node types",
    ))
    gpu = describe_devices(stats)
    report.checks.append(Check(gpu.status, f"{prefix} gpu", gpu.detail))
    return report


def _check_data_dir(data_dir: Path) -> Check:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".doctor-", dir=data_dir)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return Check("FAIL", "data folder", f"{data_dir} is not writable: {exc.strerror or type(exc).__name__}")
    return Check("PASS", "data folder", f"{data_dir} is writable")


async def check_store(settings: Settings) -> Check:
    from bot.storage import SCHEMA_VERSION, Storage

    try:
        store = await Storage.open(settings.store_path)
    except Exception as exc:  # noqa: BLE001 - any failure to open is what we report
        return Check("FAIL", "job store", f"{settings.store_path} does not open: {type(exc).__name__}: {exc}")
    try:
        version = await store.schema_version()
    finally:
        await store.close()
    if version != SCHEMA_VERSION:
        return Check("FAIL", "job store", f"{settings.store_path} schema version {version}, expected {SCHEMA_VERSION}")
    return Check("PASS", "job store", f"{settings.store_path} opens; schema version {version} is current")


async def check_safety(detector: SafetyDetector | None = None) -> Check:
    """Load the content-safety detector (NudeNet by default) as the bot does at start."""
    if detector is None:
        from bot.safety.gate import default_detector

        detector = default_detector()
    started = time.perf_counter()
    try:
        await detector.load()
    except SafetyUnavailable as exc:
        reason = exc.reason
    except Exception as exc:  # noqa: BLE001 - whatever stops it loading is what we report
        reason = f"{type(exc).__name__}: {exc}"
    else:
        return Check("PASS", "safety detector", f"{detector.name} loaded in {time.perf_counter() - started:.2f} s")
    return Check("FAIL", "safety detector", f"cannot load: {reason}; the bot refuses every job in servers whose "
                 "safety mode is not off")


def workflow_checks(loaded: LoadResult, reports: Sequence[ServerReport]) -> list[Check]:
    """Load errors, then each workflow against each reachable server's /object_info."""
    checks: list[Check] = [Check("FAIL", f"workflow file {e.path.name}", e.message) for e in loaded.errors]
    workflows = list(loaded.registry)
    if not workflows:
        checks.append(Check("FAIL", "workflows", "no workflow loaded; the bot has nothing to run"))
        return checks
    for workflow in workflows:
        checks.append(Check("PASS", f"workflow {workflow.name}", f"loads ({len(workflow.member_options)} member options)"))
        for report in reports:
            name = f"workflow {workflow.name} on {report.server.name}"
            if report.object_info is None:
                checks.append(Check("WARN", name, "not checked: the server did not answer (see above)"))
                continue
            problems = validate_against(workflow, report.object_info)
            if blocking(problems):
                checks.append(Check("FAIL", name, "; ".join(p.message for p in problems)))
            elif problems:  # it runs; jobs choosing these values are refused
                checks.append(Check("WARN", name, "runs, but the server refuses some option values: "
                                    + "; ".join(p.message for p in problems)))
            else:
                checks.append(Check("PASS", name, "every node, input and value is on the server"))
    return checks


async def metadata_checks(loaded: LoadResult, reports: Sequence[ServerReport]) -> list[Check]:
    """The checkpoint's safetensors metadata per server (WARN where the server offers none)."""
    wanted: list[tuple[ServerReport, str]] = []
    for report in reports:
        if report.object_info is None or report.client is None:
            continue
        for workflow in loaded.registry:
            for ckpt in checkpoint_names(workflow):
                if (report, ckpt) not in wanted and _available(report.object_info, ckpt):
                    wanted.append((report, ckpt))

    async def one(report: ServerReport, ckpt: str) -> Check:
        name = f"checkpoint {ckpt} on {report.server.name}"
        assert report.client is not None
        try:
            meta = await report.client.view_metadata("checkpoints", ckpt)
        except ComfyError as exc:
            return Check("WARN", name, f"metadata not readable: {exc.message}")
        if not meta:
            return Check("WARN", name, "the server offers no metadata for it (not a .safetensors file, or no /view_metadata)")
        return Check("PASS", name, f"metadata: {_summarize_metadata(meta)}")

    return list(await asyncio.gather(*(one(r, c) for r, c in wanted)))


async def collect_checks(settings: Settings, session: aiohttp.ClientSession, *,
                         detector: SafetyDetector | None = None) -> list[Check]:
    """Every check, in display order (``detector``: the safety detector to load; default NudeNet)."""
    timeout = min(settings.comfyui_timeout, DEFAULT_SERVER_TIMEOUT)
    checks = [check_settings(settings), check_token(settings), check_metrics(settings)]
    loading = asyncio.create_task(asyncio.to_thread(load_workflows, settings.workflows_dir))
    try:
        reports = await asyncio.gather(*(check_server(session, settings, s, timeout) for s in settings.comfyui_servers))
    finally:
        loaded = await loading
    for report in reports:
        checks.extend(report.checks)
    checks.extend(workflow_checks(loaded, reports))
    checks.extend(await metadata_checks(loaded, reports))
    data = await asyncio.to_thread(_check_data_dir, settings.data_dir)
    checks.append(data)
    if data.status == "PASS":
        checks.append(await check_store(settings))
    else:
        checks.append(Check("FAIL", "job store", "not checked: the data folder is not writable"))
    checks.append(await check_safety(detector))
    checks.append(check_permissions())
    return checks


def _scrub(text: str, settings: Settings) -> str:
    """Belt and braces: no secret or server URL ever reaches the output."""
    secrets = [settings.discord_token, settings.comfyui_token]
    for server in settings.comfyui_servers:
        secrets += [server.password, server.url]
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


async def doctor(settings: Settings, out: TextIO, *, detector: SafetyDetector | None = None) -> int:
    """Run every check, write one line each to ``out``; 0 when nothing failed."""
    async with aiohttp.ClientSession() as session:
        checks = await collect_checks(settings, session, detector=detector)
    for check in checks:
        out.write(_scrub(check.line(), settings) + "\n")
    failed = sum(c.status == "FAIL" for c in checks)
    warned = sum(c.status == "WARN" for c in checks)
    verdict = "FAILED" if failed else "OK"
    out.write(f"{verdict}: {len(checks)} checks, {failed} failed, {warned} warnings\n")
    out.flush()
    return 1 if failed else 0


def run_doctor(settings: Settings, out: TextIO | None = None, *, detector: SafetyDetector | None = None) -> int:
    """Entry point of ``python -m bot doctor`` (runs its own event loop)."""
    return asyncio.run(doctor(settings, out if out is not None else sys.stdout, detector=detector))
