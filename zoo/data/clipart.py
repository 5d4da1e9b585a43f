"""``clipart``: Debian's public-domain ``openclipart-png`` (~8,100 PNGs in 22 folders), titled by file name.

A third captioned domain between the generated ``shapes`` and the rendered ``emoji``: drawings made
by people. Each image's class is its folder (``animals/birds`` → "birds"); its captions come from
the file name (``apple_bitten_dan_gerhard_01.png`` → "apple bitten dan gerhard", authors' names
and all: nothing more is known) and the folder names, e.g. "apple bitten dan gerhard, fruit".

Splits are whole folders, so zero-shot never meets a near-twin of a trained drawing:

* ``heldout``: :data:`HELDOUT` — nameable categories that only benchmarks evaluate on;
* ``val``: :data:`VALIDATION` — other nameable categories, for choosing a recipe;
* ``train``: every other folder (``unsorted/duplicates`` dropped), at most ``max_per_category``
  images per folder (``shapes/stars`` alone holds 1,378 near-identical stars);
* ``all``: every folder, uncapped.

Posters over :data:`MAX_PIXELS` (20 files) are skipped and counted, as are undecodable files.

Transparent drawings are composited onto white and padded (not cropped) to a square.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from zoo.data.dataset import ImageDataset
from zoo.data.images import DECODE_ERRORS, SkipLog, to_rgb
from zoo.data.registry import register_dataset
from zoo.data.sources import search_dirs
from zoo.errors import DatasetNotAvailableError

log = logging.getLogger(__name__)

PACKAGE = "openclipart-png"
ENV_VAR = "SSLZOO_OPENCLIPART_DIR"
DEFAULT_DIRS = ("/usr/share/openclipart/png",)
LICENSE = "public domain (Open Clip Art Library, Debian openclipart-png)"
HELDOUT = ("animals/birds", "animals/bugs", "animals/fish", "food/desserts", "food/fruit", "people/clothing/hats",
           "plants/flowers", "recreation/music", "signs_and_symbols/clocks", "signs_and_symbols/weather",
           "tools/weapons", "transportation/boating")
VALIDATION = ("animals/dinosaurs", "animals/mammals/big_cats", "buildings/homes", "education/books",
              "electronics/bulb", "food/beverages", "food/vegetables", "office/telephone", "plants/trees",
              "recreation/games/chess", "recreation/sports", "transportation/vehicles")
DROPPED = ("unsorted/duplicates",)
MAX_PIXELS = 16_000_000  # 20 posters of up to 230 Mpx would take minutes and gigabytes each: skipped, counted
_WORD = re.compile(r"[a-z]+")


def clipart_root() -> Path:
    """The PNG tree (``$SSLZOO_OPENCLIPART_DIR`` first), or :class:`DatasetNotAvailableError`."""
    dirs = search_dirs(ENV_VAR, DEFAULT_DIRS)
    for folder in dirs:
        if folder.is_dir() and any(folder.iterdir()):
            return folder
    raise DatasetNotAvailableError(f"openclipart PNGs not found (searched: {', '.join(map(str, dirs))}); install "
                                   f"them with `sudo apt-get install {PACKAGE}` (or `make install`)")


def installed_files() -> list[Path]:
    """Every PNG of the tree, sorted (their sizes and mtimes key the dataset cache)."""
    return sorted(clipart_root().rglob("*.png"))


def category_name(category: str) -> str:
    """Readable class name of a folder: its last part, ``big_cats`` → "big cats"."""
    return category.rsplit("/", 1)[-1].replace("_", " ").replace("-", " ")


def title_words(path: Path) -> str:
    """The file name as words: lower case, digits, one-letter scraps and the ``bw`` suffix dropped."""
    words = [w for w in _WORD.findall(path.stem.lower()) if len(w) > 1 and w != "bw"]
    return " ".join(words)


def captions(path: Path, category: str) -> list[str]:
    """The title bare, the title with its category, and the category's folder path as words."""
    name, title = category_name(category), title_words(path)
    folders = " ".join(category_name(part) for part in category.split("/"))
    out = [title, f"{title}, {name}", f"a drawing of {name}: {folders}"] if title else [f"a drawing of {name}"]
    return list(dict.fromkeys(out))


def split_categories(categories: list[str], split: str) -> list[str]:
    """The folders of ``split`` among ``categories`` (the held-out and validation ones by name)."""
    kept = [c for c in categories if c not in DROPPED]
    if split == "heldout":
        return [c for c in kept if c in HELDOUT]
    if split == "val":
        return [c for c in kept if c in VALIDATION]
    if split == "train":
        return [c for c in kept if c not in HELDOUT and c not in VALIDATION]
    return kept


def pad_square(image: Image.Image, size: int) -> np.ndarray:
    """RGB on white, padded to a square and resized to ``size`` (the whole drawing stays in view)."""
    return np.asarray(ImageOps.pad(to_rgb(image), (size, size), method=Image.Resampling.LANCZOS,
                                   color=(255, 255, 255)), dtype=np.uint8)


@register_dataset("clipart", splits=("train", "val", "heldout", "all"), sources=installed_files, seeded=False)
def build_clipart(split: str, *, seed: int = 0, image_size: int = 128, max_per_category: int = 200) -> ImageDataset:
    """Read the PNGs of ``split`` (file order, the first ``max_per_category`` of each folder but in ``all``).

    ``seed`` is accepted but changes nothing: the splits are fixed by name.
    """
    root = clipart_root()
    by_category: dict[str, list[Path]] = {}
    for path in installed_files():
        by_category.setdefault(path.parent.relative_to(root).as_posix(), []).append(path)
    categories = split_categories(sorted(by_category), split)
    images, labels, caps, meta = [], [], [], []
    skipped = SkipLog("PNGs that could not be decoded or are over MAX_PIXELS")
    for label, category in enumerate(categories):
        paths = by_category[category] if split == "all" else by_category[category][:max_per_category]
        for path in paths:
            try:
                with Image.open(path) as image:
                    if image.width * image.height > MAX_PIXELS:
                        raise ValueError(f"{image.width}x{image.height}")
                    image.load()
                    pixels = pad_square(image, image_size)
            except DECODE_ERRORS:
                skipped.add(path.name)
                continue
            images.append(pixels)
            labels.append(label)
            caps.append(captions(path, category))
            meta.append({"file": path.relative_to(root).as_posix(), "category": category})
    skipped.warn(log, f"clipart/{split}")
    return ImageDataset(
        name="clipart", split=split,
        images=np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8),
        labels=np.array(labels, dtype=np.int64), class_names=[category_name(c) for c in categories],
        captions=caps, license=LICENSE, source=f"{root} (Debian {PACKAGE})", meta=meta,
        info={**skipped.as_info("undecodable"), "categories": len(categories)})
