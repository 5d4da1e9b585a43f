"""Tests of user data sources: ``folder:PATH`` and ``captions:FILE``, and the contact sheet."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from zoo.data import load_dataset
from zoo.data.contact_sheet import make_contact_sheet
from zoo.errors import DataError


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _png(path, colour=(200, 30, 30), size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def test_folder_classes_with_one_unreadable_file(tmp_path, caplog):
    root = tmp_path / "pets"
    _png(root / "cat" / "a.png")
    _png(root / "cat" / "nested" / "b.jpg", (10, 200, 10))
    _png(root / "dog" / "c.png", (10, 10, 200))
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "dog" / "notes.txt").write_text("ignored, not an image")
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(f"folder:{root}", "all", image_size=32)
    assert ds.images.shape == (3, 32, 32, 3) and ds.class_names == ["cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 1]
    assert ds.info["skipped_unreadable"] == 1 and ds.info["skipped_unreadable_examples"] == ["dog/broken.png"]
    assert "skipped 1 unreadable" in caplog.text and "broken.png" in caplog.text
    assert tuple(ds.images[0, 16, 16]) == (200, 30, 30)
    assert not (tmp_path / "home").exists()  # user data is never cached


def test_folder_without_subfolders_is_unlabelled_and_transparency_becomes_white(tmp_path):
    _png(tmp_path / "x.png", (0, 0, 0, 0), mode="RGBA")
    _png(tmp_path / "y.webp")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.labels is None and ds.class_names is None and len(ds) == 2
    assert ds.images.shape[1:] == (64, 64, 3)
    assert tuple(ds.images[0, 0, 0]) == (255, 255, 255)


def test_empty_folder_and_unreadable_only_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="could be decoded"):
        load_dataset(f"folder:{tmp_path / 'bad'}")
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="valid splits"):
        load_dataset(f"folder:{tmp_path / 'bad'}", "test")


def test_captions_jsonl_groups_and_counts_skips(tmp_path, caplog):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png", (0, 0, 255))
    rows = [
        {"image": "img/a.png", "text": "a red picture"},
        {"image": "img/a.png", "caption": "something red"},
        {"image": "img/b.png", "text": ["blue", "a blue square"]},
        {"image": "img/b.png", "text": "  "},
        {"image": "img/gone.png", "text": "lost"},
        {"image": "img/also-gone.png", "text": "lost too"},
    ]
    file = tmp_path / "pairs.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(f"captions:{file}", "all", image_size=16)
    assert len(ds) == 2 and ds.labels is None
    assert ds.captions == [["a red picture", "something red"], ["blue", "a blue square"]]
    assert ds.info["skipped_missing"] == 2 and ds.info["skipped_empty_text"] == 1
    assert "missing image files" in caplog.text and "gone.png" in caplog.text


def test_captions_csv_and_errors(tmp_path):
    _png(tmp_path / "a.png")
    good = tmp_path / "pairs.csv"
    good.write_text('image,caption\na.png,"red, and flat"\nmissing.png,nothing\n')
    ds = load_dataset(f"captions:{good}")
    assert ds.captions == [["red, and flat"]] and ds.info["skipped_missing"] == 1

    none_left = tmp_path / "none.csv"
    none_left.write_text("image,text\nmissing.png,nothing\n")
    with pytest.raises(DataError, match="no usable"):
        load_dataset(f"captions:{none_left}")
    wrong_columns = tmp_path / "cols.csv"
    wrong_columns.write_text("path,label\na.png,x\n")
    with pytest.raises(DataError, match="needs columns"):
        load_dataset(f"captions:{wrong_columns}")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"image": "a.png", "text": "ok"}\n{oops\n')
    with pytest.raises(DataError, match="line 2"):
        load_dataset(f"captions:{bad_json}")


def test_contact_sheet_writes_a_png(tmp_path):
    out = make_contact_sheet(tmp_path / "sheet.png", names=["digits", "shapes"], per_dataset=3)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 200
        assert np.asarray(image.convert("L")).std() > 10
