"""``shapes``: generated, captioned images of coloured shapes, for smoke tests and CLIP attributes.

Every attribute a caption mentions (shape, colour, size, position, background) is drawn from the
seed and kept in ``meta``, so tests can check captions against pixels and zero-shot prompts can be
composed from attributes. Shapes are saturated colours on low-saturation backgrounds, so the colour
word is always recoverable from the pixels; edges are anti-aliased by drawing at 4× and reducing.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from zoo.data.dataset import ImageDataset
from zoo.data.registry import register_dataset
from zoo.errors import DataError

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 25),
    "yellow": (240, 215, 40),
    "green": (40, 160, 60),
    "cyan": (40, 195, 215),
    "blue": (40, 75, 220),
    "purple": (135, 55, 185),
    "pink": (245, 120, 185),
}
#: Half-extent of the shape as a fraction of the image side.
SIZES = {"small": 0.14, "large": 0.25}
#: Centre of the shape as fractions of (width, height), and how captions say it.
POSITIONS = {
    "left": ((0.27, 0.5), "on the left"),
    "right": ((0.73, 0.5), "on the right"),
    "top": ((0.5, 0.27), "at the top"),
    "bottom": ((0.5, 0.73), "at the bottom"),
    "center": ((0.5, 0.5), "in the center"),
}
BACKGROUNDS = ("plain", "gradient", "noisy")
DEFAULT_N = {"train": 5000, "test": 1000}
_SPLIT_STREAM = {"train": 0, "test": 1}  # different random streams per split for one seed
_SUPERSAMPLE = 4


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of ``shape`` centred on ``(cx, cy)`` with circumradius ``r``, rotated by ``angle``."""
    if shape == "cross":
        w = r * 0.38
        pts = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r)]
        pts += [(-x, -y) for x, y in pts]
    else:
        radii = {"square": [r], "triangle": [r], "hexagon": [r], "star": [r, r * 0.45]}[shape]
        corners = {"square": 4, "triangle": 3, "hexagon": 6, "star": 10}[shape]
        offset = {"square": math.pi / 4, "triangle": -math.pi / 2, "star": -math.pi / 2}.get(shape, 0.0)
        pts = [
            (
                radii[k % len(radii)] * math.cos(offset + 2 * math.pi * k / corners),
                radii[k % len(radii)] * math.sin(offset + 2 * math.pi * k / corners),
            )
            for k in range(corners)
        ]
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in pts]


def _mask(shape: str, size: int, centre: tuple[float, float], r: float, angle: float) -> np.ndarray:
    """Anti-aliased coverage of the shape in ``[0, 1]``, shape ``[size, size, 1]``."""
    s = _SUPERSAMPLE
    cx, cy = centre
    canvas = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
    else:
        draw.polygon([(x * s, y * s) for x, y in _polygon(shape, cx, cy, r, angle)], fill=255)
    return np.asarray(canvas.reduce(s), dtype=np.float32)[..., None] / 255.0


def _background(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A low-saturation background and its tone word (``dark``/``light``/``grey``)."""
    tone = rng.uniform(30, 225)
    tint = rng.uniform(-12, 12, size=3)
    base = np.full((size, size, 3), tone, dtype=np.float32) + tint
    if kind == "gradient":
        other = rng.uniform(30, 225)
        theta = rng.uniform(0, 2 * math.pi)
        ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
        t = math.cos(theta) * ramp[None, :] + math.sin(theta) * ramp[:, None] + 0.5
        base += ((other - tone) * t)[..., None]
        tone = (tone + other) / 2
    elif kind == "noisy":
        base += rng.normal(0, 18, size=(size, size, 1)).astype(np.float32)
    word = "dark" if tone < 90 else "light" if tone > 165 else "grey"
    return base, word


def _captions(m: dict[str, str]) -> list[str]:
    """Several phrasings of the same facts, so caption models do not learn one template."""
    where = POSITIONS[m["position"]][1]
    return [
        f"a {m['size']} {m['colour']} {m['shape']} {where}",
        f"a {m['colour']} {m['shape']}",
        f"a {m['shape']} {where}, {m['size']} and {m['colour']}",
        f"a picture of a {m['size']} {m['colour']} {m['shape']} on a {m['background']} "
        f"{m['tone']} background",
    ]


def draw_one(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict[str, str]]:
    """One random image and its attributes."""
    m = {
        "shape": SHAPES[rng.integers(len(SHAPES))],
        "colour": list(COLOURS)[rng.integers(len(COLOURS))],
        "size": list(SIZES)[rng.integers(len(SIZES))],
        "position": list(POSITIONS)[rng.integers(len(POSITIONS))],
        "background": BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
    }
    background, m["tone"] = _background(m["background"], size, rng)
    (fx, fy), _ = POSITIONS[m["position"]]
    jitter = rng.uniform(-0.04, 0.04, size=2)
    r = SIZES[m["size"]] * rng.uniform(0.9, 1.1) * size
    centre = ((fx + jitter[0]) * size, (fy + jitter[1]) * size)
    alpha = _mask(m["shape"], size, centre, r, rng.uniform(0, 0.4))
    colour = np.asarray(COLOURS[m["colour"]], dtype=np.float32) + rng.uniform(-10, 10, size=3)
    image = background * (1 - alpha) + colour * alpha
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), m


@register_dataset("shapes", splits=("train", "test"))
def build_shapes(split: str, *, seed: int = 0, n: int | None = None, image_size: int = 64) -> ImageDataset:
    """Generate ``n`` captioned shape images (default 5,000 train / 1,000 test).

    Train and test draw from different random streams of the same seed, so they never repeat each
    other's images.
    """
    count = DEFAULT_N[split] if n is None else n
    if count < 1 or image_size < 8:
        raise DataError(f"shapes: need n >= 1 and image_size >= 8, got n={count}, image_size={image_size}")
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])
    images = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    meta = []
    for i in range(count):
        images[i], m = draw_one(rng, image_size)
        meta.append(m)
    return ImageDataset(
        name="shapes",
        split=split,
        images=images,
        labels=np.array([SHAPES.index(m["shape"]) for m in meta], dtype=np.int64),
        class_names=list(SHAPES),
        captions=[_captions(m) for m in meta],
        license="CC0 (generated)",
        source=f"generated with PIL by zoo.data.shapes (seed {seed}, split {split})",
        meta=meta,
    )
