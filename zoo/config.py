"""Typed configs that travel with every set of weights.

A registry entry's ``config.json`` is one :class:`EncoderConfig` serialised with :meth:`to_dict`.
Every argument needed to rebuild the network is stored here, never inferred from a name, so a
checkpoint cannot silently be loaded into the wrong architecture.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ConfigError

CONFIG_VERSION = 1
POOLINGS = ("cls", "mean", "avg", "flatten")
METRICS = ("cosine", "dot")


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes the tensor the network expects, in timm's terms.

    ``input_size`` is ``(channels, height, width)``; an image is resized so that its shorter side is
    ``height / crop_pct``, centre-cropped to ``height × width``, scaled to ``[0, 1]`` and standardised.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        channels = self.input_size[0]
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise ConfigError(f"input_size must be (channels, height, width), got {self.input_size}")
        if len(self.mean) != channels or len(self.std) != channels:
            raise ConfigError(f"mean/std need {channels} values for input_size {self.input_size}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ConfigError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.interpolation not in ("nearest", "bilinear", "bicubic", "lanczos", "box"):
            raise ConfigError(f"unknown interpolation {self.interpolation!r}")
        if any(s <= 0 for s in self.std):
            raise ConfigError("std values must be positive")


@dataclass(frozen=True)
class TextConfig:
    """A text tower: which registered text architecture, its arguments, and tokenizer settings."""

    arch: str = "transformer"
    arch_args: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 0
    context_length: int = 32
    pooling: str = "eot"
    tokenizer_file: str = "tokenizer.json"
    trainable: bool = True
    init: str = "random"
    license: str = ""


@dataclass(frozen=True)
class ConceptHeadConfig:
    """The shape of a :class:`ConceptHead`: how many classes its classifier has, how many it mixes."""

    classes: int
    top_k: int = 10

    def __post_init__(self) -> None:
        if self.classes < 1 or not 1 <= self.top_k <= self.classes:
            raise ConfigError(f"a concept head needs classes >= 1 and 1 <= top_k <= classes, got {self}")


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to rebuild an encoder and to use its vectors correctly.

    The *embedding contract* is ``embed_dim``, ``pooling``, ``normalize`` and ``metric``: a service that
    reads it needs to know nothing about the training method.
    """

    arch: str
    arch_args: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 0
    pooling: str = "avg"
    # A CNN read out after its first ``stages`` stages (1 = the stem and layer1, ...; timm's feature_info
    # numbering), the later ones dropped; the whole network when None.
    stages: int | None = None
    # A CLIP image head that also mixes its classifier's class-name embeddings (zoo.concepts); None: linear.
    concepts: ConceptHeadConfig | None = None
    normalize: bool = True
    metric: str = "cosine"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    method: str = "none"
    text: TextConfig | None = None
    license: str = "apache-2.0"
    source: str = "sslzoo"
    data: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.arch:
            raise ConfigError("arch must name a timm architecture")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.stages is not None and (isinstance(self.stages, bool) or not isinstance(self.stages, int)
                                        or self.stages < 0):
            raise ConfigError(f"stages must be a non-negative integer or null, got {self.stages!r}")
        if self.metric == "cosine" and not self.normalize:
            raise ConfigError("metric 'cosine' needs normalize=True (dot products of unit vectors)")

    @property
    def is_clip(self) -> bool:
        """Whether the entry carries a text tower."""
        return self.text is not None

    def replace(self, **changes: Any) -> EncoderConfig:
        """A copy with some fields changed (configs are frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; tuples become lists."""
        out = dataclasses.asdict(self)
        if out["concepts"] is None:  # absent rather than null: configs written before the field keep their bytes
            del out["concepts"]
        out["config_version"] = CONFIG_VERSION
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EncoderConfig:
        """Rebuild a config, naming unknown or missing fields instead of ignoring them."""
        data = dict(raw)
        version = data.pop("config_version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(f"config_version {version} is not supported (expected {CONFIG_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config fields: {unknown}")
        try:
            pre = data.get("preprocess") or {}
            data["preprocess"] = PreprocessConfig(
                input_size=tuple(pre.get("input_size", (3, 224, 224))),
                interpolation=pre.get("interpolation", "bicubic"),
                crop_pct=float(pre.get("crop_pct", 0.875)),
                mean=tuple(pre.get("mean", (0.485, 0.456, 0.406))),
                std=tuple(pre.get("std", (0.229, 0.224, 0.225))),
            )
            if data.get("text") is not None:
                data["text"] = TextConfig(**data["text"])
            if data.get("concepts") is not None:
                data["concepts"] = ConceptHeadConfig(**data["concepts"])
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"config.json does not describe an encoder: {exc}") from exc
