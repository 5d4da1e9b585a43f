"""The ``flatten`` pooling: a CNN's whole final map as the embedding, same weights as the pooled backbone."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

import zoo
from zoo.encoders import build_encoder, with_pooling
from zoo.errors import ConfigError

ARGS = {"img_size": 28, "in_chans": 1, "output_stride": 8}


def _narrow(pooling: str = "avg") -> zoo.ImageEncoder:
    torch.manual_seed(0)
    return build_encoder("resnet_narrow", pooling=pooling, **ARGS).eval()


def test_flatten_is_the_whole_final_map_channel_major():
    encoder = _narrow("flatten")
    x = torch.randn(3, 1, 28, 28)
    feature_map = encoder.forward_features(x)
    assert feature_map.shape == (3, 128, 4, 4)
    assert encoder.embed_dim == 128 * 4 * 4
    np.testing.assert_allclose(encoder(x).detach(), F.normalize(feature_map.flatten(1), dim=1).detach(), atol=1e-6)


def test_with_pooling_reads_the_same_weights_out_another_way():
    pooled = _narrow("avg")
    flat = with_pooling(pooled, "flatten")
    assert flat.config.pooling == "flatten" and flat.config.embed_dim == 2048
    for (k1, v1), (k2, v2) in zip(pooled.backbone.state_dict().items(), flat.backbone.state_dict().items(),
                                  strict=True):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.randn(2, 1, 28, 28)
    mean_of_map = flat.forward_features(x).mean((2, 3))
    np.testing.assert_allclose(pooled(x).detach(), F.normalize(mean_of_map, dim=1).detach(), atol=1e-6)
    assert with_pooling(pooled, "avg") is pooled


def test_saved_flatten_entry_round_trips_and_is_its_own_embedding_space(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLZOO_HOME", str(tmp_path))
    pooled = _narrow("avg")
    flat = with_pooling(pooled, "flatten")
    a, b = zoo.save(pooled, "pooled"), zoo.save(flat, "flat")
    assert a.embedding_space != b.embedding_space  # same weight bytes, different vectors
    loaded = zoo.load("flat")
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded.eval()(x), flat(x))
    # the weights are still timm's own: timm's unpooled model gives the same map
    model = timm.create_model(flat.config.arch, pretrained=True, **flat.config.arch_args,
                              pretrained_cfg_overlay={"file": str(b.path / "model.safetensors")}).eval()
    np.testing.assert_allclose(model(x).flatten(1).detach(), flat.backbone(x).detach(), atol=1e-6)


def test_flatten_is_refused_for_a_vit():
    with pytest.raises(ConfigError, match="flatten"):
        build_encoder("vit_nano", pooling="flatten")
