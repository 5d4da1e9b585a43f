"""Shared test inputs: parity sizes, and images drawn apart from the golden set (the gate is not graded on its own inputs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from export.golden import ParitySizes

#: Small but not trivial: 8 golden and 4 random images, k-NN over 120 gallery / 60 query digits.
SIZES = ParitySizes(golden=8, random=4, gallery=120, queries=60, calibration=32)


def drawn_images(n: int, size: int = 40, seed: int = 7) -> list[Image.Image]:
    """Random rectangles and ellipses on random backgrounds, some RGBA, of a size no model uses natively."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        mode = "RGBA" if i % 3 == 0 else "RGB"
        image = Image.new(mode, (size, size + 6 * (i % 2)), tuple(int(v) for v in rng.integers(0, 255, len(mode))))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            x1, y1 = x0 + int(rng.integers(4, size // 2)), y0 + int(rng.integers(4, size // 2))
            fill = tuple(int(v) for v in rng.integers(0, 255, len(mode)))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        images.append(image)
    return images


@contextlib.contextmanager
def sslzoo_home_env(home: Path) -> Iterator[None]:
    """``$SSLZOO_HOME`` for session- and module-scoped fixtures, set up before the per-test one applies."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSLZOO_HOME", str(home))
        yield
