"""Typed configs that travel with every set of weights.

A registry entry's ``config.json`` is one :class:`EncoderConfig` serialised with :meth:`to_dict`.
Every argument needed to rebuild the network is stored here, never inferred from a name, so a
checkpoint cannot silently be loaded into the wrong architecture. Loading is strict: a missing
required field or an unknown one, at any level, is a :class:`~zoo.errors.ConfigError` naming it, so a
typo or a file from another tool never turns into silent defaults.

Version 2 keeps what code reads about an entry's origin and storage in typed fields (``hub``,
``storage``, ``external_weights``, ``image_tower``, ``shipped``, ``onnx``); version 1 kept them in
the free ``extra`` dict, and is migrated in memory on load so that files written then (the shipped
entries among them) keep their bytes and their manifests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from zoo.errors import ConfigError

CONFIG_VERSION = 2
#: How tokens or a feature map become one vector (zoo.encoders realises each): ``cls`` the class token,
#: ``mean`` the mean of a ViT's patch tokens, ``avg`` a CNN's global average pool, ``flatten`` a CNN's whole
#: final map, ``cls_mean`` the class token concatenated with the mean of the patch tokens (registers left
#: out; width 2·D: DINOv2's and DINOv3's linear-probe read-out), ``map`` timm's attention-pooling head
#: (SigLIP's, whose weights it has).
POOLINGS = ("cls", "mean", "avg", "flatten", "cls_mean", "map")
METRICS = ("cosine", "dot")

#: Fields a saved config must state: the network, the embedding contract, how images are prepared, the
#: licence and where the weights came from. The rest have a meaning when absent (no text tower, ...).
REQUIRED = ("arch", "embed_dim", "pooling", "normalize", "metric", "preprocess", "license", "source")
#: Keys that version 1 kept in ``extra`` and version 2 keeps in typed fields.
MOVED_FROM_EXTRA = ("hub", "storage", "external_weights", "image_tower", "shipped", "onnx")

_Record = TypeVar("_Record")


def _checked(raw: Any, where: str, known: set[str], required: set[str]) -> dict[str, Any]:
    """``raw`` as a dict, once it names no unknown field and lacks no required one."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a JSON object, got {type(raw).__name__}")
    unknown, missing = sorted(set(raw) - known), sorted(required - set(raw))
    problems = ([f"unknown fields {unknown}"] if unknown else []) + ([f"missing fields {missing}"] if missing else [])
    if problems:
        raise ConfigError(f"{where}: {'; '.join(problems)}")
    return dict(raw)


def _record(cls: type[_Record], raw: Any, where: str, required: tuple[str, ...] | None = None,
            **convert: Any) -> _Record:
    """A frozen record from its JSON form, refusing unknown fields and missing required ones.

    ``required`` defaults to the fields without a default; ``convert`` maps a field to the function that
    turns its JSON value into the field's type (lists into tuples, objects into records).
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if required is None:
        required = tuple(f.name for f in fields
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    data = _checked(raw, where, {f.name for f in fields}, set(required))
    try:
        data.update({name: fn(data[name]) for name, fn in convert.items() if name in data})
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} is not valid: {exc}") from exc


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


#: What a concept head's gate can read (see :class:`ConceptHeadConfig`); :mod:`zoo.concepts` computes them.
GATE_STATISTICS = ("top1", "agreement")


@dataclass(frozen=True)
class ConceptHeadConfig:
    """The shape of a :class:`ConceptHead`: how many classes its classifier has, how many it mixes.

    ``gate`` is the classifier confidence below which the class names get no say (above it their
    weight rises linearly to 1): an ImageNet classifier is sure of itself on photographs and, now and
    then, wrongly sure on drawings. ``gate_on`` names what the gate reads (:data:`GATE_STATISTICS`):
    ``top1``, the top class probability; ``agreement``, the length of the probability-weighted sum of
    the top classes' unit name embeddings, which stays high when the probability is spread over
    classes of one meaning (tabby, tiger cat, Egyptian cat) and falls when it is spread over unrelated
    ones, as on drawings. ``sketch_dims`` are trailing embedding dimensions that no text
    writes into (a :class:`~training.clip.locked_fit.TowerSketch`): the names are mixed in at the
    fitted block's length, so they weigh against it as they would without the sketch.
    """

    classes: int
    top_k: int = 10
    gate: float = 0.0
    gate_on: str = "top1"
    sketch_dims: int = 0

    def __post_init__(self) -> None:
        if self.classes < 1 or not 1 <= self.top_k <= self.classes:
            raise ConfigError(f"a concept head needs classes >= 1 and 1 <= top_k <= classes, got {self}")
        if not 0.0 <= self.gate < 1.0:
            raise ConfigError(f"a concept head's gate is a confidence in [0, 1), got {self.gate}")
        if self.gate_on not in GATE_STATISTICS:
            raise ConfigError(f"a concept head's gate_on is one of {list(GATE_STATISTICS)}, got {self.gate_on!r}")
        if self.sketch_dims < 0:
            raise ConfigError(f"a concept head's sketch_dims cannot be negative, got {self.sketch_dims}")


@dataclass(frozen=True)
class HubSource:
    """Where a pulled entry came from on the Hugging Face Hub, so that it can be pulled again exactly."""

    repo_id: str
    commit: str
    format: str
    revision: str = ""
    endpoint: str = ""
    catalogue: str = ""  # the zoo.hub.catalogue name it was pulled by, if any


@dataclass(frozen=True)
class WeightStorage:
    """Weights stored compactly: float tensors of at least ``min_numel`` elements as ``dtype``, widened on load."""

    dtype: str
    min_numel: int
    tensors_cast: int


@dataclass(frozen=True)
class ExternalRef:
    """Tensors of a file in an installed package that fill part of one of an entry's weight files.

    See :mod:`zoo.package_weights`, which finds, checks and reads the file.
    """

    package: str  # the pip name
    module: str  # the import name
    file: str  # path inside the package folder
    sha256: str
    size: int
    target: str  # the entry's weight file they complete, e.g. ``text.safetensors``
    prefix: str  # prepended to the package's keys, e.g. ``bert.``
    tensors: tuple[str, ...]  # the package's keys taken

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``config.json``."""
        return {**dataclasses.asdict(self), "tensors": list(self.tensors)}

    @classmethod
    def from_dict(cls, raw: Any) -> ExternalRef:
        """Parse one ``external_weights`` record, naming what is wrong with a bad one."""
        return _record(cls, raw, "config.json external_weights record", tensors=tuple)


