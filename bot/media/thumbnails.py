"""Small PNG thumbnails of stored images, for the audit log (blocking: call in a thread)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from PIL import Image

log = logging.getLogger(__name__)

__all__ = ["THUMBNAIL_SIZE", "thumbnail_png"]

THUMBNAIL_SIZE = (256, 256)


def thumbnail_png(path: Path, size: tuple[int, int] = THUMBNAIL_SIZE) -> bytes | None:
    """A small PNG of the image at ``path`` (blocking: call it in a thread); None if unreadable."""
    try:
        with Image.open(path) as image:
            image.thumbnail(size)
            out = io.BytesIO()
            image.convert("RGB").save(out, format="PNG")
            return out.getvalue()
    except (OSError, ValueError) as exc:
        log.info("no thumbnail for %s: %s", path.name, exc)
        return None
