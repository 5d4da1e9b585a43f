"""Typed recipes: YAML files and CLI flags map onto frozen dataclasses, and unknown keys are errors.

A recipe is everything that decides a training run (method and its arguments, backbone, data,
optimisation, evaluation), so the registry entry can store it and the same run can be repeated.

.. code-block:: yaml

    method: simclr
    method_args: {temperature: 0.2}
    model: {arch: resnet_narrow}
    data: {name: fashion-mnist}
    train: {epochs: 10, batch_size: 256, lr: 2.0e-3}
    eval: {knn_k: 20}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from zoo.errors import ConfigError

T = TypeVar("T")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    """How the trainer optimises; ``steps`` or ``epochs`` sets the length (``steps`` wins).

    ``batch_size`` is per process and per micro-batch: the optimiser sees
    ``batch_size × processes × accum_steps`` images a step. ``lr`` is the peak rate after warm-up.
    ``probe_every`` records both views of ``probe_size`` eval images every N steps (and at step 0) into
    ``RUN_DIR/probe`` for ``sslzoo plot animate`` (:mod:`training.probe`); 0 records nothing.
    """

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 256
    accum_steps: int = 1
    optimizer: str = "adamw"
    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_steps: int | None = None
    warmup_fraction: float = 0.1
    weight_decay: float = 0.05
    weight_decay_end: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    grad_clip: float | None = 3.0
    precision: str = "auto"
    channels_last: bool = True
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    progress: bool = True
    device: str = "auto"
    max_time_s: float | None = None
    find_unused_parameters: bool = True  # I-JEPA leaves the class token out of its loss; False is faster
    sync_bn: bool = False
    probe_every: int = 0
    probe_size: int = 64

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("batch_size", "accum_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"train.steps must be at least 1, got {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"train.epochs must be positive, got {self.epochs}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.probe_every < 0:
            raise ConfigError(f"train.probe_every must be 0 (off) or a number of steps, got {self.probe_every}")
        if self.probe_size < 2:
            raise ConfigError(f"train.probe_size must be at least 2 images, got {self.probe_size}")


@dataclass(frozen=True)
class ModelSpec:
    """The backbone: a zoo preset or timm name; size and channels default to the dataset's."""

    arch: str = "resnet_narrow"
    img_size: int | None = None
    in_chans: int | None = None
    pooling: str | None = None
    embed_dim: int | None = None
    arch_args: dict[str, Any] = field(default_factory=dict)
    # The pooling the *saved* encoder reads its trained backbone out with, when it is not the training one
    # (``flatten``: the whole final map). Pooling has no weights, so this changes no step of training.
    readout: str | None = None
    # Read the saved encoder out after this stage (1 = the stem and layer1, ...; timm ResNets), the
    # later stages dropped; like ``readout`` it acts after training (benchmarks/readout_layers.py).
    readout_stages: int | None = None


@dataclass(frozen=True)
class DataSpec:
    """Which dataset trains the encoder and which split evaluates it."""

    name: str = "fashion-mnist"
    split: str = "train"
    eval_split: str = "test"
    seed: int = 0
    max_images: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation after training (DINO's k-NN defaults: k=20, T=0.07)."""

    enabled: bool = True
    knn_k: int = 20
    knn_temperature: float = 0.07
    linear_probe: bool = True
    few_shot: tuple[int, ...] = (1, 5, 10)
    few_shot_draws: int = 3
    alignment: bool = True
    max_train: int | None = None
    max_test: int | None = None
    batch_size: int = 512
    bf16: bool = False


@dataclass(frozen=True)
class Recipe:
    """A whole training run."""

    method: str = "simclr"
    method_args: dict[str, Any] = field(default_factory=dict)
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready (tuples become lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint`` (YAML writes ``1e-3`` as a string; flags arrive as strings)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)  # type: ignore[arg-type]
    try:
        if origin is tuple:
            return _coerce_tuple(value, args, where)
        if origin is dict or hint is dict:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping, got {value!r}")
            return dict(value)
        if hint in _SCALARS:
            return _SCALARS[hint](value, where)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read {value!r} as {getattr(hint, '__name__', hint)}") from exc
    return value


def _coerce_tuple(value: Any, args: tuple[Any, ...], where: str) -> tuple[Any, ...]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(v, args[0], where) for v in items)
    if len(items) != len(args):
        raise ConfigError(f"{where}: expected {len(args)} values, got {items}")
    return tuple(_coerce(v, a, where) for v, a in zip(items, args, strict=True))


def _to_bool(value: Any, where: str) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _to_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return int(value)


def _to_float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


_SCALARS: dict[Any, Any] = {bool: _to_bool, int: _to_int, float: _to_float, str: lambda v, _: str(v)}


def from_mapping(cls: type[T], raw: Any, where: str = "recipe") -> T:
    """Build dataclass ``cls`` from a mapping, naming unknown keys and converting values to field types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; valid keys: {', '.join(names)}")
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in raw.items()}
    return cls(**values)


def load_recipe(path: str | Path) -> Recipe:
    """Read a YAML recipe file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"recipe {file} does not exist")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {file} is not valid YAML: {exc}") from exc
    return from_mapping(Recipe, raw, where=file.name)


def apply_overrides(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """A copy with dotted keys set (``{"train.lr": 3e-4, "method_args.temperature": 0.1}``)."""
    raw = recipe.to_dict()
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"cannot set {dotted!r}: {part!r} is not a section of the recipe")
            node = node[part]
        node[leaf] = value
    return from_mapping(Recipe, raw)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``train.lr=3e-4``, ``eval.few_shot=[1,5]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)
