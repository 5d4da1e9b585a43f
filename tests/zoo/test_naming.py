"""The one registry helper, and the registries built on it listing what they listed before it."""

from __future__ import annotations

import pytest

from zoo.errors import UnknownNameError
from zoo.naming import NameRegistry


def _first() -> str:
    return "first"


def _second() -> str:
    return "second"


def test_a_duplicate_name_is_refused_naming_both_and_the_first_is_kept() -> None:
    registry: NameRegistry[object] = NameRegistry("widget")
    registry.register("w")(_first)
    with pytest.raises(ValueError, match="widget 'w' is registered twice") as err:
        registry.register("w")(_second)
    assert f"{__name__}._first" in str(err.value) and f"{__name__}._second" in str(err.value)
    assert registry.get("w") is _first


def test_origin_names_what_defined_a_value_built_from_it() -> None:
    registry: NameRegistry[dict[str, int]] = NameRegistry("spec")
    registry.add("s", {"v": 1}, origin=_first)
    with pytest.raises(ValueError, match=r"_first and by .*_second"):
        registry.add("s", {"v": 2}, origin=_second)


def test_unknown_name_lists_every_known_name_sorted_and_the_hint() -> None:
    registry: NameRegistry[int] = NameRegistry("widget")
    for value, name in enumerate(("gamma", "alpha", "beta")):
        registry.add(name, value)
    with pytest.raises(UnknownNameError) as err:
        registry.get("delta", hint="or a widget file")
    assert str(err.value) == "unknown widget 'delta'; known: alpha, beta, gamma; or a widget file"
    with pytest.raises(UnknownNameError, match=r"^unknown widget 'x'; known: \(none\)$"):
        NameRegistry[int]("widget").get("x")


def test_names_are_sorted_and_registration_order_is_kept_apart() -> None:
    registry: NameRegistry[int] = NameRegistry("format")
    for value, name in enumerate(("sslzoo", "open_clip", "timm")):
        registry.add(name, value)
    assert registry.names() == ["open_clip", "sslzoo", "timm"]
    assert registry.in_registration_order() == [("sslzoo", 0), ("open_clip", 1), ("timm", 2)]
    assert "timm" in registry and "onnx" not in registry and 2 not in registry


def test_the_decorator_returns_what_it_decorates() -> None:
    registry: NameRegistry[object] = NameRegistry("widget")
    assert registry.register("f")(_first) is _first and registry.get("f")() == "first"


# The names each registry held before it moved onto NameRegistry (methods and losses: tests/training).


def test_presets_text_architectures_and_datasets_keep_their_names() -> None:
    from zoo.architectures import PRESETS
    from zoo.data import list_datasets, source_forms
    from zoo.text import TEXT_ARCHS

    assert PRESETS.names() == ["resnet18_small", "resnet_narrow", "vit_nano", "vit_small", "vit_tiny"]
    assert TEXT_ARCHS.names() == ["bert", "transformer"]
    assert list_datasets() == ["clipart", "digits", "emoji", "fashion-mnist", "photos", "shapes"]
    assert source_forms() == ["captions:FILE", "folder:PATH"]


def test_a_real_registry_refuses_a_second_builder_under_a_taken_name() -> None:
    from zoo.architectures import ArchPreset, get_preset, register_preset
    from zoo.data import register_dataset
    from zoo.data.registry import DATASETS

    def vit_tiny() -> ArchPreset:
        return ArchPreset("resnet18")

    with pytest.raises(ValueError, match=r"architecture preset 'vit_tiny' is registered twice: by zoo\.architectures"):
        register_preset(vit_tiny)
    assert get_preset("vit_tiny").arch == "vit_tiny_patch16_224"

    spec = DATASETS.get("shapes")
    with pytest.raises(ValueError, match=r"dataset 'shapes' is registered twice: by zoo\.data\.shapes\..* and by "):
        register_dataset("shapes")(lambda split, *, seed=0: None)
    assert DATASETS.get("shapes") is spec


def test_an_unknown_preset_or_text_architecture_names_the_known_ones() -> None:
    from zoo.architectures import get_preset
    from zoo.config import TextConfig
    from zoo.text import create_text_tower

    with pytest.raises(UnknownNameError, match=r"unknown architecture preset 'vit_huge'; known: resnet18_small, .*; "
                                               r"or any timm architecture name"):
        get_preset("vit_huge")
    with pytest.raises(UnknownNameError, match="unknown text architecture 'lstm'; known: bert, transformer"):
        create_text_tower(TextConfig(arch="lstm"))
