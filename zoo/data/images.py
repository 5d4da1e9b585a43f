"""Decoding user images into the dataset contract, and counting the ones that could not be used.

Real folders hold broken downloads, text files and CMYK JPEGs. One bad file should cost a warning,
not the whole run, but it must never vanish silently: every skip is counted and reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

#: Suffixes Pillow can open; other files in a folder are ignored rather than counted as broken.
IMAGE_SUFFIXES = frozenset(
    suffix for suffix, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
)
#: What Pillow raises for a file it cannot decode (truncated, not an image, absurdly large ...).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def is_image_file(path: Path) -> bool:
    """Whether ``path`` looks like an image by its suffix (hidden files never do)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (a plain convert would turn it black)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to ``size × size`` (no distortion of aspect ratio)."""
    return ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS)


def read_image(path: Path, size: int) -> np.ndarray:
    """Decode ``path`` to ``uint8 [size, size, 3]``, honouring EXIF orientation.

    Raises:
        One of :data:`DECODE_ERRORS` when the file cannot be decoded.
    """
    with Image.open(path) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
        return np.asarray(square_resize(to_rgb(upright), size), dtype=np.uint8)


@dataclass
class SkipLog:
    """Counts items skipped for one reason and keeps the first few names for the message."""

    reason: str
    names: list[str] = field(default_factory=list)

    def add(self, name: str) -> None:
        """Record one skipped item."""
        self.names.append(name)

    def warn(self, logger: logging.Logger, context: str) -> None:
        """Log one warning with the count and the first few names, if anything was skipped."""
        if self.names:
            first = ", ".join(self.names[:5]) + (" ..." if len(self.names) > 5 else "")
            logger.warning("%s: skipped %d %s: %s", context, len(self.names), self.reason, first)

    def as_info(self, key: str) -> dict[str, Any]:
        """``{"skipped_<key>": count, "skipped_<key>_examples": [...]}`` for :attr:`ImageDataset.info`."""
        return {f"skipped_{key}": len(self.names), f"skipped_{key}_examples": self.names[:10]}
