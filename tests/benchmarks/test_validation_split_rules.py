"""The emoji validation split rules of ``benchmarks/concept_gate.py`` (``images`` is the held-out split's rule), and
the rules that read the splits' paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import fit_steps, tower_sketch
from benchmarks.concept_gate import SPLIT_RULES, paired_spread, validation_families
from zoo.data import ImageDataset
from zoo.data.emoji_catalog import EmojiEntry, heldout_families
from zoo.errors import UnknownNameError


def _emoji_like(sizes: list[int]) -> ImageDataset:
    """One image per row; family ``f{i}`` has ``sizes[i]`` images (one big skin-tone-like set, many singles)."""
    families = [f"f{i}" for i, size in enumerate(sizes) for _ in range(size)]
    n = len(families)
    return ImageDataset(name="emoji", split="train", images=np.zeros((n, 2, 2, 3), np.uint8),
                        labels=np.arange(n), class_names=[str(i) for i in range(n)], captions=None,
                        license="test", source="test", meta=[{"family": f} for f in families])


SIZES = [40, 25] + [1] * 60 + [3] * 20


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_images_rule_draws_what_the_heldout_split_would(seed: int) -> None:
    data = _emoji_like(SIZES)
    entries = [EmojiEntry("", m["family"], "", "", m["family"], m["family"]) for m in data.meta or []]
    held = heldout_families(entries, 0.17, seed)
    mask = validation_families(data, 0.17, seed, rule="images")
    assert {m["family"] for m, v in zip(data.meta or [], mask) if v} == held
    assert mask.sum() <= 0.17 * len(data)  # the image share, not the family share, is capped


def test_the_families_rule_takes_a_share_of_families_whatever_their_size() -> None:
    data = _emoji_like(SIZES)
    mask = validation_families(data, 0.17, seed=1, rule="families")
    held = {m["family"] for m, v in zip(data.meta or [], mask) if v}
    assert len(held) == round(0.17 * len(SIZES))
    assert all(mask[i] == ((data.meta or [])[i]["family"] in held) for i in range(len(data)))  # whole families


def test_an_unknown_rule_names_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="families"):
        validation_families(_emoji_like(SIZES), 0.17, seed=1, rule="concepts")
    assert set(SPLIT_RULES.names()) == {"families", "images"}


def test_paired_spread_is_the_mean_and_standard_error_of_the_differences() -> None:
    split = lambda base, other: {"plain": {"emoji macro": base}, "views": {"emoji macro": other}}  # noqa: E731
    spread = paired_spread([split(17.0, 16.0), split(18.0, 18.0), split(19.0, 17.0)], "emoji macro")
    assert spread["plain"] == (0.0, 0.0)
    mean, se = spread["views"]
    assert mean == pytest.approx(-1.0) and se == pytest.approx(np.std([-1, 0, -2], ddof=1) / np.sqrt(3))


def test_one_split_gives_no_standard_error() -> None:
    spread = paired_spread([{"a": {"x": 1.0}, "b": {"x": 2.0}}], "x")
    assert spread["b"][0] == 1.0 and np.isnan(spread["b"][1])


def _steps_row(emoji: float, shapes: float) -> dict[str, float]:
    return {"emoji macro": emoji, "shapes mean": shapes}


def test_fit_steps_keeps_300_unless_the_gain_is_clear() -> None:
    rows = {100.0: _steps_row(17.0, 87.0), 300.0: _steps_row(16.0, 87.0), 1200.0: _steps_row(18.0, 86.0)}
    assert fit_steps.choose(rows, {100.0: (1.0, 0.3), 300.0: (0.0, 0.0), 1200.0: (2.0, 0.1)}, 0.5) == 100.0
    assert fit_steps.choose(rows, {100.0: (1.0, 0.6), 300.0: (0.0, 0.0), 1200.0: (2.0, 0.1)}, 0.5) == 300.0  # noise
    assert fit_steps.choose(rows, {100.0: (0.4, 0.1), 300.0: (0.0, 0.0), 1200.0: (2.0, 0.1)}, 0.5) == 300.0  # small
    assert fit_steps.choose(rows, {100.0: (1.0, 0.3), 300.0: (0.0, 0.0), 1200.0: (2.0, 0.1)}, 1.5) == 1200.0


def _sketch_row(emoji: float, shapes: float, ratio: float) -> dict[str, float]:
    return {"emoji macro": emoji, "shapes mean": shapes, "clipart k-NN ratio": ratio}


def test_tower_sketch_takes_the_best_emoji_among_those_reaching_the_target_within_tolerance() -> None:
    rows = {"0": _sketch_row(16.0, 87.0, 0.88), "64:0.5": _sketch_row(15.8, 87.0, 0.985),
            "128:0.7": _sketch_row(15.9, 86.8, 0.99), "128:0.85": _sketch_row(14.0, 87.0, 1.02)}
    assert tower_sketch.choose(rows, 0.98, 0.5) == "128:0.7"  # 128:0.85 reaches further but costs emoji 2 points
    assert tower_sketch.choose(rows, 0.995, 0.5) == "128:0.7"  # none reaches: the best ratio within tolerance
    assert tower_sketch.choose(rows, 0.98, 0.05) == "0"  # none within tolerance: no sketch
    assert tower_sketch.parse_candidate("128:0.85") == (128, 0.85) and tower_sketch.parse_candidate("0")[0] == 0
