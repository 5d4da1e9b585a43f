"""Zoo entries as BentoML models: tags follow the served files, settings name what is served, and an entry
without ONNX graphs is served (and packed) by its export when one of exactly its weights exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from service.models import model_tag, served_entries
from service.served import ServingExportError, export_for_serving, served_entry
from service.settings import Settings

CONFIG = zoo.EncoderConfig(arch="resnet18", embed_dim=8, method="simclr").to_dict()


def _save(registry: zoo.Registry, name: str, card: str) -> zoo.Entry:
    files = {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": b"weights", "README.md": card.encode()}
    return registry.save_files(name, files)


def test_the_same_entry_gets_the_same_tag_and_any_changed_file_a_new_one(tmp_path: Path):
    registry = zoo.Registry(tmp_path, readonly_roots=())
    first = _save(registry, "Enc", "card one")
    assert model_tag(first) == model_tag(registry.resolve("Enc@1")) == model_tag(registry.resolve("Enc"))
    assert model_tag(first).startswith("sslzoo-enc:v1-")  # BentoML names are lower case
    other = zoo.Registry(tmp_path / "elsewhere", readonly_roots=())
    assert model_tag(_save(other, "Enc", "card one")) == model_tag(first)  # same files, same tag
    changed = _save(other, "Enc", "card two")  # only the card differs: weights alone do not name the files
    assert model_tag(changed).split("-")[-1] != model_tag(first).split("-")[-1]
    assert model_tag(changed).startswith("sslzoo-enc:v2-")


def test_a_name_bentoml_cannot_take_is_refused_with_the_reason(tmp_path: Path):
    entry = _save(zoo.Registry(tmp_path, readonly_roots=()), "x" * 70, "card")
    with pytest.raises(zoo.RefError, match=r"cannot be a BentoML model name.*at most 63"):
        model_tag(entry)


def test_settings_name_the_default_then_the_others_each_once(tmp_path: Path):
    settings = Settings.from_env({"SSLZOO_DEFAULT_MODEL": "a", "SSLZOO_MODELS": " b, a,,b@1 ", "SSLZOO_HOME": "/x"})
    assert settings.served_refs() == ("a", "b", "b@1")
    registry = zoo.Registry(tmp_path, readonly_roots=())
    _save(registry, "a", "card")
    _save(registry, "b", "card")
    entries, missing = served_entries(Settings(default_model="a", models="b,b@1,gone"), registry)
    assert [e.entry.ref for e in entries] == ["a@1", "b@1"]  # b and b@1 are one entry
    assert all(e.files == e.entry and not e.onnx for e in entries)  # no graphs, no export: their own files
    assert missing == ["gone"]


def _save_files(registry: zoo.Registry, name: str, weights: bytes, onnx_source: str | None = None) -> zoo.Entry:
    """An entry with ``weights``; with ``onnx_source``, an export of that reference (graph bytes stand in)."""
    config = dict(CONFIG, onnx={"source": onnx_source}) if onnx_source else CONFIG
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": weights, "README.md": b"card"}
    if onnx_source:
        files["model.onnx"] = b"graph"
    return registry.save_files(name, files)


def _builtin_and_home(tmp_path: Path) -> tuple[zoo.Registry, zoo.Entry]:
    """A read-only root holding ``enc@1`` (no graphs), and an empty writable home above it."""
    zoo.Registry(tmp_path / "builtin", readonly_roots=()).save_files(
        "enc", {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": b"weights"})
    registry = zoo.Registry(tmp_path / "home", readonly_roots=(tmp_path / "builtin",))
    return registry, registry.resolve("enc")


def test_a_builtin_without_graphs_is_served_by_its_export_of_the_same_weights(tmp_path: Path):
    registry, builtin = _builtin_and_home(tmp_path)
    assert builtin.builtin and served_entry(builtin, registry).files == builtin  # nothing exported yet
    stale = _save_files(registry, "enc-onnx", b"older weights", onnx_source="enc@1")  # before a rebuild
    other = _save_files(registry, "enc-onnx", b"weights", onnx_source="other@1")  # same bytes, another source
    assert served_entry(builtin, registry).files == builtin
    export = _save_files(registry, "enc-onnx", b"weights", onnx_source="enc@1")
    _save_files(registry, "unrelated", b"weights", onnx_source="enc@1")  # not under the export's name
    served = served_entry(builtin, registry)
    assert (served.entry, served.files, served.onnx, served.exported) == (builtin, export, True, True)
    assert stale.embedding_space != builtin.embedding_space and other.ref != served.files.ref
    (tagged,), _ = served_entries(Settings(default_model="enc"), registry)
    assert tagged == served
    assert model_tag(builtin, export).startswith("sslzoo-enc:v1-")  # the entry's name and version, the export's files
    assert model_tag(builtin, export) != model_tag(builtin)
    assert export_for_serving(builtin, registry) == served  # already exported: nothing to do


def test_an_entry_with_graphs_serves_its_own_files_and_a_failed_export_says_why(tmp_path: Path, monkeypatch):
    registry = zoo.Registry(tmp_path, readonly_roots=())
    exported = _save_files(registry, "x", b"w", onnx_source="x@0")
    assert served_entry(exported, registry).files == exported
    plain = _save_files(registry, "plain", b"w")

    def fail(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr("export.pipeline.export_entry", fail)
    with pytest.raises(ServingExportError, match=r"exporting plain@1 to ONNX failed: ModuleNotFoundError.*torch"):
        export_for_serving(plain, registry)


PACK = """
import json, sys
from pathlib import Path
import zoo
from service.models import import_entry
from service.served import served_entry
from zoo.manifest import verify_manifest
registry = zoo.Registry(Path(sys.argv[1]), readonly_roots=(Path(sys.argv[2]),))
model = import_entry(served_entry(registry.resolve("enc"), registry))
packed = zoo.Registry(Path(sys.argv[1]) / "none", readonly_roots=(Path(model.path),)).resolve("enc")
verify_manifest(packed.path)
print(json.dumps({"ref": packed.ref, "files": sorted(p.name for p in packed.path.iterdir()),
                  "labels": model.info.labels, "space": packed.embedding_space}))
"""


def test_the_export_is_packed_under_the_served_name_and_version(tmp_path: Path):
    registry, builtin = _builtin_and_home(tmp_path)
    export = _save_files(registry, "enc-onnx", b"weights", onnx_source="enc@1")
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run([sys.executable, "-c", PACK, str(tmp_path / "home"), str(tmp_path / "builtin")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["ref"] == "enc@1" and out["space"] == builtin.embedding_space  # requests keep naming enc@1
    assert out["files"] == sorted(p.name for p in export.path.iterdir())  # ... and get the export's graphs
    assert out["labels"]["backend"] == "onnx" and out["labels"]["onnx_export"] == export.ref
