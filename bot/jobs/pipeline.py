"""The steps of one generation on one ComfyUI server, shared by the job service and the shell.

upload the prepared image -> inject it and the options into the workflow -> subscribe to the
prompt on the server's hub, then ``POST /prompt`` with the bot's own prompt_id -> follow it to
its end -> download the result. Fairness, persistence and retries live in the job service
(:mod:`bot.jobs.runner` runs these steps for a job); ``python -m bot animate`` calls them directly.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.comfy.client import ComfyClient
from bot.comfy.errors import ComfyValidationError
from bot.comfy.events import Event
from bot.comfy.follow import Outcome, follow_prompt
from bot.comfy.hub import ComfyHub
from bot.comfy.models import FileRef
from bot.errors import JobFailed
from bot.media.images import content_upload_name
from bot.media.outputs import ResultFile, pick_result
from bot.workflows import Workflow, inject
from bot.workflows.model import ResolvedOptions

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 1024 * 1024 * 1024  # a result bigger than 1 GiB is refused while downloading


@dataclass(frozen=True)
class Submitted:
    """A prompt posted to a server: follow it with :func:`follow`."""

    prompt_id: str
    number: int


def filename_prefix(job_id: str) -> str:
    """A unique output prefix per job, so ComfyUI never serves another job's file from cache."""
    return f"animate_{job_id}"


async def upload_input(client: ComfyClient, png: bytes, name: str) -> str:
    """Upload the prepared PNG and return the name LoadImage must use (the server's answer).

    Never with ``overwrite``: ComfyUI would rewrite the file in place, and a prompt whose
    LoadImage reads it at that moment (the same image posted twice, a re-roll, a job moved
    from a dead server) fails with "cannot identify image file". Without it, ComfyUI keeps a
    file of the same name and identical bytes and answers that name, and saves different bytes
    as ``name (1).ext`` (answering that name), so ``name`` being derived from the bytes makes a
    re-upload free and never touches a file another prompt may be reading.
    """
    ref = await client.upload_image(png, name, overwrite=False)
    return f"{ref.subfolder}/{ref.filename}" if ref.subfolder else ref.filename


async def read_prepared_input(path: Path) -> tuple[bytes, str, tuple[int, int]]:
    """A job's prepared PNG (kept in ``DATA_DIR``), the name to upload it under (from its content,
    :func:`bot.media.images.content_upload_name`) and its size. :class:`JobFailed` if it is gone."""
    try:
        png = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise JobFailed("This job's image is no longer kept.", detail=str(exc)) from exc
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise JobFailed("This job's prepared image is damaged.", detail="not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return png, content_upload_name(png), (int(width), int(height))


def build_graph(
    workflow: Workflow,
    options: ResolvedOptions | Mapping[str, Any],
    *,
    image_name: str,
    width: int,
    height: int,
    job_id: str,
) -> dict[str, Any]:
    return inject(
        workflow, options, image_name=image_name, width=width, height=height, filename_prefix=filename_prefix(job_id)
    )


def validation_failure(exc: ComfyValidationError) -> JobFailed:
    """A member-facing failure for a graph the server refused (the admin reads the detail)."""
    summary = exc.summary or "the server refused the workflow"
    if "not in []" in summary or "ckpt_name" in summary:
        message = "The image server isn't set up for this workflow yet (a model is missing). An admin has been told."
    elif exc.error_type == "invalid_prompt":
        message = "The image server is missing a node this workflow needs. An admin has been told."
    else:
        message = "The image server refused this job's settings. Try other options, or ask an admin."
    return JobFailed(message, detail=f"{exc.server}: {summary}")


async def post_prompt(
    hub: ComfyHub, graph: dict[str, Any], *, prompt_id: str, extra_data: Mapping[str, Any] | None = None
) -> Submitted:
    """``POST /prompt`` once (never retried) with the hub's clientId so its events reach us."""
    try:
        queued = await hub.client.queue_prompt(
            graph, client_id=hub.client_id, prompt_id=prompt_id, extra_data=dict(extra_data or {})
        )
    except ComfyValidationError as exc:
        raise validation_failure(exc) from exc
    return Submitted(prompt_id=queued.prompt_id, number=queued.number)


async def follow(
    hub: ComfyHub, prompt_id: str, *, on_event: Callable[[Event], Awaitable[None]] | None = None
) -> Outcome:
    """Follow a prompt already subscribed or posted on ``hub`` to its end."""
    sub = hub.subscribe(prompt_id)
    try:
        return await follow_prompt(hub.client, sub, on_event=on_event)
    finally:
        sub.close()


def result_file(outcome: Outcome, workflow: Workflow) -> ResultFile:
    """The output file of a successful prompt, whatever key its node used."""
    if outcome.entry is None:
        raise JobFailed("The server finished but its result is gone.", detail="no history entry")
    found = pick_result(outcome.entry.outputs, prefer_node=workflow.output_node_id)
    if found is None:
        raise JobFailed("The server finished without producing a video.", detail=f"outputs: {list(outcome.entry.outputs)}")
    return found


async def download_result(client: ComfyClient, found: ResultFile, dest_dir: Path, job_id: str) -> Path:
    """Stream the result to ``dest_dir/<job_id>.<ext>`` (byte-capped) and return the path."""
    suffix = Path(found.filename).suffix.lower() or ".bin"
    dest = dest_dir / f"{job_id}{suffix}"
    ref = FileRef(filename=found.filename, subfolder=found.subfolder, type=found.type)
    await client.download(ref, dest, max_bytes=MAX_RESULT_BYTES)
    return dest


def failure_message(outcome: Outcome) -> str:
    """Member-facing reason for a prompt that ended in an error inside ComfyUI."""
    error = outcome.error
    if error is not None and error.node_type:
        return f"The generation failed on the image server (at {error.node_type}). Try again, or with another image."
    return "The generation failed on the image server. Try again, or with another image."
