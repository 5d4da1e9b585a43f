"""``sslzoo train`` and ``sslzoo eval``, added to the ``sslzoo`` command through entry points.

``train`` starts from a YAML recipe (or the defaults), applies the flags and ``--set KEY=VALUE`` on top,
trains, evaluates and saves the encoder to the registry. ``eval`` measures any entry on a dataset.
Bad input raises :class:`zoo.errors.SslzooError` subclasses, which ``sslzoo`` prints as one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from training.config import EvalConfig, Recipe, apply_overrides, from_mapping, load_recipe, parse_assignment
from zoo.errors import ConfigError, RefError

log = logging.getLogger(__name__)

# flag → dotted recipe key; a flag left unset keeps the recipe's value
FLAG_KEYS = {
    "method": "method", "arch": "model.arch", "img_size": "model.img_size", "data": "data.name",
    "max_images": "data.max_images", "steps": "train.steps", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "accum_steps": "train.accum_steps", "lr": "train.lr",
    "weight_decay": "train.weight_decay", "optimizer": "train.optimizer", "precision": "train.precision",
    "seed": "train.seed", "device": "train.device", "checkpoint_every": "train.checkpoint_every",
    "log_every": "train.log_every", "max_time_s": "train.max_time_s", "probe_every": "train.probe_every",
}


class _RegisteredMethods:
    """The registry's method names, looked up only when help is printed (building the parser stays torch-free)."""

    def __str__(self) -> str:
        from zoo.extras import missing_extra

        try:
            from training.methods import METHODS

            return ", ".join(METHODS.names())
        except ModuleNotFoundError as exc:  # the methods need torch: help still prints, and says what to install
            error = missing_extra(exc, "listing the methods")
            if error is None:
                raise
            return f"(unavailable: {error})"


def add_train_command(sub: Any) -> None:
    """Add ``sslzoo train`` to the ``sslzoo`` subparsers."""
    p = sub.add_parser("train", help="train a self-supervised encoder and save it to the registry",
                       description="Train from a YAML recipe (training/recipes/*.yaml) or the defaults; flags "
                                   "override the recipe, --set KEY=VALUE overrides any field.")
    p.add_argument("--recipe", type=Path, help="YAML recipe (typed; unknown keys are errors)")
    method = p.add_argument("--method", help="a registered method: %(registered)s")
    method.registered = _RegisteredMethods()  # type: ignore[attr-defined]  # read by argparse's %-expansion
    p.add_argument("--arch", help="backbone: a zoo preset (vit_tiny, vit_nano, resnet_narrow, ...) or timm name")
    p.add_argument("--img-size", type=int, help="input size (default: the dataset's)")
    p.add_argument("--data", help="fashion-mnist, digits, shapes, folder:PATH ...")
    p.add_argument("--max-images", type=int, help="train on a seeded subset of this many images")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimiser steps")
    length.add_argument("--epochs", type=float, help="passes over the data (sets the steps)")
    p.add_argument("--batch-size", type=int, help="images per process per micro-batch")
    p.add_argument("--accum-steps", type=int, help="micro-batches per optimiser step")
    p.add_argument("--lr", type=float, help="peak learning rate after warm-up")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--optimizer", choices=("adamw", "lars", "sgd"))
    p.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"))
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (0: only at the end)")
    p.add_argument("--log-every", type=int, help="steps between metrics.jsonl rows")
    p.add_argument("--max-time-s", type=float, help="stop after this many seconds of training")
    p.add_argument("--probe-every", type=int, metavar="N",
                   help="every N steps (and at the first and last) record both views of train.probe_size eval "
                        "images into RUN_DIR/probe, for sslzoo plot animate RUN_DIR (0: off)")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="set any recipe field, e.g. --set method_args.temperature=0.2 --set eval.few_shot=[1,5]")
    p.add_argument("--name", help="registry name (default: METHOD-ARCH-DATA)")
    p.add_argument("--out", type=Path, help="run folder for logs and checkpoints (default: runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-save", action="store_true", help="do not save the encoder to the registry")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None}
    if args.steps is not None:
        values["train.epochs"] = None
    if args.epochs is not None:
        values["train.steps"] = None
    if args.no_eval:
        values["eval.enabled"] = False
    if args.no_progress:
        values["train.progress"] = False
    for text in args.assignments:
        key, value = parse_assignment(text)
        values[key] = value
    return values


def default_name(recipe: Recipe) -> str:
    """``METHOD-ARCH-DATA`` made registry-safe (``folder:/x/y`` becomes ``folder-x-y``)."""
    raw = f"{recipe.method}-{recipe.model.arch}-{recipe.data.name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.")[:100]


