"""A training run from a recipe: data → encoder → method → trainer → evaluation → registry entry.

The CLI and the benchmarks call these functions, so both train exactly the way a recipe says. Under
``torchrun`` every rank trains; rank 0 alone evaluates, draws the figures, records the probe
(``train.probe_every``) and saves the entry.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

import zoo
from training.config import Recipe, from_mapping
from training.distributed import DistInfo, barrier, setup
from training.evaluate import embed_images, evaluate_encoder
from training.methods import METHODS
from training.methods.base import Method
from training.plots import projection_png, read_metrics, training_curves_png
from training.probe import ProbeRecorder, check_two_views, pick_probe, probe_path
from training.trainer import METRICS_FILE, Callback, Trainer, TrainResult, check_batch_size
from zoo.data import ImageDataset, load_dataset
from zoo.encoders import ImageEncoder, build_encoder, with_pooling
from zoo.errors import ConfigError, DataError
from zoo.registry import Entry

log = logging.getLogger(__name__)
RECIPE_FILE = "recipe.yaml"
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class RunOutcome:
    """What :func:`run_training` produced (``entry`` and ``metrics`` on rank 0 only)."""

    result: TrainResult
    method: nn.Module
    metrics: dict[str, Any]
    entry: Entry | None


def load_training_data(recipe: Recipe) -> ImageDataset:
    """The training split, capped to ``max_images``; skipped unreadable files are logged by the loader."""
    spec = recipe.data
    data = load_dataset(spec.name, spec.split, seed=spec.seed, **spec.options)
    skipped = data.info.get("skipped_unreadable", 0)
    if skipped:
        log.warning("%s: %d unreadable image file(s) skipped (e.g. %s); training on the %d that decoded",
                    spec.name, skipped, ", ".join(data.info.get("skipped_unreadable_examples", [])[:3]), len(data))
    if len(data) < 2:
        raise DataError(f"{spec.name}: only {len(data)} usable image; self-supervised training needs many images "
                        "(at least one batch)")
    if spec.max_images is not None and len(data) > spec.max_images:
        keep = np.sort(np.random.default_rng(spec.seed).choice(len(data), size=spec.max_images, replace=False))
        data = data.subset(keep)
    return data


def load_eval_data(recipe: Recipe, train: ImageDataset) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) for evaluation: the recipe's eval split, or a seeded 80/20 hold-out when there is none.

    User folders have no test split; the hold-out keeps k-NN and the probe from scoring images against
    themselves. Both parts are named in the metrics (``train[80%]``/``train[20%]``).
    """
    spec = recipe.data
    try:
        return train, load_dataset(spec.name, spec.eval_split, seed=spec.seed, **spec.options)
    except DataError as exc:
        log.warning("%s; evaluating on a %d%% hold-out of the training images instead", exc,
                    round(HOLDOUT_FRACTION * 100))
    order = np.random.default_rng(spec.seed + 7).permutation(len(train))
    cut = max(1, round(len(train) * HOLDOUT_FRACTION))
    fit, held = train.subset(np.sort(order[cut:])), train.subset(np.sort(order[:cut]))
    percent = round(HOLDOUT_FRACTION * 100)
    fit.split, held.split = f"{train.split}[{100 - percent}%]", f"{train.split}[{percent}%]"
    return fit, held


def build_run_encoder(recipe: Recipe, data: ImageDataset) -> ImageEncoder:
    """The backbone the recipe names, sized to the data (image size and channels) unless it says otherwise."""
    spec = recipe.model
    _, height, _, channels = data.images.shape
    args = dict(spec.arch_args)
    if "img_size" in args and spec.img_size not in (None, args["img_size"]):
        raise ConfigError(f"model.img_size={spec.img_size} contradicts model.arch_args.img_size={args['img_size']}")
    # given in arch_args, img_size reaches timm whatever the architecture's name (test_vit, say)
    size: dict[str, Any] = {} if "img_size" in args else {"img_size": spec.img_size or height}
    return build_encoder(spec.arch, in_chans=spec.in_chans or channels, pooling=spec.pooling,
                         embed_dim=spec.embed_dim, method=recipe.method, **size, **args)


