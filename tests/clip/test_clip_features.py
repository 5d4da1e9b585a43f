"""The locked-tower feature cache: computed once, reused, keyed by content."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.clip.features import cached
from training.clip.locked_fit import image_features
from training.methods.clip import Clip, image_trunk_and_head
from zoo.data import load_dataset


def test_feature_cache_reuses_and_keys_by_content() -> None:
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.arange(6.0).reshape(2, 3)

    first, again, other = cached(["a", "b"], compute), cached(["a", "b"], compute), cached(["a", "c"], compute)
    assert len(calls) == 2 and torch.equal(first, again) and torch.equal(first, other)


def test_the_fit_sees_the_features_that_are_served() -> None:
    """View 0 of the locked fit is drawn by the entry's own preprocessing, resampling included."""
    ds = load_dataset("shapes", "train", n=6, image_size=16)
    torch.manual_seed(0)
    model = Clip.from_dataset(ds, image="resnet_narrow", embed_dim=4, img_size=24, context_length=12,
                              text_args={"width": 32, "layers": 1, "heads": 2}).model.eval()
    _, head = image_trunk_and_head(model)
    with torch.inference_mode():
        fitted = F.normalize(head(image_features(model, ds.images)[0]), dim=-1).numpy()
    assert np.allclose(fitted, model.embed_uint8(ds.images), atol=1e-5)
