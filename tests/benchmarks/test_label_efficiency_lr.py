"""``benchmarks.label_efficiency``'s learning-rate pick: (b) and (c) each take the lr that wins on validation."""

from __future__ import annotations

import numpy as np

from benchmarks.label_efficiency import Budget, fit_classifier, validation_split
from zoo.data import load_dataset
from zoo.encoders import ImageEncoder, build_encoder


def small_encoder() -> ImageEncoder:
    return build_encoder("resnet_narrow", img_size=28, in_chans=1)


def labelled(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset("fashion-mnist", "train")
    return data.images[:n], np.asarray(data.labels)[:n]


def test_validation_split_holds_out_a_balanced_fifth_disjoint_from_the_fit() -> None:
    _, labels = labelled()
    fit, val = validation_split(labels, seed=3)
    assert len(val) == 40 and len(fit) == 160 and not set(fit) & set(val)
    assert np.bincount(labels[val], minlength=10).tolist() == [4] * 10


def test_the_grid_pick_is_the_lr_that_trains_and_not_the_one_that_diverges_in_either_order() -> None:
    images, labels = labelled()
    for grid in ((1e-3, 1e4), (1e4, 1e-3)):
        budget = Budget(steps=40, batch_size=32, lr_grid=grid)
        model, encoder, lr = fit_classifier(small_encoder, images, labels, budget, seed=0)
        assert lr == 1e-3, grid
        assert model.backbone is encoder.backbone  # the returned encoder is the one the classifier holds


def test_without_a_grid_the_budget_lr_is_used_untouched() -> None:
    images, labels = labelled(60)
    _, _, lr = fit_classifier(small_encoder, images, labels, Budget(steps=2, batch_size=16, lr=7e-4), seed=0)
    assert lr == 7e-4
