"""The geometry prior's selection rule (``benchmarks/geometry_prior.py``) picks what its docstring says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.concept_gate import mean_rows
from benchmarks.geometry_prior import choose, knn_ratio


def _row(emoji: float, shapes: float, ratio: float) -> dict[str, float]:
    return {"emoji macro": emoji, "shapes mean": shapes, "clipart k-NN ratio": ratio}


def test_the_smallest_weight_reaching_the_target_within_tolerance_wins() -> None:
    rows = {0.0: _row(18.8, 88.2, 0.80), 0.3: _row(18.5, 88.0, 0.95), 1.0: _row(18.6, 88.1, 0.985),
            3.0: _row(18.7, 88.2, 0.99)}
    assert choose(rows, target=0.98, tolerance=0.5) == 1.0


def test_a_weight_that_costs_a_drawing_domain_is_never_chosen() -> None:
    rows = {0.0: _row(18.8, 88.2, 0.80), 1.0: _row(18.1, 88.6, 0.99), 3.0: _row(18.9, 87.5, 0.99),
            0.3: _row(19.1, 88.1, 0.89)}
    assert choose(rows, target=0.98, tolerance=0.5) == 0.3  # none within tolerance reaches 0.98: best ratio


def test_over_several_splits_the_rule_reads_the_mean_of_each_column() -> None:
    lucky = {0.0: _row(18.0, 88.0, 0.80), 1.0: _row(18.8, 88.0, 0.99)}  # one split flatters weight 1 on emoji
    unlucky = {0.0: _row(19.0, 88.0, 0.80), 1.0: _row(17.0, 88.0, 0.99)}
    assert choose(lucky, target=0.98, tolerance=0.5) == 1.0
    mean = mean_rows([lucky, unlucky])
    assert mean[1.0]["emoji macro"] == pytest.approx(17.9) and choose(mean, target=0.98, tolerance=0.5) == 0.0


def test_knn_ratio_of_the_raw_features_themselves_is_one() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    raw = torch.from_numpy(rng.normal(size=(120, 16)).astype(np.float32) + 3 * np.eye(16, dtype=np.float32)[labels])
    got, ratio = knn_ratio(raw, raw.clone(), labels)
    assert ratio == 1.0 and got > 0.5
    _, folded = knn_ratio(raw, raw[:, 8:], labels)  # every class direction folded away
    assert folded < 0.9