def build_method(recipe: Recipe, encoder: ImageEncoder, data: ImageDataset | None = None) -> Method:
    """``METHODS.get(name)(encoder=..., **method_args)``, naming unknown arguments before building.

    Methods that learn from more than pixels (CLIP's captions) declare a ``dataset`` parameter and get
    the training data through it.
    """
    factory = METHODS.get(recipe.method)
    params = inspect.signature(factory).parameters
    extra = {"dataset": data} if "dataset" in params and data is not None else {}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        valid = sorted(n for n in params if n not in ("self", "encoder", "dataset"))
        unknown = sorted(set(recipe.method_args) - set(valid))
        if unknown:
            raise ConfigError(f"method {recipe.method!r} has no argument(s) {unknown}; its arguments: {valid}")
    try:
        return factory(encoder=encoder, **extra, **recipe.method_args)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method {recipe.method!r} rejected its arguments {recipe.method_args}: {exc}") from exc


def prepare_run_dir(recipe: Recipe, run_dir: Path, resume: bool, is_main: bool) -> Recipe:
    """Save the recipe in a new run dir; on resume, insist the recipe matches the one the run started with."""
    path = run_dir / RECIPE_FILE
    existing = path.is_file()
    barrier()  # every rank looks before rank 0 writes
    if not resume and existing:
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")
    if resume and existing:
        saved = saved_recipe(run_dir)
        changed = resume_conflicts(recipe, saved)
        if changed:
            raise ConfigError(f"--resume with a different recipe than {path}: {', '.join(changed)} differ; "
                              "resume with the same options (or none: the saved recipe is used)")
        readout: dict[str, Any] = {"readout": recipe.model.readout, "readout_stages": recipe.model.readout_stages}
        if readout != {"readout": saved.model.readout, "readout_stages": saved.model.readout_stages} and is_main:
            path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        return replace(saved, model=replace(saved.model, **readout))
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    return recipe


def saved_recipe(run_dir: Path) -> Recipe:
    """The recipe a run folder was started with."""
    path = run_dir / RECIPE_FILE
    return from_mapping(Recipe, yaml.safe_load(path.read_text()), where=str(path))


def resume_conflicts(recipe: Recipe, saved: Recipe) -> list[str]:
    """The recipe keys that differ from a run's saved recipe and forbid resuming it (empty: it may resume)."""
    return [key for key in _changed_keys(recipe.to_dict(), saved.to_dict()) if key not in AFTER_TRAINING_KEYS]


# Recipe keys that only act once training is over: a finished or killed run may resume with new ones.
AFTER_TRAINING_KEYS = ("model.readout", "model.readout_stages")


def _changed_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys += _changed_keys(x, y, f"{prefix}{key}.")
        elif x != y and key not in ("progress",):
            keys.append(f"{prefix}{key}")
    return keys


def new_method(recipe: Recipe, data: ImageDataset) -> Method:
    """The method the recipe names around a fresh encoder, seeded (the same initial weights on every rank and run)."""
    torch.manual_seed(recipe.train.seed)
    return build_method(recipe, build_run_encoder(recipe, data), data)


def probe_recorder(recipe: Recipe, run_dir: Path, method: nn.Module, train: ImageDataset,
                   is_main: bool = True) -> ProbeRecorder | None:
    """The recorder ``train.probe_every`` asks for: ``probe_size`` eval images balanced over classes, both views.

    Every rank checks that the method makes two views (so all fail alike); rank 0 alone gets a recorder.

    Raises:
        ConfigError: ``probe_every`` set for a method without two views (MAE, I-JEPA, CLIP).
    """
    every = recipe.train.probe_every
    if not every:
        return None
    check_two_views(method, recipe.method, train.images)
    if not is_main:
        return None
    _, test = load_eval_data(recipe, train)
    chosen = pick_probe(test.labels, recipe.train.probe_size, seed=recipe.train.seed)
    return ProbeRecorder(run_dir, test.images[chosen], every,
                         labels=None if test.labels is None else test.labels[chosen],
                         class_names=test.class_names, seed=recipe.train.seed)


