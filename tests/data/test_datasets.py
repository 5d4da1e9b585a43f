"""Tests of the dataset registry and the bundled datasets (shapes, digits, fashion-mnist, emoji)."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.data import ImageDataset, dataset_available, fashion_mnist, list_datasets, load_dataset, shapes
from zoo.data.emoji_catalog import family_of, heldout_families, parse_emoji_test
from zoo.errors import DataError, DatasetNotAvailableError, UnknownNameError

needs_fashion = pytest.mark.skipif(
    not dataset_available("fashion-mnist"), reason="apt-get install dataset-fashion-mnist"
)
needs_emoji = pytest.mark.skipif(
    not dataset_available("emoji"), reason="apt-get install fonts-noto-color-emoji unicode-data"
)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# --- registry -------------------------------------------------------------------------------------


def test_list_datasets_names_the_bundled_sets():
    assert {"shapes", "digits", "fashion-mnist", "emoji"} <= set(list_datasets())


def test_unknown_name_lists_names_and_forms():
    with pytest.raises(UnknownNameError) as err:
        load_dataset("imagenet")
    message = str(err.value)
    for expected in ("shapes", "digits", "fashion-mnist", "emoji", "folder:PATH", "captions:FILE"):
        assert expected in message


def test_unknown_split_and_option_are_clear_errors():
    with pytest.raises(DataError, match="valid splits"):
        load_dataset("shapes", "validation")
    with pytest.raises(DataError, match="image_size"):
        load_dataset("shapes", n=4, colour_count=3)


def test_cache_round_trip_is_atomic_and_pickle_free(home):
    first = load_dataset("shapes", "test", n=12, seed=3)
    files = list((home / "data" / "shapes").iterdir())
    assert [f.suffix for f in files] == [".npz"]  # no temporary file left behind
    with np.load(files[0], allow_pickle=False) as data:  # loads without pickle
        assert data["images"].shape == (12, 64, 64, 3)
    again = load_dataset("shapes", "test", n=12, seed=3)
    assert np.array_equal(first.images, again.images)
    assert again.captions == first.captions and again.meta == first.meta
    assert again.class_names == first.class_names and again.license == first.license
    load_dataset("shapes", "test", n=12, seed=4)
    load_dataset("shapes", "test", n=12, seed=3, image_size=32)
    assert len(list((home / "data" / "shapes").iterdir())) == 3  # seed and options are in the key


def test_corrupt_cache_file_is_rebuilt(home):
    load_dataset("shapes", "test", n=5)
    (cached,) = (home / "data" / "shapes").iterdir()
    cached.write_bytes(b"not a zip file")
    assert len(load_dataset("shapes", "test", n=5)) == 5


def test_subset_and_pil():
    ds = load_dataset("digits", "test", cache=False)
    sub = ds.subset([0, 2, 4])
    assert len(sub) == 3 and np.array_equal(sub.labels, ds.labels[[0, 2, 4]])
    assert sub.class_names == ds.class_names
    assert len(ds.subset(ds.labels == 3)) == int((ds.labels == 3).sum())
    assert ds.pil(0).mode == "L" and ds.pil(0).size == (16, 16)


def test_dataset_contract_is_checked():
    with pytest.raises(DataError):
        ImageDataset("x", "all", np.zeros((2, 4, 4, 3), np.float32), None, None, None, "", "")
    with pytest.raises(DataError):
        ImageDataset("x", "all", np.zeros((2, 4, 4, 3), np.uint8), np.zeros(3), None, None, "", "")


# --- shapes ---------------------------------------------------------------------------------------


def test_shapes_is_deterministic_by_seed():
    a = load_dataset("shapes", "train", n=20, seed=1, cache=False)
    b = load_dataset("shapes", "train", n=20, seed=1, cache=False)
    c = load_dataset("shapes", "train", n=20, seed=2, cache=False)
    test = load_dataset("shapes", "test", n=20, seed=1, cache=False)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.images, test.images)


def test_shapes_arrays_and_defaults():
    ds = load_dataset("shapes", "test", n=30, image_size=48, cache=False)
    assert ds.images.shape == (30, 48, 48, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and ds.class_names == list(shapes.SHAPES)
    assert [ds.class_names[i] for i in ds.labels] == [m["shape"] for m in ds.meta]
    assert all(len(c) >= 3 for c in ds.captions) and ds.license == "CC0 (generated)"
    assert len(load_dataset("shapes", "test", cache=False)) == 1000


def _shape_pixels(image: np.ndarray) -> np.ndarray:
    """Mask of strongly coloured pixels: the shape's interior (backgrounds are near-grey, chroma < 25)."""
    rgb = image.astype(np.int16)
    return rgb.max(-1) - rgb.min(-1) > 80


