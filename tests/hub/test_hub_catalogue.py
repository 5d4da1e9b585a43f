"""The catalogue's checkpoints: real names and licences, their read-outs, and the I-JEPA converter.

The pulls are random-init twins in each real repo's layout, committed under the real repo id (so the
catalogue's pooling and licence apply) and built by ``benchmarks/catalogue_parity.py``'s builders with
2 blocks per ViT; that script runs every entry at full size.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn.functional as F
from hubserver import seed_repo
from safetensors.torch import save_file

import zoo
from benchmarks.catalogue_parity import IJEPA_VITH14, TWINS
from zoo import hub
from zoo.config import POOLINGS
from zoo.encoders import build_encoder, with_pooling
from zoo.errors import ConfigError, UnsafeWeightsError
from zoo.hub import ijepa
from zoo.hub.catalogue import CATALOGUE, find
from zoo.hub.formats import formats
from zoo.manifest import readout_tag

TIMM_ENTRIES = [e for e in CATALOGUE if e.format == "timm"]


def test_catalogue_entries_name_real_timm_checkpoints_with_their_licences():
    assert len({e.name for e in CATALOGUE}) == len(CATALOGUE)
    assert all(e.format in formats() and e.pooling in (None, *POOLINGS) for e in CATALOGUE)
    for entry in TIMM_ENTRIES:
        name = entry.repo_id.removeprefix("timm/")
        cfg = timm.models.get_pretrained_cfg(name)  # None for a name timm does not know
        assert cfg is not None and cfg.hf_hub_id == entry.repo_id, entry.name
        assert (cfg.architecture, cfg.license) == (entry.arch, entry.license), entry.name
    wanted = {"dinov2-vits14", "dinov2-vits14-reg4", "dinov2-vitb14", "dinov2-vitb14-reg4", "dinov3-vits16",
              "siglip2-vitb16", "mobileclip2-s0", "mae-vitb16", "ijepa-vith14"}
    assert wanted <= {e.name for e in CATALOGUE}
    assert {find(n).pooling for n in wanted if n.startswith("dinov")} == {"cls_mean"}


def test_cls_mean_is_the_class_token_beside_the_patch_mean_without_registers():
    torch.manual_seed(0)
    encoder = build_encoder("vit_small_patch14_reg4_dinov2", img_size=28, depth=1, pooling="cls_mean").eval()
    assert encoder.embed_dim == 2 * 384 and encoder.backbone.num_prefix_tokens == 5
    pixels = torch.randn(2, 3, 28, 28)
    with torch.inference_mode():
        tokens = encoder.backbone.forward_features(pixels)
        expected = torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], dim=-1)
        torch.testing.assert_close(encoder(pixels), F.normalize(expected, dim=-1), rtol=0, atol=0)
        cls = with_pooling(encoder, "cls")  # the same weights, the class token alone
        torch.testing.assert_close(cls(pixels), F.normalize(tokens[:, 0], dim=-1), rtol=0, atol=0)
    assert readout_tag(encoder.config.to_dict()) == {"pooling": "cls_mean"} and readout_tag(cls.config.to_dict()) == {}


def test_cls_mean_is_refused_where_it_has_no_meaning():
    with pytest.raises(ConfigError, match="'cls_mean' needs a timm ViT with a class token"):
        build_encoder("resnet_narrow", pooling="cls_mean")
    with pytest.raises(ConfigError, match="'cls_mean' needs a timm ViT with a class token"):
        build_encoder("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, class_token=False,
                      pooling="cls_mean")
    with pytest.raises(ConfigError, match="cannot be combined with a classifier"):
        build_encoder("vit_nano", pooling="cls_mean", embed_dim=16)


def _ijepa_config(**changes):
    return {"model_type": "ijepa", **IJEPA_VITH14, "num_hidden_layers": 1, **changes}


def test_ijepa_vith14_maps_tensor_for_tensor_onto_timms_vit_h14():
    """The full-size mapping, on meta tensors: every IJepaModel tensor lands on a timm tensor of its shape."""
    from transformers import IJepaConfig, IJepaModel

    with torch.device("meta"):
        model = IJepaModel(IJepaConfig(**IJEPA_VITH14))
        args = ijepa.arch_args({"model_type": "ijepa", **IJEPA_VITH14})
        twin = timm.create_model(ijepa.ARCH, pretrained=False, **args)
    assert (args["embed_dim"], args["depth"], args["num_heads"], args["mlp_ratio"]) == (1280, 32, 16, 4.0)
    converted = ijepa.timm_state(_saved_names(model.state_dict()), args["depth"])
    expected = twin.state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert sum(v.numel() for v in expected.values()) > 630_000_000


def _saved_names(state):
    """transformers 5 names its modules anew in memory but writes the Hub's names; these are the written ones."""
    renames = {"layers.": "encoder.layer.", "attention.q_proj": "attention.attention.query",
               "attention.k_proj": "attention.attention.key", "attention.v_proj": "attention.attention.value",
               "attention.o_proj": "attention.output.dense", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    out = {}
    for key, value in state.items():
        for new, old in renames.items():
            key = key.replace(new, old)
        out[key] = value
    return out


@pytest.mark.parametrize(("change", "named"), [
    ({"hidden_act": "relu"}, "hidden_act='relu'"), ({"qkv_bias": False}, "qkv_bias=False"),
    ({"layer_norm_eps": 1e-12}, "layer_norm_eps=1e-12"), ({"patch_size": [14, 16]}, "square sizes only"),
    ({"head_dim": 64}, "hidden_size 1280 with 16 heads of head_dim 64")])
def test_ijepa_settings_timm_cannot_reproduce_are_refused_by_name(change, named):
    with pytest.raises(ConfigError, match=named.replace("[", "\\[")):
        ijepa.arch_args(_ijepa_config(**change))


def test_ijepa_tensors_the_mapping_cannot_place_are_refused(tmp_path):
    from transformers import IJepaConfig, IJepaModel

    small = {**IJEPA_VITH14, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 28,
             "num_hidden_layers": 1}
    IJepaModel(IJepaConfig(**small)).save_pretrained(str(tmp_path))
    state = {"pooler.dense.weight": torch.zeros(32, 32)}
    with pytest.raises(ConfigError, match=r"not placed \['pooler.dense.weight'\].*pooler"):
        ijepa.timm_state(state, 1)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "model.safetensors"))
    del saved["encoder.layer.0.attention.attention.key.bias"]
    save_file(saved, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match=r"missing \['encoder.layer.0.attention.attention.key.bias'\]"):
        ijepa.convert(tmp_path, source="test", license="cc-by-nc-4.0")