def train_method(recipe: Recipe, run_dir: Path, *, resume: bool = False, dist_info: DistInfo | None = None,
                 data: ImageDataset | None = None, method: Method | None = None,
                 callbacks: Sequence[Callback] = ()) -> tuple[TrainResult, Method, ImageDataset]:
    """Build everything the recipe names (or take ``data``/``method``) and train it; returns result, method, data.

    With ``train.probe_every`` the probe is recorded at step 0, every N steps and at the last step.
    """
    dist_info = dist_info or setup(recipe.train.device)
    data = data if data is not None else load_training_data(recipe)
    method = method if method is not None else new_method(recipe, data)
    check_batch_size(method, recipe.train.batch_size, recipe.method)
    recorder = probe_recorder(recipe, run_dir, method, data, dist_info.is_main)
    extra = [recorder.callback(method)] if recorder is not None else []
    trainer = Trainer(method, data.images, recipe.train, run_dir, dist_info=dist_info, name=recipe.method,
                      callbacks=[*callbacks, *extra])
    if recorder is not None and not probe_path(run_dir, 0).exists():
        recorder.record(0, method)  # the untrained network, where the pairs start (seeded: the same on resume)
    result = trainer.fit(resume=resume)
    if recorder is not None and not recorder.due(result.steps):
        recorder.record(result.steps, method)  # the trained network, when the run ends between records
    return result, method, data


def finish_run(recipe: Recipe, run_dir: Path, method: nn.Module, result: TrainResult, train: ImageDataset,
               name: str | None) -> tuple[dict[str, Any], Entry | None]:
    """Evaluate the encoder, draw the figures, and save the entry (when ``name`` is given)."""
    encoder: ImageEncoder = method.encoder().cpu().eval()  # type: ignore[operator]
    encoder.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    if recipe.model.readout or recipe.model.readout_stages is not None:
        encoder = with_pooling(encoder, recipe.model.readout, recipe.model.readout_stages).eval()
    fit, test = load_eval_data(recipe, train)
    metrics = evaluate_encoder(encoder, fit, test, recipe.eval, recipe.train.seed) if recipe.eval.enabled else {}
    (run_dir / "eval.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    rows = read_metrics(run_dir / METRICS_FILE)
    label = f"{recipe.method} · {recipe.model.arch} · {train.name}"
    figures = {"training_curves.png": training_curves_png(rows, label)}
    shown = test.subset(np.arange(min(len(test), 3000)))
    figures["embeddings_pca.png"] = projection_png(embed_images(encoder, shown.images), shown.labels,
                                                   shown.class_names, f"PCA of {test.name}/{test.split} embeddings")
    for file, png in figures.items():
        (run_dir / file).write_bytes(png)
    if not name:
        return metrics, None
    encoder.config = encoder.config.replace(
        method=recipe.method, data=train.name, recipe=recipe.to_dict(), metrics=metrics,
        extra={"training": {k: v for k, v in asdict(result).items()}, "data_license": train.license,
               "data_source": train.source})
    extra = {**figures, RECIPE_FILE: yaml.safe_dump(recipe.to_dict(), sort_keys=False).encode()}
    captions = {"Training curves: loss, learning rate and collapse diagnostics": "training_curves.png",
                f"PCA of {test.name}/{test.split} embeddings, coloured by label": "embeddings_pca.png"}
    entry = zoo.save(encoder, name, extra_files=extra, figures=captions)
    return metrics, entry


def run_training(recipe: Recipe, run_dir: Path, *, name: str | None = None, resume: bool = False) -> RunOutcome:
    """The whole run: prepare the run dir, train on every rank, then evaluate and register on rank 0."""
    dist_info = setup(recipe.train.device)
    data = load_training_data(recipe)
    method = new_method(recipe, data)
    if recipe.train.probe_every:
        check_two_views(method, recipe.method, data.images)  # before the run folder is written
    recipe = prepare_run_dir(recipe, run_dir, resume, dist_info.is_main)
    result, method, data = train_method(recipe, run_dir, resume=resume, dist_info=dist_info, data=data,
                                        method=method)
    if not dist_info.is_main:
        return RunOutcome(result, method, {}, None)
    metrics, entry = finish_run(recipe, run_dir, method, result, data, name)
    (run_dir / "result.json").write_text(json.dumps(
        {"training": asdict(result), "entry": entry.ref if entry else None, "metrics": metrics}, indent=2))
    return RunOutcome(result, method, metrics, entry)
