"""Extend: which files an extension starts from and joins onto, the per-server limit's seam, and the join.

An Extend is a new job (made by :meth:`bot.jobs.intake.Intake.extend`) whose input is the last
frame of the result it extends and whose result, once ComfyUI made it, is joined onto that result
and delivered as one clip. This module owns the file rules and the join; it knows nothing of Discord:

* :func:`frame_source`: where an Extend of a job takes its first frame, always an ORIGINAL output
  file in ``DATA_DIR`` (never the copy re-encoded to fit an upload limit, which is made in a
  temporary folder and never stored; never the bot's own boomerang re-encode): the downloaded
  result, or for an extension the new clip as downloaded. On a boomerang it is the forward part's
  last frame (the turning point).
* :func:`join_base`: the clip the extension is joined onto: the extended job's stored result (for
  an extension, the joined clip) or, where the bot ping-ponged a result itself, its forward original.
* :func:`plan_for`: what an extension job keeps in ``result_meta["extend"]`` when it is made, so the
  join needs nothing else after a restart: the base clip and whether it is a boomerang, the
  extension's number and the limit then, and where the first result was posted (for its link).
* :class:`JoiningDelivery` wraps the job service's delivery: before an extension's result is
  delivered, the new clip is joined onto the base in a thread (the repeated boundary frame
  dropped): frame by frame (:func:`bot.media.stream_join.join_streaming_async`), or for a boomerang,
  which is ping-ponged again, with the frames at hand (:func:`bot.media.clips.join_clips_async`); the
  joined file is written under ``DATA_DIR/results`` and becomes the stored result in one store
  update (the new clip's original stays, named in ``result_meta["segment_path"]``, for the next
  Extend). Then the ordinary delivery runs: the result safety check and the upload-limit fitting
  see the joined clip. A bot stopped at any point redelivers the job from the store: a job not
  yet joined is joined again (the join writes a temporary file and renames it), a joined one is
  delivered as it is.
* :data:`ExtensionLimit` is the one seam for the per-server limit (an async callable from the guild
  id to the most extensions of one result; the bot's reads ``/mod caps max_extensions``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, cast

from bot.jobs.context import Delivery
from bot.jobs.models import Job, JobState
from bot.media.clips import OutputFormat, join_clips_async
from bot.media.stream_join import join_streaming_async
from bot.storage.jobs import JobStore

log = logging.getLogger(__name__)

__all__ = ["EXTENDABLE", "EXTEND_KEY", "ExtensionLimit", "JoiningDelivery", "frame_source", "join_base", "plan_for"]

#: ``result_meta`` key of an extension's plan (see :func:`plan_for`).
EXTEND_KEY: Final = "extend"
#: ``result_meta`` keys written by the join: the new clip's original file and whether it is a boomerang.
SEGMENT_KEY: Final = "segment_path"
SEGMENT_BOOMERANG_KEY: Final = "segment_boomerang"
_WRITABLE: Final = ("mp4", "gif", "webp")
#: States of a job whose result can be extended: posted (its state may still be written: a member
#: can press Extend the moment the message shows), or delivered.
EXTENDABLE: Final = frozenset({JobState.DELIVERING, JobState.DELIVERED})

#: The per-server limit: guild id (None in DMs) -> the most extensions one result may have.
ExtensionLimit = Callable[[int | None], Awaitable[int]]


def _meta_path(meta: dict[str, Any], key: str) -> Path | None:
    value = meta.get(key)
    return Path(value) if isinstance(value, str) and value else None


def frame_source(job: Job) -> tuple[Path | None, bool]:
    """The original file an Extend of ``job`` takes its last frame from, and whether that file is a
    boomerang (then the forward part's last frame is the one; see the module docstring)."""
    meta = job.result_meta
    segment = _meta_path(meta, SEGMENT_KEY)
    if segment is not None:  # an extension: its new clip as ComfyUI made it
        return segment, bool(meta.get(SEGMENT_BOOMERANG_KEY))
    original = _meta_path(meta, "original_path")
    if original is not None:  # the bot ping-ponged it: the forward original
        return original, False
    return (Path(job.result_path) if job.result_path else None), bool(meta.get("boomerang"))


def join_base(job: Job) -> tuple[Path | None, bool]:
    """The clip an extension of ``job`` is joined onto, and whether it is a boomerang."""
    meta = job.result_meta
    original = _meta_path(meta, "original_path")
    if original is not None and SEGMENT_KEY not in meta:
        return original, False  # forward original of a result the bot ping-ponged
    return (Path(job.result_path) if job.result_path else None), bool(meta.get("boomerang"))


def plan_for(parent: Job, root: Job | None, limit: int) -> dict[str, Any]:
    """The plan an extension of ``parent`` keeps (``result_meta["extend"]``); ``root``: the chain's first job."""
    base, base_boomerang = join_base(parent)
    first = root or parent
    plan: dict[str, Any] = {"base": str(base) if base else None, "base_boomerang": base_boomerang,
                            "index": parent.extension_index + 1, "of": limit, "first_job_id": first.id}
    if first.delivered_message_id is not None and not first.deleted:
        plan["first_message"] = [first.guild_id, first.channel_id, first.delivered_message_id]
    return plan


def chain_fields(parent: Job) -> dict[str, Any]:
    """The chain columns of an extension of ``parent``."""
    return {"chain_root_id": parent.chain_root_id or parent.id, "extension_index": parent.extension_index + 1}


async def join_extension(store: JobStore, job: Job) -> Job:
    """Join a delivering extension's new clip onto its base and store the joined clip as its result
    (see the module docstring). A job already joined, or no extension, is returned as it is."""
    plan = job.result_meta.get(EXTEND_KEY)
    if not isinstance(plan, dict) or SEGMENT_KEY in job.result_meta or not job.result_path:
        return job
    meta = job.result_meta
    original = _meta_path(meta, "original_path")
    segment, segment_boomerang = (original, False) if original is not None else (Path(job.result_path),
                                                                                   bool(meta.get("boomerang")))
    base = Path(str(plan.get("base") or ""))
    wanted = str(job.options.get("format") or meta.get("format") or "mp4").lower()
    fmt = cast(OutputFormat, wanted if wanted in _WRITABLE else "mp4")
    out = segment.with_name(f"{job.id}.joined.{fmt}")
    partial = out.with_name(f"{job.id}.joined.partial")
    fps = job.options.get("fps")
    rate = fps if isinstance(fps, (int, float)) and fps > 0 else None
    boomerangs = (bool(plan.get("base_boomerang")), segment_boomerang, bool(meta.get("boomerang")))
    if rate is not None and not any(boomerangs):  # frame by frame: memory stays a few frames
        joined = await join_streaming_async(base, segment, partial, fps=rate, format=fmt)
    else:  # a boomerang's way back needs its frames at hand
        joined = await join_clips_async(base, segment, partial, fps=rate, first_boomerang=boomerangs[0],
                                        second_boomerang=boomerangs[1], boomerang=boomerangs[2], format=fmt)
    await asyncio.to_thread(partial.replace, out)
    log.info("job %s: extension %s joined onto %s (%d + %d frames)", job.id, plan.get("index"), base.name,
             joined.first_frames, joined.second_frames)
    fields = {**meta, SEGMENT_KEY: str(segment), SEGMENT_BOOMERANG_KEY: segment_boomerang, "format": fmt,
              "size": joined.size, "joined_frames": joined.frames}
    joined_job = await store.update(job.id, expect=[JobState.DELIVERING], result_path=str(out), result_meta=fields)
    if original is not None and Path(job.result_path) != original:  # the bot's own boomerang of the new clip
        await asyncio.to_thread(Path(job.result_path).unlink, missing_ok=True)  # nothing names it any more
    return joined_job


class JoiningDelivery:
    """The job service's delivery with extensions joined first (see the module docstring)."""

    def __init__(self, inner: Delivery, store: JobStore) -> None:
        self.inner = inner
        self.store = store

    async def deliver(self, job: Job, result: Path, attempt: int) -> int | None:
        if isinstance(job.result_meta.get(EXTEND_KEY), dict):
            job = await join_extension(self.store, job)
            result = Path(job.result_path or result)
        return await self.inner.deliver(job, result, attempt)

    async def job_ended(self, job: Job) -> None:
        await self.inner.job_ended(job)

    def follow(self, job: Job) -> None:
        self.inner.follow(job)

    def per_job_counts(self) -> dict[str, int]:
        counts = getattr(self.inner, "per_job_counts", None)
        return dict(counts()) if callable(counts) else {}

