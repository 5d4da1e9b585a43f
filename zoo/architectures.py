"""Named encoder presets: timm architectures sized for a CPU, registered by decorator.

timm already registers the architectures; a preset adds the arguments that make one fit small
images (patch size, image size, channels) and the pooling of its embedding contract. Any timm name
works too: presets are shortcuts, not a second architecture zoo.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from zoo.naming import NameRegistry


@dataclass(frozen=True)
class ArchPreset:
    """A timm architecture plus the arguments and pooling that a preset fixes."""

    arch: str
    arch_args: dict[str, Any] = field(default_factory=dict)
    pooling: str = "avg"
    description: str = ""


PRESETS: NameRegistry[Callable[[], ArchPreset]] = NameRegistry("architecture preset")


def register_preset(fn: Callable[[], ArchPreset]) -> Callable[[], ArchPreset]:
    """Register a preset under the function's name (timm's ``@register_model`` convention)."""
    return PRESETS.register(fn.__name__)(fn)


def get_preset(name: str) -> ArchPreset:
    """The preset called ``name`` (described by its builder's docstring); an unknown name lists the valid ones."""
    builder = PRESETS.get(name, hint="or any timm architecture name")
    preset = builder()
    return preset if preset.description else replace(preset, description=inspect.getdoc(builder) or "")


@register_preset
def vit_tiny() -> ArchPreset:
    """ViT-Tiny width (192) with patch 4: 49 tokens at 28 px, 256 at 64 px; ~5.4 M parameters."""
    return ArchPreset("vit_tiny_patch16_224", {"patch_size": 4, "img_size": 28}, "cls")


@register_preset
def vit_nano() -> ArchPreset:
    """A 6-block, 128-wide ViT with patch 4 for fast tests and CPU smoke runs (~1.2 M parameters)."""
    args = {"patch_size": 4, "img_size": 28, "embed_dim": 128, "depth": 6, "num_heads": 4}
    return ArchPreset("vit_tiny_patch16_224", args, "cls")


@register_preset
def vit_small() -> ArchPreset:
    """ViT-Small width (384) with patch 4 for small images (~21 M parameters)."""
    return ArchPreset("vit_small_patch16_224", {"patch_size": 4, "img_size": 32}, "cls")


@register_preset
def resnet18_small() -> ArchPreset:
    """ResNet-18 for small images: timm's ``resnet18`` at 32 px keeps its stem; 11 M parameters."""
    return ArchPreset("resnet18", {}, "avg")


@register_preset
def resnet_narrow() -> ArchPreset:
    """A ResNet-18 layout at quarter width (16→128 channels), ~0.7 M parameters, for CPU budgets."""
    return ArchPreset("resnet18", {"channels": (16, 32, 64, 128), "stem_width": 16}, "avg")
