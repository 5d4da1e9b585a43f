"""``emoji``: ~3,600 Noto Color Emoji renderings with names, captions and concept-family splits.

The font (Debian ``fonts-noto-color-emoji``) is a CBDT bitmap font: FreeType only rasterises it at
its strike size, 109, and Pillow only keeps the colours with ``embedded_color=True``. ZWJ sequences
(``man cook``), flags and keycaps are single glyphs only after shaping, which needs Pillow's raqm
layout; without it they come out as several glyphs and are skipped (counted and logged), as is any
sequence the font draws blank. Names, groups and splits come from ``emoji-test.txt`` (Debian
``unicode-data``); see :mod:`zoo.data.emoji_catalog` for concepts and families.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from zoo.data.dataset import ImageDataset
from zoo.data.emoji_catalog import EmojiEntry, captions_for, heldout_families, parse_emoji_test
from zoo.data.images import SkipLog, square_resize
from zoo.data.registry import register_dataset
from zoo.data.sources import find_file, search_dirs

log = logging.getLogger(__name__)

FONT_PACKAGE = "fonts-noto-color-emoji"
FONT_FILE = "NotoColorEmoji.ttf"
FONT_DIRS = ("/usr/share/fonts/truetype/noto", "/usr/share/fonts/noto", "/usr/share/fonts/truetype")
TEST_PACKAGE = "unicode-data"
TEST_FILE = "emoji-test.txt"
TEST_DIRS = ("/usr/share/unicode/emoji", "/usr/share/unicode")
STRIKE_SIZE = 109  # the only size the bitmap strikes exist at
LICENSE = "OFL-1.1 (Noto Color Emoji font); Unicode License (emoji-test.txt)"


def font_path() -> Path:
    """``NotoColorEmoji.ttf`` (``$SSLZOO_EMOJI_FONT_DIR`` first), or :class:`DatasetNotAvailableError`."""
    return find_file(
        FONT_FILE, search_dirs("SSLZOO_EMOJI_FONT_DIR", FONT_DIRS), package=FONT_PACKAGE, suffixes=("",)
    )


def test_file_path() -> Path:
    """``emoji-test.txt`` (``$SSLZOO_EMOJI_TEST_DIR`` first), or :class:`DatasetNotAvailableError`."""
    return find_file(
        TEST_FILE, search_dirs("SSLZOO_EMOJI_TEST_DIR", TEST_DIRS), package=TEST_PACKAGE, suffixes=("",)
    )


def installed_files() -> list[Path]:
    """The font and ``emoji-test.txt``, or :class:`DatasetNotAvailableError` naming the apt package."""
    return [font_path(), test_file_path()]


class EmojiRenderer:
    """Renders one emoji to a square RGB array on white, or ``None`` when the font cannot draw it."""

    def __init__(self, path: Path, image_size: int) -> None:
        """Load the font at its strike size; warn once when shaping (raqm) is unavailable."""
        self.shaped = features.check("raqm")
        if not self.shaped:
            log.warning("Pillow has no raqm layout: ZWJ sequences, flags and keycaps will be skipped")
        layout = ImageFont.Layout.RAQM if self.shaped else ImageFont.Layout.BASIC
        self.font = ImageFont.truetype(str(path), STRIKE_SIZE, layout_engine=layout)
        self.image_size = image_size
        left, _, right, _ = (
            int(v) for v in self.font.getbbox("\U0001f600")
        )  # one glyph's width, for tofu detection
        self.glyph_width = right - left

    def render(self, text: str) -> np.ndarray | None:
        """``uint8 [S, S, 3]``, or ``None`` for a blank drawing or one that fell apart into glyphs."""
        left, _, right, bottom = (int(v) for v in self.font.getbbox(text))
        if right - left > 1.5 * self.glyph_width or right <= left:
            return None  # not shaped into one glyph: the font lacks this sequence
        canvas = Image.new("RGBA", (right + 4, bottom + 4), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((0, 0), text, font=self.font, embedded_color=True)
        box = canvas.getchannel("A").getbbox()
        if box is None:
            return None  # drawn blank: missing glyph
        glyph = canvas.crop(box)
        side = max(glyph.size)
        square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
        square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
        return np.asarray(square_resize(square.convert("RGB"), self.image_size), dtype=np.uint8)


@lru_cache(maxsize=4)
def _renderer(path: Path, image_size: int) -> EmojiRenderer:
    return EmojiRenderer(path, image_size)


def _meta(entry: EmojiEntry) -> dict[str, str]:
    return {
        "name": entry.name,
        "group": entry.group,
        "subgroup": entry.subgroup,
        "concept": entry.concept,
        "family": entry.family,
        "codepoints": entry.codepoints,
    }


@register_dataset("emoji", splits=("train", "heldout", "all"), sources=installed_files)
def build_emoji(
    split: str, *, seed: int = 0, image_size: int = 64, heldout_fraction: float = 0.17
) -> ImageDataset:
    """Render the fully-qualified emoji of ``split``; labels index the split's own concepts.

    ``train`` and ``heldout`` are divided by whole concept families (about ``heldout_fraction`` of the
    images held out, chosen by ``seed``) so zero-shot tests never meet a near-twin of a trained emoji.
    The split is computed on the catalogue, before rendering, so it does not depend on the font.
    """
    catalog = parse_emoji_test(test_file_path())
    entries = catalog.entries
    if split != "all":
        held = heldout_families(entries, heldout_fraction, seed)
        entries = [e for e in entries if (e.family in held) == (split == "heldout")]
    renderer = _renderer(font_path(), image_size)
    images, kept = [], []
    skipped = SkipLog("emoji the font cannot render (blank or several glyphs)")
    for entry in entries:
        image = renderer.render(entry.text)
        if image is None:
            skipped.add(f"{entry.name} [{entry.codepoints}]")
        else:
            images.append(image)
            kept.append(entry)
    skipped.warn(log, f"emoji/{split}")
    concepts = list(dict.fromkeys(e.concept for e in kept))
    index = {c: i for i, c in enumerate(concepts)}
    return ImageDataset(
        name="emoji",
        split=split,
        images=np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8),
        labels=np.array([index[e.concept] for e in kept], dtype=np.int64),
        class_names=concepts,
        captions=[captions_for(e, catalog.components) for e in kept],
        license=LICENSE,
        source=f"{FONT_FILE} ({FONT_PACKAGE}) rendered with Pillow; names from {TEST_FILE} ({TEST_PACKAGE})",
        meta=[_meta(e) for e in kept],
        info={
            **skipped.as_info("unrenderable"),
            "concepts": len(concepts),
            "families": len({e.family for e in kept}),
            "shaped_with_raqm": renderer.shaped,
        },
    )