def test_ijepa_preprocessing_comes_from_the_processor_config(tmp_path):
    assert ijepa.preprocess(tmp_path, 224, 3).crop_pct == 0.875  # no processor file: ImageNet's eval defaults
    (tmp_path / ijepa.PREPROCESSOR).write_text(json.dumps({
        "do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "size": {"shortest_edge": 256},
        "resample": 3, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}))
    pre = ijepa.preprocess(tmp_path, 224, 3)
    assert (pre.crop_pct, pre.interpolation, pre.mean, pre.std) == (0.875, "bicubic", (0.5,) * 3, (0.25,) * 3)
    (tmp_path / ijepa.PREPROCESSOR).write_text(json.dumps({"rescale_factor": 1.0}))
    with pytest.raises(ConfigError, match="rescaled by 1/255"):
        ijepa.preprocess(tmp_path, 224, 3)


def test_an_ijepa_repo_with_only_a_pickle_is_refused(hub_server, hf_cache):
    repo_id = "acme/ijepa-pickle-only"
    seed_repo(hub_server.root, repo_id, {"config.json": json.dumps(_ijepa_config()).encode(),
                                         "pytorch_model.bin": b"\x80\x04K\x01."})
    with pytest.raises(UnsafeWeightsError, match=r"pytorch_model\.bin.*model\.safetensors"):
        hub.pull(repo_id, endpoint=hub_server.url)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dinov2-vits14-reg4", "dinov3-vits16", "siglip2-vitb16", "mobileclip2-s0",
                                  "ijepa-vith14"])
def test_a_catalogue_twin_pulls_with_its_readout_and_matches_its_library(name, hub_server, tmp_path):
    entry = find(name)
    torch.manual_seed(0)
    twin = TWINS[entry.format](entry, tmp_path, True)
    commit = seed_repo(hub_server.root, entry.repo_id, twin.files)
    pulled = hub.pull(f"{entry.repo_id}@{commit}", endpoint=hub_server.url)
    config = pulled.read_config()
    assert (config.license, config.method, config.hub.catalogue, config.hub.format) == (
        entry.license, entry.method, entry.name, entry.format)
    assert config.pooling == (entry.pooling or {"siglip2": "map", "mobileclip2": "avg", "ijepa": "mean"}[entry.method])
    if entry.format == "timm":  # the preprocessing is timm's eval config for the checkpoint
        cfg = timm.models.get_pretrained_cfg(entry.repo_id.removeprefix("timm/"))
        pre = config.preprocess
        assert (pre.input_size, pre.crop_pct, pre.interpolation, pre.mean, pre.std) == (
            cfg.input_size, cfg.crop_pct, cfg.interpolation, cfg.mean, cfg.std)
    ours = zoo.load(pulled.ref)
    pixels = torch.randn(2, *config.preprocess.input_size)
    with torch.inference_mode():
        embeddings = ours(pixels)
        torch.testing.assert_close(embeddings, F.normalize(twin.reference(pixels), dim=-1), rtol=0, atol=2e-5)
    if entry.format == "transformers":  # converted weights: parity is not a property of any two such networks
        (tmp_path / "other").mkdir()
        torch.manual_seed(1)
        other = TWINS[entry.format](entry, tmp_path / "other", True)
        with torch.inference_mode():
            assert (embeddings - F.normalize(other.reference(pixels), dim=-1)).abs().max() > 1e-2
