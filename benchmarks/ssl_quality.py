"""Every SSL method under the same CPU time budget, against a random encoder and raw pixels.

    python -m benchmarks.ssl_quality                                   # fashion-mnist, 600 s per method
    python -m benchmarks.ssl_quality --budget-s 20 --data digits       # a smoke run
    python -m benchmarks.ssl_quality --methods simclr,dino --budget-s 900
    python -m benchmarks.ssl_quality --jobs 2 --threads 1               # two methods at a time, one core each
    python -m benchmarks.ssl_quality --shipped simclr,dino              # the shipped entries, no training

Each method trains from its recipe (``training/recipes/METHOD_DATA.yaml``) for as many optimiser steps as
fit ``--budget-s`` seconds of *training* (the step count is calibrated first by timing a few steps, so
the cosine schedule runs to its end; a hard stop at 1.15 × the budget guards against a slower machine).
Calibration and evaluation are not counted in the budget. Evaluation is the registry's: weighted k-NN
(k=20, T=0.07, cosine) and a logistic-regression probe on standardised features, fitted on the train split
and scored on the test split, plus alignment/uniformity (Wang & Isola) and effective rank on the test
split. The same figures are printed for a randomly initialised encoder of each backbone and for raw pixels.
For CNN backbones the last two columns are the k-NN of the same weights read out as the whole final feature
map (``flatten``) instead of its global average (on aligned images it keeps where features fired), and as
the whole map after layer1 (``readout_stages: 1``, the stage read-out the shipped SimCLR and DINO used
before they shipped as whole networks with the pooled read-out).
``--jobs N`` trains N methods at once, each in its own process with ``--threads`` torch threads (the
budget is per method and in wall-clock seconds, so say which: 600 s on one core is not 600 s on two).
``--shipped simclr,dino`` trains nothing: it scores those registry entries (built-in names, or any
reference ``zoo.load`` takes) as they are served, each beside a random-init twin of its own config.
Prints a markdown table and writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

import zoo
from training.config import EvalConfig, Recipe, apply_overrides, load_recipe
from training.evaluate import evaluate_encoder, evaluate_features, pixel_features
from training.run import build_run_encoder, load_eval_data, load_training_data, train_method
from zoo.config import EncoderConfig
from zoo.encoders import ImageEncoder, with_pooling

RECIPES = Path(__file__).resolve().parents[1] / "training" / "recipes"
METHODS = ("simclr", "mocov3", "byol", "simsiam", "dino", "mae", "ijepa")
CALIBRATION_STEPS = 6
log = logging.getLogger("ssl_quality")


def calibrate(recipe: Recipe, data: Any) -> float:
    """Seconds per optimiser step, timed on steps 3..N of a throw-away run (the first ones warm up)."""
    probe = apply_overrides(recipe, {"train.steps": CALIBRATION_STEPS, "train.epochs": None, "train.log_every": 1,
                                     "train.checkpoint_every": 0, "train.progress": False, "train.max_time_s": None})
    with tempfile.TemporaryDirectory() as tmp:
        train_method(probe, Path(tmp) / "run", data=data)
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    return (rows[-1]["elapsed_s"] - rows[1]["elapsed_s"]) / (len(rows) - 2)


def train_one(method: str, args: argparse.Namespace, data: Any) -> dict[str, Any]:
    """Calibrate, train within the budget, evaluate; one table row."""
    recipe = load_recipe(RECIPES / f"{method}_{args.data}.yaml")
    recipe = apply_overrides(recipe, {"train.progress": not args.no_progress, "train.seed": args.seed})
    per_step = calibrate(recipe, data)
    steps = max(1, int(args.budget_s / per_step))
    recipe = apply_overrides(recipe, {"train.steps": steps, "train.epochs": None, "train.checkpoint_every": 0,
                                      "train.log_every": max(1, steps // 50), "train.max_time_s": args.budget_s * 1.15})
    run_dir = args.out / method
    shutil.rmtree(run_dir, ignore_errors=True)
    result, trained, _ = train_method(recipe, run_dir, data=data)
    encoder = trained.encoder().cpu().eval()  # type: ignore[operator]
    encoder.to(memory_format=torch.contiguous_format)
    metrics = evaluate_encoder(encoder, *args.eval_data, args.eval_config, args.seed)
    return {"method": method, "backbone": backbone_label(recipe), "steps": result.steps, "epochs": result.epochs,
            "img_s": result.img_per_s, "train_s": result.seconds, "calibrated_s_per_step": per_step,
            "recipe": recipe.to_dict(), **_figures(metrics), **map_knn(encoder, args)}


def map_knn(encoder: ImageEncoder, args: argparse.Namespace) -> dict[str, float]:
    """k-NN of CNNs read out as a whole map (``flatten``): the final one, and layer1's (stage 1).

    Global pooling throws away where features fired; the last stages are the ones the loss shapes
    most. Layer1's whole map (``readout: flatten``, ``readout_stages: 1``) stays an option of every CNN
    entry (``benchmarks/readout_layers.py`` compares the stages); the shipped entries serve the pooled map.
    """
    if encoder.config.pooling != "avg":
        return {}
    config = replace(args.eval_config, linear_probe=False, alignment=False)
    out = {}
    for key, stages in (("knn_map", None), ("knn_stage1", 1)):
        read = with_pooling(encoder, "flatten", stages).eval()
        out[key] = evaluate_encoder(read, *args.eval_data, config, args.seed)["knn_top1"]["value"]
    return out


def shipped_rows(names: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Registry entries as served (their own readout), each followed by a random-init twin of its config."""
    rows = []
    for name in names:
        encoder = zoo.load(name)
        config = encoder.config
        label = entry_label(config)
        metrics = evaluate_encoder(encoder, *args.eval_data, args.eval_config, args.seed)
        rows.append({"method": f"{name} (shipped)", "backbone": label, **_figures(metrics), **map_knn(encoder, args)})
        torch.manual_seed(args.seed)
        twin = ImageEncoder(config).eval()
        metrics = evaluate_encoder(twin, *args.eval_data, args.eval_config, args.seed)
        rows.append({"method": "random init", "backbone": label, **_figures(metrics), **map_knn(twin, args)})
    return rows