@dataclass(frozen=True)
class ImageTowerInfo:
    """Where a CLIP image tower's weights came from, for the model card.

    ``trainable`` is True or False, or a sentence when only part of the tower trained; None when the
    building code did not say.
    """

    init: str
    license: str = ""
    trainable: bool | str | None = None
    random_head: bool = False  # a new, randomly initialised projection on a pretrained backbone


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
    # Provenance and storage that code reads; None (or empty) for an ordinary entry, and then absent from
    # config.json.
    hub: HubSource | None = None  # pulled from the Hugging Face Hub
    storage: WeightStorage | None = None  # compact weight storage (sslzoo ship)
    external_weights: tuple[ExternalRef, ...] = ()  # tensors read from installed packages (sslzoo ship)
    image_tower: ImageTowerInfo | None = None  # a CLIP image tower's origin
    shipped: dict[str, Any] | None = None  # sslzoo ship's record: probe, parity, throughput, provenance
    onnx: dict[str, Any] | None = None  # sslzoo export's record: files, parity reports, source
    # Free-form data of the user's (training figures, data licence); nothing in sslzoo reads it.
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
        moved = sorted(set(self.extra) & set(MOVED_FROM_EXTRA))
        if moved:
            raise ConfigError(f"extra{moved} have typed config fields of their own since config_version 2; "
                              "set those instead")

    @property
    def is_clip(self) -> bool:
        """Whether the entry carries a text tower."""
        return self.text is not None

    def replace(self, **changes: Any) -> EncoderConfig:
        """A copy with some fields changed (configs are frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; tuples become lists, and optional records that are unset are left out."""
        out = dataclasses.asdict(self)
        for name in ("concepts", *MOVED_FROM_EXTRA):
            if not out[name]:
                del out[name]
        for key, default in (("sketch_dims", 0), ("gate_on", "top1")):  # written when set: older heads keep their keys
            if out.get("concepts") and out["concepts"][key] == default:
                del out["concepts"][key]
        if self.external_weights:
            out["external_weights"] = [ref.to_dict() for ref in self.external_weights]
        out["config_version"] = CONFIG_VERSION
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EncoderConfig:
        """Rebuild a config, naming unknown or missing fields instead of ignoring them or guessing.

        A version-1 config (its ``extra`` holding what now has typed fields) is migrated first.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError(f"config.json must be a JSON object, got {type(raw).__name__}")
        data = dict(raw)
        version = data.pop("config_version", CONFIG_VERSION)  # absent: the layout is read as today's, strictly
        if version == 1:
            data = migrate_v1(data)
        elif version != CONFIG_VERSION:
            raise ConfigError(f"config_version {version!r} is not supported (expected 1 or {CONFIG_VERSION})")
        data = _checked(data, "config.json", {f.name for f in dataclasses.fields(cls)}, set(REQUIRED))
        data["preprocess"] = _record(PreprocessConfig, data["preprocess"], "config.json preprocess",
                                     required=tuple(f.name for f in dataclasses.fields(PreprocessConfig)),
                                     input_size=tuple, mean=tuple, std=tuple, crop_pct=float)
        records: dict[str, Any] = {"text": TextConfig, "concepts": ConceptHeadConfig, "hub": HubSource,
                                   "storage": WeightStorage, "image_tower": ImageTowerInfo}
        for name, record in records.items():
            if data.get(name) is not None:
                data[name] = _record(record, data[name], f"config.json {name}",
                                     required=TEXT_REQUIRED if record is TextConfig else None)
        refs = data.get("external_weights") or []
        if not isinstance(refs, list):
            raise ConfigError(f"config.json external_weights must be a list, got {type(refs).__name__}")
        data["external_weights"] = tuple(ExternalRef.from_dict(ref) for ref in refs)
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"config.json does not describe an encoder: {exc}") from exc


#: A text tower's fields that a saved config must state (its provenance fields may be absent).
TEXT_REQUIRED = ("arch", "arch_args", "embed_dim", "context_length", "pooling", "tokenizer_file")


def migrate_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 config's fields in version 2's layout: the keys code reads move out of ``extra``.

    Version 1 recorded the Hub catalogue name beside the Hub record as ``extra["catalogue"]``; it joins it.
    """
    out = dict(data)
    extra = dict(out.get("extra") or {})
    for key in MOVED_FROM_EXTRA:
        if key in out:
            raise ConfigError(f"config.json: {key!r} is a top-level field only since config_version 2, "
                              "but the file says config_version 1")
        if key in extra:
            out[key] = extra.pop(key)
    if isinstance(out.get("hub"), Mapping) and "catalogue" in extra:
        out["hub"] = {**out["hub"], "catalogue": extra.pop("catalogue")}
    out["extra"] = extra
    return out
