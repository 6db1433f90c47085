"""What the bot does to a downloaded result before delivery, for options no node of the workflow does.

* ``loop = boomerang`` on a workflow whose ``loop`` option binds no input (the core-nodes workflow has
  no ``pingpong``): the result is re-encoded in VideoHelperSuite's ``pingpong`` order with
  :func:`bot.media.clips.make_boomerang_async` (PyAV, in a thread), so both workflows give the same
  2n-2 frames. The downloaded original is kept next to it (``original_path`` in ``result_meta``).

Whether a result is a boomerang is recorded in ``result_meta["boomerang"]`` (an Extend of it
continues from the forward part's last frame and ping-pongs the joined clip again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from bot.media.clips import OutputFormat, make_boomerang_async
from bot.workflows import Workflow

__all__ = ["BOOMERANG", "is_boomerang", "post_process"]

BOOMERANG = "boomerang"
_WRITABLE = ("mp4", "gif", "webp")


def is_boomerang(options: dict[str, Any]) -> bool:
    """True when a job's options ask for a boomerang."""
    return options.get("loop") == BOOMERANG


def bot_makes_boomerang(workflow: Workflow, options: dict[str, Any]) -> bool:
    """True when the job wants a boomerang and no node of ``workflow`` makes it."""
    spec = workflow.options.get("loop")
    return is_boomerang(options) and spec is not None and not spec.targets


async def post_process(workflow: Workflow, options: dict[str, Any], path: Path,
                       fmt: str) -> tuple[Path, dict[str, Any]]:
    """The file to deliver for a downloaded result and the ``result_meta`` fields to add."""
    meta: dict[str, Any] = {"boomerang": is_boomerang(options)}
    if not bot_makes_boomerang(workflow, options):
        return path, meta
    out_format = cast(OutputFormat, fmt if fmt in _WRITABLE else "mp4")
    out = path.with_name(f"{path.stem}.boomerang.{out_format}")
    written = await make_boomerang_async(path, out, format=out_format)
    meta.update(original_path=str(path), format=out_format, size=written.size)
    return written.path, meta
