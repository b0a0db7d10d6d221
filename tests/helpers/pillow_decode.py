"""The judge of whether an image loads: Pillow's full decode, as a trainer loads it."""

from __future__ import annotations

import io

from PIL import Image


def decodes_in_full(data: bytes) -> bool:
    """Whether Pillow opens `data` and decodes all of it (truncated images are not loaded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, SyntaxError, ValueError):
        return False
    return True