def entry_label(config: EncoderConfig) -> str:
    """A registry entry's backbone and readout as the table names them."""
    return f"{config.arch} (pool={config.pooling}, {config.embed_dim}-d)"


def backbone_label(recipe: Recipe) -> str:
    """The backbone as the table names it: preset, non-default pooling, and extra arguments."""
    extra = [f"pool={recipe.model.pooling}"] if recipe.model.pooling else []
    extra += [f"{k}={v}" for k, v in sorted(recipe.model.arch_args.items())]
    return recipe.model.arch + (f" ({', '.join(extra)})" if extra else "")


def baseline_rows(archs: dict[str, Recipe], args: argparse.Namespace, data: Any) -> list[dict[str, Any]]:
    """Random-init encoders (one per backbone, built as the recipe builds it) and raw pixels."""
    rows = []
    for arch, recipe in archs.items():
        torch.manual_seed(args.seed)
        encoder = build_run_encoder(recipe, data).eval()
        metrics = evaluate_encoder(encoder, *args.eval_data, args.eval_config, args.seed)
        rows.append({"method": "random init", "backbone": arch, **_figures(metrics), **map_knn(encoder, args)})
    metrics = evaluate_features(pixel_features, *args.eval_data, args.eval_config, args.seed)
    rows.append({"method": "raw pixels", "backbone": "-", **_figures(metrics)})
    return rows


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = {"knn_top1": "knn", "linear_top1": "linear", "alignment": "alignment", "uniformity": "uniformity",
            "effective_rank": "erank"}
    return {short: metrics[key]["value"] for key, short in keys.items() if key in metrics}


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    return format(row[key], fmt) if row.get(key) is not None else "-"


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    head = ("| method | backbone | steps | epochs | img/s | k-NN top-1 | linear top-1 | alignment | uniformity "
            "| eff. rank | k-NN, whole map | k-NN, layer1 map |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        cells = [_cell(r, k, f) for k, f in (("steps", "d"), ("epochs", ".2f"), ("img_s", ".0f"), ("knn", ".4f"),
                                             ("linear", ".4f"), ("alignment", ".3f"), ("uniformity", ".3f"),
                                             ("erank", ".1f"), ("knn_map", ".4f"), ("knn_stage1", ".4f"))]
        lines.append(f"| {r['method']} | {r['backbone']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-s", type=float, default=600.0, help="training seconds per method (default 600)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    p.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "digits"))
    p.add_argument("--out", type=Path, default=Path("runs/ssl_quality"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-eval-train", type=int, help="cap the k-NN bank / probe training set (default: all)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--jobs", type=int, default=1, help="methods trained at once, each in its own process")
    p.add_argument("--threads", type=int, help="torch threads per method (default: torch's, or cores // jobs)")
    p.add_argument("--shipped", help="comma-separated registry entries to score as served, instead of training")
    args = p.parse_args()
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        p.error("--jobs and --threads must be at least 1")
    return args


def prepare(args: argparse.Namespace, methods: list[str]) -> Any:
    """Set threads, load the training data and the evaluation splits into ``args``; returns the data."""
    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_recipe(RECIPES / f"{methods[0]}_{args.data}.yaml")
    data = load_training_data(base)
    args.eval_data = load_eval_data(base, data)
    args.eval_config = replace(EvalConfig(), few_shot=(), max_train=args.max_eval_train)
    return data


def _timed_row(method: str, args: argparse.Namespace, data: Any) -> dict[str, Any]:
    """:func:`train_one`'s row plus its wall time with calibration and evaluation."""
    began = time.perf_counter()
    return {**train_one(method, args, data), "wall_s": time.perf_counter() - began}


def _train_in_worker(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """One method in a worker process (which loads its own copy of the data)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return _timed_row(method, args, prepare(args, [method]))


def train_all(methods: list[str], args: argparse.Namespace, data: Any) -> list[dict[str, Any]]:
    """Every method's row, in ``methods`` order; ``args.jobs`` at a time in worker processes when > 1."""
    def report(row: dict[str, Any]) -> None:
        print(f"{row['method']}: {row['steps']} steps in {row['train_s']:.0f} s, k-NN {row.get('knn', 0):.4f} "
              f"({row['wall_s']:.0f} s with calibration and evaluation)", flush=True)

    rows: dict[str, dict[str, Any]] = {}
    if args.jobs == 1:
        for method in methods:
            rows[method] = _timed_row(method, args, data)
            report(rows[method])
    else:
        worker_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in ("eval_data",)})
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_train_in_worker, m, worker_args): m for m in methods}
            for future in as_completed(futures):
                rows[futures[future]] = future.result()
                report(rows[futures[future]])
    return [rows[m] for m in methods]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.jobs > 1 and args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    data = prepare(args, methods)
    if args.shipped:
        names = [n.strip() for n in args.shipped.split(",") if n.strip()]
        print(f"# ssl_quality: shipped entries {', '.join(names)} as served, {torch.get_num_threads()} torch threads, "
              f"{os.cpu_count()} CPUs; eval on {args.eval_data[1].name}/{args.eval_data[1].split} "
              f"({len(args.eval_data[1])} images), bank/probe on {len(args.eval_data[0])}")
        rows = shipped_rows(names, args) + baseline_rows({}, args, data)
        print(table(rows))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "shipped.json").write_text(json.dumps(rows, indent=2, default=str))
        return
    print(f"# ssl_quality: {args.data}, {args.budget_s:.0f} s of training per method, {args.jobs} at a time with "
          f"{torch.get_num_threads()} torch threads each, {os.cpu_count()} CPUs; eval on {args.eval_data[1].name}/"
          f"{args.eval_data[1].split} ({len(args.eval_data[1])} images), bank/probe on {len(args.eval_data[0])}")
    rows = train_all(methods, args, data)
    archs: dict[str, Recipe] = {}
    for method in methods:
        recipe = load_recipe(RECIPES / f"{method}_{args.data}.yaml")
        archs.setdefault(backbone_label(recipe), recipe)
    rows += baseline_rows(archs, args, data)
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
