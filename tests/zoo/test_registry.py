"""Registry round trips, immutability, aliases, manifests and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import zoo
from zoo.errors import ConfigError, ManifestError, RefError, UnsafeWeightsError


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(6, 28, 28, 1), dtype=np.uint8)


@pytest.fixture
def encoder() -> zoo.ImageEncoder:
    torch.manual_seed(0)
    return zoo.build_encoder("vit_nano", in_chans=1).eval()


def test_round_trip_by_name_version_and_folder_is_bit_exact(encoder, images):
    expected = encoder.embed_uint8(images)
    entry = zoo.save(encoder, "nano")
    assert entry.version == 1 and "latest" in entry.aliases
    for ref in ("nano", "nano@1", "nano@latest", str(entry.path)):
        loaded = zoo.load(ref)
        assert not loaded.training
        np.testing.assert_array_equal(loaded.embed_uint8(images), expected)
        assert loaded.embedding_space == entry.embedding_space


def test_weights_are_timm_compatible(encoder, images):
    entry = zoo.save(encoder, "nano")
    config = entry.read_config()
    model = timm.create_model(config.arch, pretrained=True, **config.arch_args,
                              pretrained_cfg_overlay={"file": str(entry.path / "model.safetensors")}).eval()
    pixels = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = encoder(pixels)
        got = torch.nn.functional.normalize(model(pixels), dim=-1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch,kwargs", [("resnet_narrow", {"img_size": 32}), ("resnet18", {"img_size": 32}),
                                         ("convnext_atto", {"img_size": 32, "embed_dim": 64})])
def test_cnn_families_round_trip(arch, kwargs):
    encoder = zoo.build_encoder(arch, in_chans=3, **kwargs).eval()
    batch = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    zoo.save(encoder, "cnn")
    np.testing.assert_array_equal(zoo.load("cnn").embed_uint8(batch), encoder.embed_uint8(batch))


def test_saving_again_makes_a_new_immutable_version(encoder):
    first = zoo.save(encoder, "nano")
    with torch.no_grad():
        next(encoder.parameters()).add_(1.0)
    second = zoo.save(encoder, "nano", aliases=("best",))
    assert (first.version, second.version) == (1, 2)
    assert first.embedding_space != second.embedding_space
    assert zoo.Registry().resolve("nano").version == 2
    assert zoo.Registry().resolve("nano@best").version == 2
    zoo.alias("nano@1", "stable")
    assert zoo.Registry().resolve("nano@stable").version == 1
    assert [e.ref for e in zoo.list()] == ["nano@1", "nano@2"]


def test_delete_version_and_model(encoder):
    zoo.save(encoder, "nano")
    zoo.save(encoder, "nano", aliases=("best",))
    zoo.delete("nano@2")
    assert [e.ref for e in zoo.list()] == ["nano@1"]
    with pytest.raises(RefError, match="no alias 'best'"):
        zoo.load("nano@best")
    zoo.delete("nano")
    assert zoo.list() == []


def test_tampered_weights_name_the_file(encoder):
    entry = zoo.save(encoder, "nano")
    weights = entry.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.chmod(0o644)
    weights.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"model\.safetensors"):
        zoo.load("nano")


def test_config_records_the_contract(encoder):
    entry = zoo.save(encoder, "nano")
    raw = json.loads((entry.path / "config.json").read_text())
    assert raw["pooling"] == "cls" and raw["normalize"] is True and raw["metric"] == "cosine"
    assert raw["embed_dim"] == 128 and raw["preprocess"]["input_size"] == [1, 28, 28]
    manifest = json.loads((entry.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "config.json", "README.md"}
    card = (entry.path / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: sslzoo" in card and "Embedding contract" in card


@pytest.mark.parametrize("ref,message", [
    ("", "empty model reference"),
    ("org/repo", "ambiguous"),
    ("bad name!", "not a valid model name"),
    ("nano@", "nothing after '@'"),
    ("missing", "no model named 'missing'"),
    ("./does-not-exist", "no such folder"),
    ("hf-hub:not a repo", "Hub reference"),
])
def test_bad_refs_are_clear_errors(ref, message):
    with pytest.raises(RefError, match=message):
        zoo.load(ref)


def test_unknown_version_lists_versions(encoder):
    zoo.save(encoder, "nano")
    with pytest.raises(RefError, match=r"no version 7; versions: \[1\]"):
        zoo.load("nano@7")


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt"])
def test_pickle_weights_are_refused(tmp_path: Path, suffix):
    pickle_file = tmp_path / f"pytorch_model{suffix}"
    pickle_file.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(UnsafeWeightsError, match="safetensors only"):
        zoo.load(str(pickle_file))
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        zoo.load(str(tmp_path))


def test_folder_without_manifest_is_refused(encoder, tmp_path: Path):
    entry = zoo.save(encoder, "nano")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.safetensors", "config.json"):
        (copy / name).write_bytes((entry.path / name).read_bytes())
    with pytest.raises(ManifestError, match=r"manifest\.json is missing"):
        zoo.load(str(copy))


def test_mismatched_architecture_names_keys(encoder, tmp_path: Path):
    entry = zoo.save(encoder, "nano")
    config = json.loads((entry.path / "config.json").read_text())
    config["arch_args"]["depth"] = 2
    config["embed_dim"] = 128
    zoo.save_files("broken", zoo.EncoderConfig.from_dict(config),
                   {"model.safetensors": (entry.path / "model.safetensors").read_bytes()})
    with pytest.raises(ConfigError, match="unexpected keys"):
        zoo.load("broken")


def test_unknown_config_field_is_named():
    with pytest.raises(ConfigError, match="unknown fields \\['colour'\\]"):
        zoo.EncoderConfig.from_dict({"arch": "resnet18", "colour": "red"})


def test_each_preset_is_described_by_its_own_docstring():
    from zoo.architectures import PRESETS, get_preset

    descriptions = {name: get_preset(name).description for name in PRESETS.names()}
    assert all(descriptions.values()) and len(set(descriptions.values())) == len(descriptions)
    assert "quarter width" in descriptions["resnet_narrow"] and "6-block" in descriptions["vit_nano"]


def test_own_model_keeps_getting_versions_after_a_release_ships_its_name(encoder, tmp_path: Path):
    home = tmp_path / "home"
    builtin = zoo.Registry(tmp_path / "builtin", readonly_roots=())
    mine = zoo.save(encoder, "dino", registry=zoo.Registry(home, readonly_roots=()))  # before the release
    builtin.save_files("dino", {"config.json": (mine.path / "config.json").read_bytes(),
                                "model.safetensors": (mine.path / "model.safetensors").read_bytes()})
    upgraded = zoo.Registry(home, readonly_roots=(tmp_path / "builtin",))  # the release ships "dino" too
    assert upgraded.resolve("dino").path == mine.path and not upgraded.resolve("dino").builtin  # the user's wins
    second = zoo.save(encoder, "dino", registry=upgraded)
    assert second.ref == "dino@2" and not second.builtin and second.path.parent == mine.path.parent
    assert upgraded.resolve("dino").version == 2
    builtin.save_files("other", {"config.json": (mine.path / "config.json").read_bytes(), "model.safetensors": b"x"})
    with pytest.raises(RefError, match="'other' is a built-in model"):  # a name only a built-in holds stays closed
        zoo.save(encoder, "other", registry=upgraded)


def test_the_registry_locates_names_and_folders_but_not_hub_repos(encoder):
    entry = zoo.save(encoder, "nano")
    registry = zoo.Registry()
    assert registry.locate("nano").ref == "nano@1" and registry.locate("nano").path == entry.path
    by_folder = registry.locate(entry.path)
    assert by_folder.path == entry.path and by_folder.version is None
    with pytest.raises(RefError, match="pull it first"):
        registry.locate("hf-hub:acme/repo")