def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe a ``train`` command means: file or saved run recipe (on --resume) or defaults, plus flags."""
    saved = args.out / "recipe.yaml" if args.out is not None else None
    if args.recipe is not None:
        base = load_recipe(args.recipe)
    elif args.resume and saved is not None and saved.is_file():
        base = load_recipe(saved)
    else:
        base = Recipe()
    return apply_overrides(base, _overrides(args))


def run_train(args: argparse.Namespace) -> int:
    """``sslzoo train``: returns 0 when the encoder is trained (and saved)."""
    from training.distributed import teardown
    from training.probe import PROBE_DIR, recorded_steps
    from training.run import run_training

    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out RUN_DIR: the run to continue")
    recipe = resolve_recipe(args)
    name = args.name or default_name(recipe)
    out = args.out or Path("runs") / name
    try:
        outcome = run_training(recipe, out, name=None if args.no_save else name, resume=args.resume)
    finally:
        teardown()
    if outcome.entry is None and not outcome.metrics:
        return 0
    result = outcome.result
    print(f"trained {recipe.method} on {recipe.data.name}: {result.steps} steps, {result.epochs:.2f} epochs, "
          f"{result.img_per_s:.0f} img/s, final loss {result.final_loss:.4f}; run folder {out}")
    print(format_metrics(outcome.metrics))
    if outcome.entry is not None:
        print(f"saved {outcome.entry.ref} ({outcome.entry.path})")
    if recipe.train.probe_every:
        print(f"probe recorded at {len(recorded_steps(out))} steps in {out / PROBE_DIR}; "
              f"animate it with: sslzoo plot animate {out}")
    return 0


def format_metrics(metrics: dict[str, Any]) -> str:
    """A small aligned table of metric, value, dataset/split."""
    lines = [f"{'metric':18} {'value':>8}  data"]
    for key, metric in sorted(metrics.items()):
        lines.append(f"{key:18} {metric['value']:8.4f}  {metric['dataset']}/{metric['split']}")
    return "\n".join(lines)


def add_eval_command(sub: Any) -> None:
    """Add ``sslzoo eval`` to the ``sslzoo`` subparsers."""
    p = sub.add_parser("eval", help="measure an encoder: k-NN, linear probe, few-shot, alignment, uniformity")
    p.add_argument("ref", help="name, name@version, name@alias or a folder")
    p.add_argument("--data", required=True, help="dataset with a train and a test split (fashion-mnist, digits ...)")
    p.add_argument("--split", default="test", help="split to evaluate on")
    p.add_argument("--train-split", default="train", help="split the k-NN bank and probes are fitted on")
    p.add_argument("--max-train", type=int, help="use a seeded subset of this many training images")
    p.add_argument("--max-test", type=int, help="use a seeded subset of this many test images")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe (the slowest part)")
    p.add_argument("--few-shot", type=int, nargs="*", default=[1, 5, 10], help="labels per class (none: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--save", action="store_true", help="save the entry again (next version) with these metrics")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """``sslzoo eval``: prints the metrics (and saves them as a new version with --save)."""
    import zoo
    from training.evaluate import evaluate_encoder
    from zoo.data import load_dataset

    model = zoo.load(args.ref)
    tower = model.visual if getattr(model.config, "text", None) is not None else model  # CLIP: its image tower
    train = load_dataset(args.data, args.train_split, seed=args.seed)
    test = load_dataset(args.data, args.split, seed=args.seed)
    config = from_mapping(EvalConfig, {"linear_probe": not args.no_probe, "few_shot": args.few_shot,
                                       "max_train": args.max_train, "max_test": args.max_test})
    metrics = evaluate_encoder(tower, train, test, config, args.seed)
    print(json.dumps(metrics, indent=2, sort_keys=True) if args.json else format_metrics(metrics))
    if args.save:
        entry = _save_with_metrics(model, metrics)
        print(f"saved {entry.ref} with the new metrics")
    return 0


def _save_with_metrics(model: Any, metrics: dict[str, Any]) -> Any:
    import zoo
    from zoo.manifest import MANIFEST
    from zoo.registry import CARD, CONFIG

    entry = model.entry
    if entry.version is None or entry.builtin:
        raise RefError(f"--save needs a user registry entry (name@version), not {entry.ref}")
    skip = {CARD, CONFIG, MANIFEST, *model.tensor_files()}
    extra = {p.name: p.read_bytes() for p in sorted(entry.path.iterdir()) if p.is_file() and p.name not in skip}
    figures = {p.removesuffix(".png").replace("_", " "): p for p in extra if p.endswith(".png")}
    model.config = model.config.replace(metrics={**model.config.metrics, **metrics})
    return zoo.save(model, entry.name, extra_files=extra, figures=figures)