def test_shapes_captions_match_the_pixels():
    ds = load_dataset("shapes", "train", n=200, seed=5, cache=False)
    names = list(shapes.COLOURS)
    reference = np.array([shapes.COLOURS[c] for c in names], dtype=np.float32)
    areas: dict[tuple[str, str], list[int]] = {}
    for image, caption, m in zip(ds.images, ds.captions, ds.meta, strict=True):
        assert caption[0].startswith(f"a {m['size']} {m['colour']} {m['shape']} ")
        assert shapes.POSITIONS[m["position"]][1] in caption[0]
        mask = _shape_pixels(image)
        mean = np.median(image[mask].astype(np.float32), axis=0)
        assert names[int(np.argmin(((reference - mean) ** 2).sum(1)))] == m["colour"], caption[0]
        ys, xs = np.nonzero(mask)
        centre = (xs.mean() / image.shape[1], ys.mean() / image.shape[0])
        (fx, fy), _ = shapes.POSITIONS[m["position"]]
        assert abs(centre[0] - fx) < 0.12 and abs(centre[1] - fy) < 0.12, caption[0]
        areas.setdefault((m["shape"], m["size"]), []).append(int(mask.sum()))
    for shape in shapes.SHAPES:
        if (shape, "small") in areas and (shape, "large") in areas:
            assert max(areas[shape, "small"]) < min(areas[shape, "large"]), shape


# --- digits and fashion-mnist ---------------------------------------------------------------------


def test_digits_split_is_stratified_and_seeded():
    train = load_dataset("digits", "train", cache=False)
    test = load_dataset("digits", "test", cache=False)
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape[1:] == (16, 16, 1) and train.images.max() == 255
    assert np.bincount(test.labels).min() >= 35  # about 36 of each digit
    other = load_dataset("digits", "test", seed=1, cache=False)
    assert not np.array_equal(other.images, test.images)
    assert load_dataset("digits", "all", image_size=8, cache=False).images.shape == (1797, 8, 8, 1)


@needs_fashion
def test_fashion_mnist_counts_and_labels():
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert train.images.shape == (60000, 28, 28, 1) and len(test) == 10000
    assert set(np.unique(train.labels)) == set(range(10)) and set(np.unique(test.labels)) == set(range(10))
    assert len(train.class_names) == 10 and train.license == "MIT"


@needs_fashion
def test_fixed_data_shares_one_cache_file_across_seeds(home):
    load_dataset("fashion-mnist", "test", seed=1)
    load_dataset("fashion-mnist", "test", seed=2)
    assert len(list((home / "data" / "fashion-mnist").iterdir())) == 1


def test_cache_key_follows_source_files():
    from zoo.data.cache import cache_path

    before = cache_path("x", "train", 0, version=1, options={}, stamps=[["/f", 10, 1]])
    after = cache_path("x", "train", 0, version=1, options={}, stamps=[["/f", 10, 2]])
    assert before != after and before.parent == after.parent


