"""The tower sketch of the locked-towers fit: zero-shot ranks as the narrower fit, search keeps the trunk's geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.clip.captions import build_caption_table
from training.clip.features import text_trunk_features
from training.clip.locked_fit import TowerSketch, fit_projections, image_features, neighbour_kl
from training.methods.clip import Clip, image_trunk_and_head
from zoo.data import load_dataset

TINY_TEXT = {"width": 32, "layers": 1, "heads": 2}


def _fit(sketch_dims: int, share: float = 0.7, embed_dim: int = 8) -> tuple[Clip, torch.Tensor, list[str]]:
    ds = load_dataset("shapes", "train", n=48, image_size=16)
    torch.manual_seed(0)
    method = Clip.from_dataset(ds, image="resnet_narrow", embed_dim=embed_dim, img_size=16, context_length=12,
                               text_args=TINY_TEXT)
    model, table = method.model, build_caption_table(ds, method.model.text.tokenizer, 12)
    feats, texts = image_features(model, ds.images), text_trunk_features(model, table.texts)
    sketch = TowerSketch(feats[0], dims=sketch_dims, share=share) if sketch_dims else None
    fit_projections(model, table, feats, texts, steps=40, batch_size=32, lr=1e-2, sketch=sketch)
    return method, feats[0], table.texts


def test_texts_never_write_into_the_sketch_and_the_sketch_carries_its_share() -> None:
    method, feats, _ = _fit(sketch_dims=4, share=0.7)
    model = method.model
    assert torch.count_nonzero(model.text.tower.projection.weight[-4:]) == 0
    _, head = image_trunk_and_head(model)
    with torch.no_grad():
        out = head(feats)
    share = float((out[:, -4:].pow(2).sum(-1)).mean() / out.pow(2).sum(-1).mean())
    assert abs(share - 0.7) < 1e-4, share


def test_zero_shot_ranks_labels_by_the_fitted_block_alone() -> None:
    method, feats, texts = _fit(sketch_dims=4)
    model = method.model
    _, head = image_trunk_and_head(model)
    with torch.no_grad():
        image = F.normalize(head(feats), dim=-1)
        text = torch.as_tensor(model.embed_texts(texts[:6]))
    full = image @ text.T
    fitted = F.normalize(image[:, :-4], dim=-1) @ F.normalize(text[:, :-4], dim=-1).T
    assert torch.equal(full.argsort(dim=1), fitted.argsort(dim=1))


def test_the_sketch_keeps_more_of_the_trunk_neighbourhoods_than_the_plain_fit() -> None:
    def kept(dims: int) -> float:
        method, feats, _ = _fit(sketch_dims=dims)
        _, head = image_trunk_and_head(method.model)
        with torch.no_grad():
            return float(neighbour_kl(feats, head(feats), 0.07))

    assert kept(4) < 0.8 * kept(0)


@pytest.mark.parametrize(("dims", "share"), [(0, 0.5), (5, 1.0), (5, 0.0)])
def test_a_sketch_that_cannot_exist_is_refused(dims: int, share: float) -> None:
    with pytest.raises(ValueError, match="sketch"):
        TowerSketch(torch.randn(10, 4), dims=dims, share=share)
