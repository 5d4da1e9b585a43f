"""The default CLIP recipe's parts: emoji phrasings, joined caption tables, and card-ready zero-shot metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.clip.captions import build_caption_table, concat_tables, emoji_phrasings, richer_captions
from training.clip.quality import zero_shot_metrics
from training.methods.clip import Clip
from zoo.card import metric_rows
from zoo.data import ImageDataset, load_dataset
from zoo.errors import DataError
from zoo.tokenizer import train_wordpiece

COOK = {"name": "man cook: dark skin tone", "group": "People & Body", "subgroup": "person-role",
        "concept": "man cook", "family": "cook", "codepoints": "1F468 1F3FF 200D 1F373"}


def _emoji_like(metas: list[dict[str, str]], captions: list[list[str]]) -> ImageDataset:
    images = np.zeros((len(metas), 8, 8, 3), np.uint8)
    return ImageDataset("emoji", "train", images, np.arange(len(metas)), [m["concept"] for m in metas], captions,
                        "CC0", "test", meta=metas)


def test_emoji_phrasings_name_the_concept_in_the_prompts_wording() -> None:
    got = emoji_phrasings(COOK, ["an emoji of a man cook with dark skin tone", "  "])
    assert got == ["an emoji of a man cook with dark skin tone", "a man cook", "an emoji of a man cook",
                   "a picture of a man cook", "man cook: dark skin tone"]  # blank dropped, dataset captions first
    with_kind = emoji_phrasings(COOK, subgroup=True)
    assert with_kind[-2:] == ["a man cook, an emoji of the person role kind", "a people body emoji of a man cook"]


def test_richer_captions_only_extends_emoji() -> None:
    emoji = _emoji_like([COOK, {**COOK, "name": "man cook", "concept": "man cook"}], [["cook one"], ["cook two"]])
    lists = richer_captions(emoji)
    assert [c[0] for c in lists] == ["cook one", "cook two"] and all("an emoji of a man cook" in c for c in lists)
    other = ImageDataset("tiny", "train", emoji.images, None, None, [["a", " "], ["b"]], "CC0", "test")
    assert richer_captions(other) == [["a"], ["b"]]


def test_concat_tables_keeps_positive_keys_apart() -> None:
    tokenizer = train_wordpiece(["red circle", "blue square", "cook", "man cook"], vocab_size=64)
    shapes = ImageDataset("tiny", "train", np.zeros((3, 8, 8, 3), np.uint8), None, None,
                          [["red circle"], ["red circle", "blue square"], ["blue square"]], "CC0", "test")
    emoji = _emoji_like([COOK, COOK], [["cook"], ["man cook"]])
    first = build_caption_table(shapes, tokenizer, 8, "caption")
    second = build_caption_table(emoji, tokenizer, 8, "label")
    third = build_caption_table(shapes, tokenizer, 8, "none")
    joined = concat_tables([first, second, third])
    assert joined.offsets.tolist() == [0, 1, 3, 4, 5, 6, 7, 9, 10]
    assert joined.texts == first.texts + second.texts + third.texts
    keys = joined.keys.tolist()
    assert keys[:4] == [1, 1, 0, 0] and keys[4:6] == [2, 3]  # emoji labels shifted past the shapes captions' keys
    assert keys[6:] == [-7, -8, -9, -10]  # unique keys stay unique: -1 - global row
    assert joined.info["images"] == 8 and joined.info["captions"] == 10
    with pytest.raises(DataError, match="context"):
        concat_tables([first, build_caption_table(shapes, tokenizer, 6, "caption")])


def test_zero_shot_metrics_name_dataset_and_split_for_the_card() -> None:
    train = load_dataset("shapes", "train", n=16, image_size=16)
    test = load_dataset("shapes", "test", n=12, image_size=16)
    torch.manual_seed(0)
    model = Clip.from_dataset(train, image="resnet_narrow", embed_dim=16, img_size=16, context_length=12,
                              text_args={"width": 32, "layers": 1, "heads": 2}).encoder()
    metrics = zero_shot_metrics(model, [test])
    assert set(metrics) == {f"zeroshot_shapes_{t}_top{k}" for t in ("shape", "colour", "position", "composed")
                            for k in (1, 5)}
    for metric in metrics.values():
        assert 0.0 <= metric["value"] <= 1.0 and metric["dataset"] == "shapes" and metric["split"] == "test"
    assert metrics["zeroshot_shapes_composed_top5"]["chance"] == pytest.approx(5 / metrics[
        "zeroshot_shapes_composed_top5"]["classes"], abs=1e-4)
    rows = metric_rows(metrics)
    assert ("zeroshot_shapes_shape_top1", f"{metrics['zeroshot_shapes_shape_top1']['value']:.4g}", "shapes",
            "test") in rows
