"""config.json loading is strict and migrates version 1: what the shipped entries were written in."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from zoo.config import CONFIG_VERSION, EncoderConfig, ExternalRef, HubSource, ImageTowerInfo, WeightStorage, migrate_v1
from zoo.errors import ConfigError

# version-1 configs as the built-in entries were shipped before version 2 (copies: shipped entries move on)
FIXTURES = Path(__file__).parent / "fixtures"
SHIPPED = FIXTURES / "config_v1_clip.json"  # the default CLIP as shipped: every moved key but hub


def _raw(path: Path = SHIPPED) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_a_shipped_version_1_config_loads_into_the_typed_fields():
    raw = _raw()
    assert raw["config_version"] == 1 and {"image_tower", "storage", "external_weights"} <= set(raw["extra"])
    config = EncoderConfig.from_dict(raw)
    assert config.extra == {}, "every v1 key that code reads has left extra"
    assert config.storage == WeightStorage(**raw["extra"]["storage"])
    assert config.image_tower == ImageTowerInfo(**raw["extra"]["image_tower"]) and config.image_tower.random_head
    (ref,) = config.external_weights
    assert isinstance(ref, ExternalRef) and ref.to_dict() == raw["extra"]["external_weights"][0]
    assert config.shipped == raw["extra"]["shipped"] and config.onnx == raw["extra"]["onnx"]


def test_free_form_extra_keys_stay_in_extra():
    raw = _raw(FIXTURES / "config_v1_dino.json")
    config = EncoderConfig.from_dict(raw)
    assert set(config.extra) == {"training", "data_license", "data_source"}
    assert config.shipped is not None and config.storage is not None and config.image_tower is None


def test_what_is_written_now_is_version_2_and_reads_back_equal():
    config = EncoderConfig.from_dict(_raw())
    out = json.loads(json.dumps(config.to_dict()))
    assert out["config_version"] == CONFIG_VERSION == 2
    assert "storage" in out and "external_weights" in out and "storage" not in out["extra"]
    assert "hub" not in out and "concepts" not in out, "unset optional records are left out"
    assert EncoderConfig.from_dict(out) == config


def test_a_version_1_hub_record_and_its_catalogue_name_migrate_together():
    raw = _raw()
    hub = {"repo_id": "org/repo", "revision": "main", "commit": "a" * 40, "format": "timm"}
    raw["extra"].update(hub=hub, catalogue="dino-vits16")
    config = EncoderConfig.from_dict(raw)
    assert config.hub == HubSource(**hub, catalogue="dino-vits16") and "catalogue" not in config.extra


@pytest.mark.parametrize("field", ["arch", "embed_dim", "pooling", "normalize", "metric", "preprocess", "license",
                                   "source"])
def test_a_missing_required_field_is_named(field: str):
    raw = _raw()
    del raw[field]
    with pytest.raises(ConfigError, match=rf"missing fields \['{field}'\]"):
        EncoderConfig.from_dict(raw)


def test_a_missing_licence_is_an_error_not_apache():
    raw = EncoderConfig(arch="resnet18", embed_dim=8).to_dict()
    del raw["license"]
    with pytest.raises(ConfigError, match=r"config.json: missing fields \['license'\]"):
        EncoderConfig.from_dict(raw)


@pytest.mark.parametrize(("where", "edit"), [
    ("config.json", lambda raw: raw.update(colour="red")),
    ("config.json preprocess", lambda raw: raw["preprocess"].update(colour="red")),
    ("config.json text", lambda raw: raw["text"].update(colour="red")),
    ("config.json image_tower", lambda raw: raw["extra"]["image_tower"].update(colour="red")),
    ("config.json storage", lambda raw: raw["extra"]["storage"].update(colour="red")),
    ("config.json external_weights record", lambda raw: raw["extra"]["external_weights"][0].update(colour="red")),
    ("config.json concepts", lambda raw: raw.update(concepts={"classes": 3, "colour": "red"})),
])
def test_an_unknown_field_at_any_level_is_named(where: str, edit):
    raw = copy.deepcopy(_raw())
    edit(raw)
    with pytest.raises(ConfigError, match=rf"^{where}: unknown fields \['colour'\]"):
        EncoderConfig.from_dict(raw)


@pytest.mark.parametrize("field", ["input_size", "interpolation", "crop_pct", "mean", "std"])
def test_a_missing_preprocess_field_is_named_not_defaulted(field: str):
    raw = _raw()
    del raw["preprocess"][field]
    with pytest.raises(ConfigError, match=rf"preprocess: missing fields \['{field}'\]"):
        EncoderConfig.from_dict(raw)


def test_a_missing_text_tower_field_is_named():
    raw = _raw()
    del raw["text"]["tokenizer_file"]
    with pytest.raises(ConfigError, match=r"text: missing fields \['tokenizer_file'\]"):
        EncoderConfig.from_dict(raw)


def test_a_version_2_file_may_not_keep_moved_keys_in_extra_nor_v1_at_the_top():
    v2 = EncoderConfig.from_dict(_raw()).to_dict()
    with pytest.raises(ConfigError, match=r"extra\['onnx'\] have typed config fields"):
        EncoderConfig.from_dict({**v2, "extra": {"onnx": {}}})
    with pytest.raises(ConfigError, match="top-level field only since config_version 2"):
        migrate_v1({**v2, "config_version": 1})
    with pytest.raises(ConfigError, match="config_version 3 is not supported"):
        EncoderConfig.from_dict({**v2, "config_version": 3})


def test_a_non_object_is_named():
    raw = _raw()
    raw["preprocess"] = [3, 224, 224]
    with pytest.raises(ConfigError, match="preprocess must be a JSON object, got list"):
        EncoderConfig.from_dict(raw)
