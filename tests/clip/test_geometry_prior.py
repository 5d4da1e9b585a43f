"""The geometry prior of the locked-towers fit: it keeps the trunk's neighbourhoods, and costs nothing when off."""

from __future__ import annotations

import torch

from training.clip.captions import build_caption_table
from training.clip.features import text_trunk_features
from training.clip.locked_fit import GeometryPrior, fit_projections, image_features, neighbour_kl
from training.methods.clip import Clip
from zoo.data import load_dataset

TINY_TEXT = {"width": 32, "layers": 1, "heads": 2}


def test_neighbour_kl_is_zero_for_the_same_cosine_geometry_and_positive_otherwise() -> None:
    feats = torch.randn(64, 20, generator=torch.Generator().manual_seed(0))
    rotation, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(1)))
    assert float(neighbour_kl(feats, 3.0 * feats @ rotation, 0.07)) < 1e-4  # scale and rotation keep cosines
    squashed = feats[:, :2]  # most directions folded away
    assert float(neighbour_kl(feats, squashed, 0.07)) > 0.5


def _fit(prior_weight: float | None) -> tuple[float, list[float], torch.Tensor]:
    ds = load_dataset("shapes", "train", n=48, image_size=16)
    torch.manual_seed(0)
    method = Clip.from_dataset(ds, image="resnet_narrow", embed_dim=4, img_size=16, context_length=12,
                               text_args=TINY_TEXT)
    model, table = method.model, build_caption_table(ds, method.model.text.tokenizer, 12)
    feats, texts = image_features(model, ds.images), text_trunk_features(model, table.texts)
    prior = None if prior_weight is None else GeometryPrior(feats[0], weight=prior_weight, batch_size=48)
    result = fit_projections(model, table, feats, texts, steps=60, batch_size=32, lr=1e-2, geometry=prior)
    assert result.image_embeddings is not None
    kept = float(neighbour_kl(feats[0], result.image_embeddings, 0.07))
    return kept, result.losses, result.image_embeddings


def test_a_weighted_prior_keeps_more_of_the_trunk_neighbourhoods_than_the_plain_fit() -> None:
    plain, _, _ = _fit(None)
    kept, _, _ = _fit(10.0)
    assert kept < 0.8 * plain, (kept, plain)


def test_the_prior_draws_from_its_own_stream_so_the_fit_draws_the_same_batches() -> None:
    _, plain_losses, plain = _fit(None)
    _, losses, embeddings = _fit(0.0)  # the prior runs every step, with no say
    assert losses == plain_losses and torch.equal(embeddings, plain)
