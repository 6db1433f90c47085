"""Small PNG thumbnails of stored images (or image bytes), for the audit log (blocking: call in a thread)."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import IO, Any

from PIL import Image

log = logging.getLogger(__name__)

__all__ = ["THUMBNAIL_SIZE", "thumbnail_png"]

THUMBNAIL_SIZE = (256, 256)


def thumbnail_png(path: Path | bytes | Any, size: tuple[int, int] = THUMBNAIL_SIZE) -> bytes | None:
    """A small PNG of the image at ``path`` (or in these bytes, or these RGB pixels: a numpy array;
    blocking: call it in a thread); None if unreadable."""
    name = "image bytes" if isinstance(path, bytes) else getattr(path, "name", "image pixels")
    try:
        if isinstance(path, (bytes, Path)):
            source: Path | IO[bytes] = io.BytesIO(path) if isinstance(path, bytes) else path
            opened: Image.Image = Image.open(source)
        else:
            opened = Image.fromarray(path)
        with opened as image:
            image.thumbnail(size)
            out = io.BytesIO()
            image.convert("RGB").save(out, format="PNG")
            return out.getvalue()
    except (OSError, ValueError) as exc:
        log.info("no thumbnail for %s: %s", name, exc)
        return None
