"""Small PNG thumbnails of stored images (or image bytes), for the audit log (blocking: call in a thread)."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import IO

from PIL import Image

log = logging.getLogger(__name__)

__all__ = ["THUMBNAIL_SIZE", "thumbnail_png"]

THUMBNAIL_SIZE = (256, 256)


def thumbnail_png(path: Path | bytes, size: tuple[int, int] = THUMBNAIL_SIZE) -> bytes | None:
    """A small PNG of the image at ``path`` (or in these bytes; blocking: call it in a thread); None if unreadable."""
    source: Path | IO[bytes] = io.BytesIO(path) if isinstance(path, bytes) else path
    name = "image bytes" if isinstance(path, bytes) else path.name
    try:
        with Image.open(source) as image:
            image.thumbnail(size)
            out = io.BytesIO()
            image.convert("RGB").save(out, format="PNG")
            return out.getvalue()
    except (OSError, ValueError) as exc:
        log.info("no thumbnail for %s: %s", name, exc)
        return None
