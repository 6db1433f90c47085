"""What a job asks of a server, for the wait estimate: its :class:`~bot.jobs.estimate.Work`.

A run's cost grows with its sampling steps, its frames and the pixels of each frame, so a job's
work is read from its options (``steps``, ``frames``; the workflow's default when a job has none)
and from the size of its prepared image. That size is the one fact kept for this: it is stored
with the job when it is made (``result_meta["input_size"]`` = ``[width, height]``, written by
:func:`input_size_fields`, read by :func:`input_pixels`), so it survives a restart without a
new column. A job stored without it counts as :data:`DEFAULT_PIXELS` (SVD's 1024x576).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

from bot.jobs.estimate import Work
from bot.jobs.models import Job
from bot.workflows import Workflow

__all__ = ["DEFAULT_PIXELS", "INPUT_SIZE_KEY", "input_pixels", "input_size_fields", "png_size", "work_of"]

INPUT_SIZE_KEY: Final = "input_size"
DEFAULT_PIXELS: Final = 1024 * 576
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's first 24 bytes, or None when they are not a PNG's."""
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE:
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def input_size_fields(head: bytes) -> dict[str, Any]:
    """The ``result_meta`` entries that keep the prepared image's size (from its first 24 bytes)."""
    size = png_size(head)
    return {INPUT_SIZE_KEY: list(size)} if size is not None and size[0] > 0 and size[1] > 0 else {}


def input_pixels(job: Job) -> int | None:
    """Width x height of the job's prepared image, when it was stored with the job."""
    size = job.result_meta.get(INPUT_SIZE_KEY)
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return int(size[0]) * int(size[1])
    return None


def work_of(workflow_name: str, options: Mapping[str, Any], pixels: int | None,
            workflow: Workflow | None = None) -> Work:
    """The work of a job of ``workflow_name`` with ``options`` on an image of ``pixels``."""
    return Work(workflow_name, _count(options, "steps", workflow), _count(options, "frames", workflow),
                pixels if pixels and pixels > 0 else DEFAULT_PIXELS)


def _count(options: Mapping[str, Any], name: str, workflow: Workflow | None) -> int:
    value = options.get(name)
    if value is None and workflow is not None and name in workflow.options:
        value = workflow.options[name].default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return 1
    try:
        return max(1, int(value))
    except ValueError:
        return 1
