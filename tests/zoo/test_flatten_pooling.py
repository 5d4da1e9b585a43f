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


# -- readout after an earlier stage (config.stages) ---------------------------------------------------
def test_an_earlier_stage_is_that_stage_of_the_full_network():
    full = _narrow("avg")
    x = torch.randn(3, 1, 28, 28)
    stage_maps = full.backbone.forward_intermediates(x, intermediates_only=True)
    for stages in (1, 2, 3):
        cut = with_pooling(full, "flatten", stages)
        assert cut.config.stages == stages and cut.embed_dim == stage_maps[stages][0].numel()
        np.testing.assert_allclose(cut(x).detach(), F.normalize(stage_maps[stages].flatten(1), dim=1).detach(),
                                   atol=1e-5)
    pooled = with_pooling(full, stages=1)  # avg of layer1's map, 16 channels
    assert pooled.embed_dim == 16
    np.testing.assert_allclose(pooled(x).detach(), F.normalize(stage_maps[1].mean((2, 3)), dim=1).detach(),
                               atol=1e-5)
    cut = with_pooling(full, "flatten", 1)
    kept = set(cut.backbone.state_dict())
    assert kept < set(full.backbone.state_dict()) and not any(k.startswith("layer2") for k in kept)


def test_a_saved_cut_entry_round_trips_through_its_config(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLZOO_HOME", str(tmp_path))
    cut = with_pooling(_narrow("avg"), "flatten", 1)
    entry = zoo.save(cut, "cut")
    assert entry.read_config().stages == 1
    loaded = zoo.load("cut").eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded(x), cut(x))
    with pytest.raises(ConfigError, match="keeps only 1"):
        with_pooling(loaded, stages=2)


@pytest.mark.parametrize(("arch", "stages", "message"), [
    ("vit_nano", 1, "timm ResNet"), ("resnet_narrow", 5, "between 1"), ("resnet_narrow", 0, "between 1"), ("resnet_narrow", -1, "non-negative")])
def test_bad_stages_are_refused_with_the_reason(arch, stages, message):
    encoder = build_encoder(arch, img_size=28, in_chans=1)
    with pytest.raises(ConfigError, match=message):
        with_pooling(encoder, stages=stages)


def test_stages_with_a_projection_head_is_refused():
    with pytest.raises(ConfigError, match="embed_dim"):
        with_pooling(build_encoder("resnet_narrow", img_size=28, in_chans=1, embed_dim=8), stages=1)
