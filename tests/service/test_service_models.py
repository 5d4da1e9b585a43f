"""Zoo entries as BentoML models without a store: tags follow the entry's files, settings name what is served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zoo
from service.models import model_tag, served_entries
from service.settings import Settings

CONFIG = {"arch": "resnet18", "embed_dim": 8, "method": "simclr"}


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
    assert [e.ref for e in entries] == ["a@1", "b@1"]  # b and b@1 are one entry
    assert missing == ["gone"]
