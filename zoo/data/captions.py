"""``captions:FILE``: image–caption pairs listed in a ``.jsonl`` or ``.csv`` file.

Each row names an ``image`` (relative to the file, or absolute) and its ``text`` (or ``caption``);
a JSONL row may give a list of texts. Rows for the same image are grouped, so an image can have
several captions. Missing or undecodable images and rows with empty text are skipped and counted;
only a file with nothing usable left is an error. A malformed file (bad JSON, no ``image`` column)
is an error with the line number, since guessing would hide the mistake.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.dataset import ImageDataset
from zoo.data.images import DECODE_ERRORS, SkipLog, read_image
from zoo.data.registry import register_source
from zoo.errors import DataError

log = logging.getLogger(__name__)
TEXT_FIELDS = ("text", "caption")


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` pairs from a JSONL or CSV file."""
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"captions:{path}: line {number} is not JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise DataError(f"captions:{path}: line {number} is not a JSON object")
            rows.append((number, row))
        return rows
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if "image" not in fields or not any(t in fields for t in TEXT_FIELDS):
                raise DataError(f"captions:{path}: needs columns image and text (or caption), has {fields}")
            return [(number, row) for number, row in enumerate(reader, start=2)]
    raise DataError(f"captions:{path}: expected a .jsonl or .csv file")


def _texts(row: dict[str, Any]) -> list[str]:
    value = next((row[t] for t in TEXT_FIELDS if t in row), None)
    values = value if isinstance(value, list) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def _group(path: Path, rows: list[tuple[int, dict[str, Any]]], empty: SkipLog) -> dict[str, list[str]]:
    """Captions per image reference, in first-seen order; rows with no text go to ``empty``."""
    grouped: dict[str, list[str]] = {}
    for number, row in rows:
        image = row.get("image")
        if not isinstance(image, str) or not image.strip():
            raise DataError(f"captions:{path}: line {number} has no image field")
        texts = _texts(row)
        if not texts:
            empty.add(f"line {number}")
            continue
        grouped.setdefault(image.strip(), []).extend(texts)
    return grouped


@register_source("captions", placeholder="FILE")
def build_captions(path: Path, split: str, *, seed: int = 0, image_size: int = 64) -> ImageDataset:
    """Decode each captioned image to ``image_size`` RGB and attach all of its captions.

    ``all`` and ``train`` both give everything (user data has no split); ``seed`` is unused. Counts
    of skipped rows and images are kept in ``info``.

    Raises:
        DataError: The file is missing or malformed, or no captioned image could be read.
    """
    if not path.is_file():
        raise DataError(f"captions:{path}: file not found")
    empty = SkipLog("rows with empty text")
    missing = SkipLog("missing image files")
    unreadable = SkipLog("unreadable image files")
    grouped = _group(path, _read_rows(path), empty)
    images, captions, meta = [], [], []
    for ref, texts in grouped.items():
        file = path.parent / ref
        if not file.is_file():
            missing.add(ref)
            continue
        try:
            images.append(read_image(file, image_size))
        except DECODE_ERRORS:
            unreadable.add(ref)
            continue
        captions.append(texts)
        meta.append({"path": ref})
    for skips in (empty, missing, unreadable):
        skips.warn(log, f"captions:{path}")
    if not images:
        raise DataError(
            f"captions:{path}: no usable image–caption pairs ({len(grouped)} images referenced, "
            f"{len(missing.names)} missing, {len(unreadable.names)} unreadable, "
            f"{len(empty.names)} rows with empty text)"
        )
    return ImageDataset(
        name=f"captions:{path}",
        split=split,
        images=np.stack(images),
        labels=None,
        class_names=None,
        captions=captions,
        license="unknown (user data)",
        source=f"user captions file {path}",
        meta=meta,
        info={
            **empty.as_info("empty_text"),
            **missing.as_info("missing"),
            **unreadable.as_info("unreadable"),
        },
    )
