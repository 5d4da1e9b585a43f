"""Cached text-trunk features are the same bytes whatever ran before: a rebuild from a cold cache matches."""

from __future__ import annotations

import torch

from training.clip.features import text_trunk_features
from training.methods.clip import Clip
from zoo.data import load_dataset

SHORT = ["a red circle", "a blue square", "a green star", "a pink cross"]
LONG = "a large yellow hexagon at the bottom right of a small purple triangle at the top left"


def _model():
    torch.manual_seed(0)
    ds = load_dataset("shapes", "train", n=8, image_size=16)
    return Clip.from_dataset(ds, image="vit_nano", embed_dim=16, img_size=16, context_length=24,
                             text_args={"width": 32, "layers": 1, "heads": 2}).model


def test_features_do_not_depend_on_what_the_cache_saw_first(tmp_path, monkeypatch):
    model = _model()
    monkeypatch.setenv("SSLZOO_HOME", str(tmp_path / "cold"))
    cold = text_trunk_features(model, SHORT * 2, batch_size=2)
    monkeypatch.setenv("SSLZOO_HOME", str(tmp_path / "warm"))
    text_trunk_features(model, [LONG, *SHORT[:3]], batch_size=4)  # the same texts padded to the long one
    warm = text_trunk_features(model, SHORT * 2, batch_size=2)
    assert torch.equal(cold, warm)
    again = text_trunk_features(model, list(reversed(SHORT)), batch_size=2)  # a cache hit, rows in call order
    assert torch.equal(again, cold[:4].flip(0))
    assert len(list((tmp_path / "warm" / "cache" / "clip-features").glob("*.safetensors"))) == 2
