"""``clipart``: Debian's openclipart-png as a captioned dataset, split by whole folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from zoo.data import load_dataset
from zoo.data.clipart import HELDOUT, VALIDATION, captions, split_categories, title_words


def test_clipart_titles_and_captions() -> None:
    assert title_words(Path("apple_bitten_dan_gerhard_01.png")) == "apple bitten dan gerhard"
    assert title_words(Path("apple_bw.png")) == "apple"
    assert captions(Path("apple_bw.png"), "food/fruit") == ["apple", "apple, fruit", "a drawing of fruit: food fruit"]
    folders = ["animals/birds", "food/vegetables", "computer", "unsorted/duplicates"]
    assert split_categories(folders, "heldout") == ["animals/birds"]
    assert split_categories(folders, "val") == ["food/vegetables"]
    assert split_categories(folders, "train") == ["computer"]
    assert not set(HELDOUT) & set(VALIDATION)


def test_clipart_reads_a_tree_by_folder_pads_on_white_and_skips_broken_files(tmp_path, monkeypatch) -> None:
    root = tmp_path / "png"
    for folder, name in (("animals/birds", "eagle_01.png"), ("computer", "mouse.png"), ("computer", "wide.png")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        size = (40, 10) if name == "wide.png" else (16, 16)
        Image.new("RGBA", size, (255, 0, 0, 0 if name == "mouse.png" else 255)).save(root / folder / name)
    (root / "computer" / "broken.png").write_bytes(b"not a png")
    monkeypatch.setenv("SSLZOO_OPENCLIPART_DIR", str(root))
    train = load_dataset("clipart", "train", image_size=20)
    assert train.class_names == ["computer"] and len(train) == 2 and train.info["skipped_undecodable"] == 1
    clear, wide = train.images
    assert (clear == 255).all()  # transparent → white, not black
    assert (wide[0] == 255).all() and (wide[10, 10] == [255, 0, 0]).all()  # padded, not cropped
    held = load_dataset("clipart", "heldout", image_size=20)
    assert held.class_names == ["birds"] and held.captions == [["eagle", "eagle, birds", "a drawing of birds: animals birds"]]
    assert np.array_equal(held.labels, [0])
