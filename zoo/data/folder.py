"""``folder:PATH``: a user's images, in torchvision's ImageFolder layout or loose in one folder.

Subfolders (searched recursively) are classes, sorted by name; with no subfolders the images are
unlabelled. Files with an image suffix that do not decode are skipped and counted; other files are
ignored. Loose images beside class subfolders are ignored too (as ImageFolder does), and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from zoo.data.dataset import ImageDataset
from zoo.data.images import DECODE_ERRORS, SkipLog, is_image_file, read_image
from zoo.data.registry import register_source
from zoo.errors import DataError

log = logging.getLogger(__name__)


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image_file(p))


def _layout(root: Path) -> tuple[list[Path], list[int] | None, list[str] | None, list[Path]]:
    """Files to read, their labels and class names (or ``None``), and loose files being ignored."""
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = {d.name: found for d in dirs if (found := _images_under(d))}
    loose = sorted(p for p in root.iterdir() if is_image_file(p))
    if not classes:
        return loose, None, None, []
    files = [f for found in classes.values() for f in found]
    labels = [label for label, found in enumerate(classes.values()) for _ in found]
    return files, labels, list(classes), loose


@register_source("folder")
def build_folder(path: Path, split: str, *, seed: int = 0, image_size: int = 64) -> ImageDataset:
    """Decode every image under ``path`` to ``image_size`` RGB (centre-cropped to a square).

    User data has no predefined split: ``all`` and ``train`` both give every image, and ``seed`` is
    unused. Skipped files are reported in ``info`` (``skipped_unreadable`` and examples).

    Raises:
        DataError: ``path`` is not a folder, holds no image files, or none of them decodes.
    """
    if not path.is_dir():
        raise DataError(f"folder:{path}: not a directory")
    files, labels, class_names, loose = _layout(path)
    if not files:
        raise DataError(f"folder:{path}: empty, no image files found (.jpg, .png, .webp ... Pillow can open)")
    unreadable = SkipLog("unreadable image files")
    ignored = SkipLog("loose images beside class folders (move them into a class folder)")
    for p in loose:
        ignored.add(str(p.relative_to(path)))
    images, kept = [], []
    for i, file in enumerate(files):
        try:
            images.append(read_image(file, image_size))
            kept.append(i)
        except DECODE_ERRORS:
            unreadable.add(str(file.relative_to(path)))
    unreadable.warn(log, f"folder:{path}")
    ignored.warn(log, f"folder:{path}")
    if not images:
        raise DataError(f"folder:{path}: none of the {len(files)} image files could be decoded")
    return ImageDataset(
        name=f"folder:{path}",
        split=split,
        images=np.stack(images),
        labels=None if labels is None else np.array([labels[i] for i in kept], dtype=np.int64),
        class_names=class_names,
        captions=None,
        license="unknown (user data)",
        source=f"user folder {path}",
        meta=[{"path": str(files[i].relative_to(path))} for i in kept],
        info={**unreadable.as_info("unreadable"), **ignored.as_info("loose")},
    )
