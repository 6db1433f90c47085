"""Pick the result file of a finished prompt from its ``/history`` outputs.

Works on the plain ``outputs`` dict of a history entry (``{node_id: {key: [items]}}``) so it
does not depend on the client's models. Output nodes use different keys (VHS: ``gifs`` even
for mp4; core nodes: ``images`` with ``animated: [true]``), so every list of file items is
considered. Videos beat animated images, which beat still images; the VHS workflow sidecar
``.png`` is never picked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Mapping

VIDEO_EXTENSIONS = {"mp4": "mp4", "m4v": "mp4", "mov": "mov", "webm": "webm", "mkv": "mkv"}
ANIMATED_EXTENSIONS = {"gif": "gif", "webp": "webp", "png": "png", "apng": "png"}
_FORMAT_FROM_MIME = {
    "image/gif": "gif",
    "image/webp": "webp",
    "video/h264-mp4": "mp4",
    "video/h265-mp4": "mp4",
    "video/nvenc_h264-mp4": "mp4",
    "video/nvenc_hevc-mp4": "mp4",
    "video/nvenc_av1-mp4": "mp4",
    "video/webm": "webm",
    "video/av1-webm": "webm",
    "video/ffmpeg-gif": "gif",
    "video/ProRes": "mov",
    "video/ffv1-mkv": "mkv",
}


@dataclass(frozen=True)
class ResultFile:
    """The chosen output: where to GET it with ``/view``, its short format name, and whether it moves."""

    node_id: str
    filename: str
    subfolder: str
    type: str
    format: str  # "mp4", "gif", "webp", "png", ...
    is_video: bool  # moving picture (video or animated image)


def _short_format(item: Mapping[str, Any]) -> str:
    mime = item.get("format")
    if isinstance(mime, str) and mime in _FORMAT_FROM_MIME:
        return _FORMAT_FROM_MIME[mime]
    suffix = PurePosixPath(str(item.get("filename", ""))).suffix.lower().lstrip(".")
    return VIDEO_EXTENSIONS.get(suffix) or ANIMATED_EXTENSIONS.get(suffix) or suffix or "bin"


def candidates(outputs: Mapping[str, Any]) -> list[tuple[int, ResultFile]]:
    """Every file item in ``outputs`` with a rank (higher is better); sidecars excluded."""
    found: list[tuple[int, ResultFile]] = []
    if not isinstance(outputs, Mapping):
        return found
    for node_id, node_out in outputs.items():
        if not isinstance(node_out, Mapping):
            continue
        animated_flags = node_out.get("animated")
        node_animated = isinstance(animated_flags, list) and any(bool(a) for a in animated_flags)
        items = [
            it
            for key, value in node_out.items()
            if isinstance(value, list)
            for it in value
            if isinstance(it, Mapping) and isinstance(it.get("filename"), str) and it.get("filename")
        ]
        sidecars = {str(it["workflow"]) for it in items if isinstance(it.get("workflow"), str)}
        # Older VHS versions list the sidecar itself: a .png with the same stem as a video.
        stems = {PurePosixPath(str(it["filename"])).stem for it in items if not str(it["filename"]).lower().endswith(".png")}
        sidecars |= {str(it["filename"]) for it in items if str(it["filename"]).lower().endswith(".png") and PurePosixPath(str(it["filename"])).stem in stems}
        for item in items:
            filename = str(item["filename"])
            if filename in sidecars:
                continue
            fmt = _short_format(item)
            mime = item.get("format")
            is_video_file = fmt in ("mp4", "mov", "webm", "mkv") or (isinstance(mime, str) and mime.startswith("video/") and fmt != "gif")
            is_animated = is_video_file or node_animated or fmt == "gif" or (isinstance(mime, str) and mime in _FORMAT_FROM_MIME)
            rank = 3 if is_video_file else 2 if is_animated else 1
            found.append((
                rank,
                ResultFile(
                    node_id=str(node_id),
                    filename=filename,
                    subfolder=str(item.get("subfolder", "") or ""),
                    type=str(item.get("type", "output") or "output"),
                    format=fmt,
                    is_video=is_animated,
                ),
            ))
    return found


def pick_result(outputs: Mapping[str, Any], *, prefer_node: str | None = None, prefer_format: str | None = None) -> ResultFile | None:
    """The best result file, or ``None`` when the outputs hold no file.

    Moving results (videos, animated images) beat still images. Among moving results,
    ``prefer_node`` (the workflow's output node) wins, then ``prefer_format`` (what the member
    asked for), then a real video over an animated image, then the first found.
    """
    found = candidates(outputs)
    if not found:
        return None
    best_rank = max(rank for rank, _ in found)
    pool = [f for rank, f in found if rank == best_rank or (rank >= 2 and best_rank >= 2)]

    def score(f: ResultFile) -> tuple[int, int, int]:
        rank = next(r for r, g in found if g is f)
        return (
            int(prefer_node is not None and f.node_id == prefer_node),
            int(prefer_format is not None and f.format == prefer_format),
            rank,
        )

    return max(pool, key=score)