def test_fashion_mnist_missing_files_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLZOO_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIRS", ())
    assert not dataset_available("fashion-mnist")
    with pytest.raises(DatasetNotAvailableError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fashion-mnist", "test")
    assert "nowhere" in str(err.value)


# --- emoji ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("concept", "family"),
    [
        ("man cook", "cook"),
        ("woman cook", "cook"),
        ("cook", "cook"),
        ("woman and man holding hands", "holding hands"),
        ("men holding hands", "holding hands"),
        ("kiss: woman, man", "kiss"),
        ("man: beard", "person"),
        ("girl", "person"),
        ("old man", "old"),
        ("older person", "old"),
        ("mermaid", "merperson"),
        ("flag: Japan", "flag: japan"),
        ("grinning face", "grinning face"),
    ],
)
def test_family_merges_gendered_variants(concept, family):
    assert family_of(concept) == family


@pytest.fixture(scope="module")
def emoji_catalog():
    from zoo.data.emoji import test_file_path

    return parse_emoji_test(test_file_path())


@needs_emoji
def test_catalog_concepts_merge_skin_tones_and_hair(emoji_catalog):
    by_name = {e.name: e for e in emoji_catalog.entries}
    assert len(emoji_catalog.entries) == 3655
    assert by_name["man cook: medium skin tone"].concept == "man cook"
    assert by_name["woman: red hair"].concept == "woman"
    assert by_name["man: medium-dark skin tone, curly hair"].concept == "man"


@needs_emoji
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_heldout_families_keep_near_twins_together(emoji_catalog, seed):
    entries = emoji_catalog.entries
    held = heldout_families(entries, 0.17, seed)
    side = {e.name: e.family in held for e in entries}
    assert side["man cook"] == side["woman cook"] == side["cook"] == side["man cook: dark skin tone"]
    share = sum(side.values()) / len(entries)
    assert 0.15 < share <= 0.17


@pytest.fixture(scope="module")
def emoji_splits():
    return {split: load_dataset("emoji", split, cache=False) for split in ("all", "train", "heldout")}


@needs_emoji
@pytest.mark.slow
def test_emoji_renders_in_colour(emoji_splits):
    ds = emoji_splits["all"]
    assert 3500 <= len(ds) <= 3700 and ds.info["skipped_unrenderable"] < 100
    assert ds.images.shape[1:] == (64, 64, 3)
    rgb = ds.images.astype(np.int16)
    colourful = (rgb.max(-1) - rgb.min(-1) > 60).mean(axis=(1, 2))
    assert np.median(colourful) > 0.1  # colour glyphs, not grey tofu boxes
    assert (ds.images.reshape(len(ds), -1).std(1) > 10).all()  # nothing blank
    assert len(ds.class_names) == ds.info["concepts"] > 1500


@needs_emoji
@pytest.mark.slow
def test_emoji_captions_and_meta(emoji_splits):
    ds = emoji_splits["all"]
    i = next(i for i, m in enumerate(ds.meta) if m["name"] == "man cook")
    assert "an emoji of a man cook" in ds.captions[i]
    assert any(c.startswith("a people-body emoji: man cook") for c in ds.captions[i])
    assert ds.meta[i]["family"] == "cook" and ds.class_names[ds.labels[i]] == "man cook"


@needs_emoji
@pytest.mark.slow
def test_emoji_train_and_heldout_share_no_family(emoji_splits):
    train, heldout = emoji_splits["train"], emoji_splits["heldout"]
    assert len(train) + len(heldout) == len(emoji_splits["all"])
    train_families = {m["family"] for m in train.meta}
    heldout_families_ = {m["family"] for m in heldout.meta}
    assert not train_families & heldout_families_
    cooks = {m["name"]: split for split, ds in emoji_splits.items() if split != "all" for m in ds.meta}
    assert cooks["man cook"] == cooks["woman cook"]
    assert heldout.class_names == list(dict.fromkeys(m["concept"] for m in heldout.meta))
    assert heldout.labels.max() == len(heldout.class_names) - 1
