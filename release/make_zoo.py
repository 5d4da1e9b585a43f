"""``make zoo``: train, export and ship every model of ``training/recipes/zoo.yaml``, then the README table.

For each model, in the list's order: train it into a scratch registry (``runs/zoo/home``) under a
scratch name (``<name>-src``; the built-in name itself is reserved by the built-in root), export it to
ONNX (``sslzoo export``), measure its label efficiency for the card where asked
(``benchmarks.label_efficiency``), and ship it into the built-in root (:func:`release.ship.ship_entry`), which
records the recipe's sha256. A model whose shipped sha256 still matches is skipped, so an interrupted
run resumes where it stopped; ``--force`` redoes, ``--only NAME`` picks models. Every command's output
goes to ``runs/zoo/<name>.log``. At the end the zoo table is printed and written into the README.

The orchestrator knows nothing about the recipes' contents: a recipe is a file for ``sslzoo train
--recipe``, a builder is a command with ``{source}`` for the name to save under.

``--jobs N`` trains N models at once (each its own process with ``--threads`` torch threads, 1 by
default); export and ship still go one by one in the list's order, as each training finishes.
The thread count is fixed and recorded because float sums, and so the last digits of a fit, depend on it.

Run: ``python -m release.make_zoo [--only NAME] [--force] [--jobs N]`` (or ``make zoo ZOO_ARGS="--jobs 2"``).
It works on a checkout: its defaults are the repository's recipes, built-in root, README and ``runs/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from release import DEFAULT_BUDGET_MB
from release.ship import ship_entry
from release.zoo_table import builtin_entries, write_table, zoo_table
from zoo import ManifestError, Registry

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("make_zoo")


@dataclass(frozen=True)
class ZooModel:
    """One line of ``zoo.yaml``: a built-in name and how to make it."""

    name: str
    recipe: Path | None = None
    command: str | None = None
    inputs: tuple[Path, ...] = field(default_factory=tuple)
    beat_pixels: str | None = None  # a metric (knn_top1 or linear_top1) that must beat raw pixels to ship
    animate: tuple[Path, ...] = ()  # where the run's probe animation (`sslzoo plot animate`) is copied
    label_efficiency: str | None = None  # options of `benchmarks.label_efficiency`, run for the model card

    @property
    def source(self) -> str:
        """The scratch registry name it is trained under."""
        return f"{self.name}-src"

    def sha256(self) -> str:
        """What decides whether the shipped entry is current: the recipe file, or the command and its inputs."""
        digest = hashlib.sha256()
        if self.recipe is not None:
            digest.update(self.recipe.read_bytes())
        else:
            digest.update((self.command or "").encode())
            for path in self.inputs:
                digest.update(f"\0{path.name}\0".encode() + path.read_bytes())
        return digest.hexdigest()


def read_models(path: Path) -> list[ZooModel]:
    """Parse ``zoo.yaml``; paths are relative to the repository root."""
    raw = yaml.safe_load(path.read_text()) or {}
    models = []
    for item in raw.get("models") or []:
        unknown = set(item) - {"name", "recipe", "command", "inputs", "beat_pixels", "animate", "label_efficiency"}
        if unknown or "name" not in item or ("recipe" in item) == ("command" in item):
            raise SystemExit(f"{path}: each model needs a name and exactly one of recipe/command "
                             f"(got {sorted(item)})")
        models.append(ZooModel(
            name=str(item["name"]), recipe=REPO / item["recipe"] if "recipe" in item else None,
            command=item.get("command"), inputs=tuple(REPO / p for p in item.get("inputs") or []),
            beat_pixels=item.get("beat_pixels"), animate=tuple(REPO / p for p in item.get("animate") or []),
            label_efficiency=item.get("label_efficiency")))
    return models


def shipped_sha(root: Path, name: str) -> str | None:
    """The recipe sha256 the shipped ``name`` was made from, if it is shipped and intact."""
    for entry in builtin_entries(root):
        if entry.name == name:
            try:
                entry.verify()
            except ManifestError:
                return None
            shipped = entry.read_config().shipped or {}
            return (shipped.get("provenance") or {}).get("sha256")
    return None


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it (recorded in shipped configs)."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _sslzoo() -> str:
    """The ``sslzoo`` command of the interpreter running this script."""
    return str(Path(sys.executable).parent / "sslzoo")


def run_logged(args: Sequence[str], logfile: Path, env: dict[str, str]) -> None:
    """Run a command with its output appended to ``logfile``; a failure names the log."""
    with open(logfile, "a") as handle:
        handle.write(f"\n$ {shlex.join(args)}\n")
        handle.flush()
        code = subprocess.call(list(args), cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"`{shlex.join(args)}` failed with exit code {code}: see {logfile}")


def resumable(recipe_path: Path, out: Path, logfile: Path) -> bool:
    """Whether ``out`` holds a run of this recipe to resume (a killed ``make zoo`` goes on where it stopped).

    A run of another recipe is moved aside (``out.old-N``), not deleted, and training starts afresh.
    """
    from training.config import load_recipe
    from training.run import RECIPE_FILE, resume_conflicts, saved_recipe

    if not (out / RECIPE_FILE).is_file():
        return False
    conflicts = resume_conflicts(load_recipe(recipe_path), saved_recipe(out))
    if not conflicts:
        return True
    aside = next(out.with_name(f"{out.name}.old-{i}") for i in range(1, 10_000)
                 if not out.with_name(f"{out.name}.old-{i}").exists())
    out.rename(aside)
    with open(logfile, "a") as handle:
        handle.write(f"{out} was a run of another recipe ({', '.join(conflicts)} differ): moved to {aside}\n")
    return False


def pixel_baseline(dataset: str, split: str, metric: str, runs: Path) -> float:
    """Raw pixels' figure for ``metric`` on the dataset (the bar a shipped encoder must clear), cached in RUNS."""
    cache = runs / "pixel_baselines.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    key = f"{dataset}/{split}/{metric}"
    if key not in known:
        from training.config import EvalConfig
        from training.evaluate import evaluate_features, pixel_features
        from zoo.data import load_dataset

        config = EvalConfig(linear_probe=metric == "linear_top1", few_shot=(), alignment=False)
        figures = evaluate_features(pixel_features, load_dataset(dataset, "train"), load_dataset(dataset, split),
                                    config)
        known[key] = figures[metric]["value"]
        cache.write_text(json.dumps(known, indent=2))
    return float(known[key])


def pixel_gate(model: ZooModel, registry: Any, runs: Path) -> str | None:
    """Why the trained model must not ship (it does not beat raw pixels on its metric), or None."""
    if not model.beat_pixels:
        return None
    figure = registry.resolve(model.source).read_config().metrics.get(model.beat_pixels) or {}
    if "value" not in figure:
        return f"{model.name}: not shipped: the trained entry records no {model.beat_pixels}"
    bar = pixel_baseline(figure["dataset"], figure["split"], model.beat_pixels, runs)
    if figure["value"] > bar:
        log.info("%s: %s %.4f beats raw pixels' %.4f", model.name, model.beat_pixels, figure["value"], bar)
        return None
    return (f"{model.name}: NOT SHIPPED: {model.beat_pixels} {figure['value']:.4f} does not beat raw pixels' "
            f"{bar:.4f} on {figure['dataset']}/{figure['split']}")


def _unship(root: Path, name: str) -> None:
    """Remove a shipped model that its current recipe no longer produces."""
    folder = root / "models" / name
    if folder.is_dir():
        shutil.rmtree(folder)


@dataclass
class Trained:
    """What training one model left for the ship step: the sha256 it was trained from and its time."""

    sha: str
    seconds: float | None  # None under --ship-only for a builder: no run records its time


def run_training_seconds(out: Path) -> float:
    """The run's training time across all its sessions, as ``sslzoo train`` recorded it in ``result.json``.

    Timing the command instead would record seconds for a run that resumed finished or nearly finished.
    """
    return float(json.loads((out / "result.json").read_text())["training"]["seconds"])


def train_one(model: ZooModel, args: argparse.Namespace, env: dict[str, str]) -> Trained:
    """Train one model into the scratch home (a recipe resumes its run; a builder runs its command).

    Safe to run for several models at once: each writes only its own log, run folder and scratch name.
    """
    logfile = args.runs / f"{model.name}.log"
    sha = model.sha256()  # taken before training: an edit of the recipe meanwhile must not pass as shipped
    with open(logfile, "a" if args.ship_only else "w") as handle:
        handle.write(f"make zoo: {model.name} (sha256 {sha}, OMP_NUM_THREADS={env.get('OMP_NUM_THREADS')})"
                     f"{' --ship-only' if args.ship_only else ''}\n")
    registry = Registry(args.home, readonly_roots=(args.root,))
    if args.ship_only:
        if model.source not in registry.names():
            raise SystemExit(f"--ship-only: {args.home} holds no trained {model.source}; run without it")
        out = args.runs / "train" / model.name
        return Trained(sha, run_training_seconds(out) if (out / "result.json").is_file() else None)
    start = time.perf_counter()
    if model.source in registry.names():
        registry.delete(model.source)  # a fresh scratch entry: versions from older runs must not be shipped
    sslzoo = _sslzoo()
    if model.recipe is not None:
        out = args.runs / "train" / model.name
        command = [sslzoo, "train", "--recipe", str(model.recipe), "--name", model.source, "--out", str(out),
                   "--no-progress"]
        run_logged(command + (["--resume"] if resumable(model.recipe, out, logfile) else []), logfile, env)
        if model.animate:
            run_logged([sslzoo, "plot", "animate", str(out), "--out", str(model.animate[0])], logfile, env)
            for copy in model.animate[1:]:
                shutil.copyfile(model.animate[0], copy)
        return Trained(sha, run_training_seconds(out))
    command = shlex.split((model.command or "").format(source=model.source))
    if command and command[0] == "python":
        command[0] = sys.executable
    run_logged(command, logfile, env)
    return Trained(sha, time.perf_counter() - start)


def finish_one(model: ZooModel, trained: Trained, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Gate, export and ship a trained model; returns what the summary shows."""
    logfile = args.runs / f"{model.name}.log"
    registry = Registry(args.home, readonly_roots=(args.root,))
    start = time.perf_counter()
    if trained.seconds is not None:
        verdict = pixel_gate(model, registry, args.runs)
        if verdict is not None:
            with open(logfile, "a") as handle:
                handle.write(verdict + "\n")
            _unship(args.root, model.name)
            return {"name": model.name, "seconds": trained.seconds, "summary": verdict}
        run_logged([_sslzoo(), "export", model.source, "--no-int8"], logfile, env)
    measured = label_efficiency(model, args, env, logfile)
    result = ship_one(model, args, registry, trained, logfile, measured)
    return {"name": model.name, "seconds": (trained.seconds or 0.0) + time.perf_counter() - start,
            "summary": result}


def build_all(models: Sequence[ZooModel], args: argparse.Namespace, env: dict[str, str]) -> list[dict[str, Any]]:
    """Train up to ``args.jobs`` models at once; export and ship them one by one in the list's order.

    Shipping stays sequential and ordered because the size budget is spent in the list's order.
    """
    done: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        training = [pool.submit(train_one, model, args, env) for model in models]
        try:
            for model, future in zip(models, training, strict=True):
                trained = future.result()
                log.info("%s: trained%s; exporting and shipping", model.name,
                         f" in {trained.seconds:.0f} s" if trained.seconds is not None else "")
                done.append(finish_one(model, trained, args, env))
                log.info("%s: done in %.0f s\n%s", model.name, done[-1]["seconds"], done[-1]["summary"])
        except BaseException:
            for future in training:
                future.cancel()  # trainings not started yet; running ones finish and leave a checkpoint
            raise
    return done


def label_efficiency(model: ZooModel, args: argparse.Namespace, env: dict[str, str],
                     logfile: Path) -> dict[str, Any] | None:
    """Run ``benchmarks.label_efficiency`` on the trained scratch entry, for the model card (None if not asked).

    It runs on the scratch entry (fp32, before shipping) with the training's thread count, so a rebuild
    measures the same figures; the card names the command that reruns it on the shipped entry.
    """
    if not model.label_efficiency:
        return None
    options = shlex.split(model.label_efficiency)
    out = args.runs / f"{model.name}.label_efficiency.json"
    run_logged([sys.executable, "-m", "benchmarks.label_efficiency", "--encoders", model.source,
                "--threads", str(args.threads), "--json", str(out), *options], logfile, env)
    measured = json.loads(out.read_text())
    for row in measured["rows"]:
        row["encoder"] = model.name if row["encoder"] == model.source else row["encoder"]
    shown = shlex.join(["python", "-m", "benchmarks.label_efficiency", "--encoders", model.name, *options])
    return {**measured, "command": f"OMP_NUM_THREADS={args.threads} {shown} --threads {args.threads}"}


def ship_one(model: ZooModel, args: argparse.Namespace, registry: Any, trained: Trained, logfile: Path,
             measured: dict[str, Any] | None = None) -> str:
    """Ship the trained and exported scratch entry; returns the ship summary."""
    provenance = {"recipe": _shown(model.recipe) if model.recipe else None,
                  "command": model.command, "sha256": trained.sha,
                  "train_seconds": round(trained.seconds, 1) if trained.seconds is not None else None,
                  "train_threads": args.threads, "made_by": "make zoo"}
    result = ship_entry(model.source, model.name, root=args.root, registry=registry, provenance=provenance,
                        budget_mb=args.budget_mb, label_efficiency=measured)
    with open(logfile, "a") as handle:
        handle.write(result.summary() + "\n")
    return result.summary()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (paths default to the repository's)."""
    parser = argparse.ArgumentParser(prog="python -m release.make_zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "training" / "recipes" / "zoo.yaml")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="build only these (repeatable)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the shipped sha256 matches")
    parser.add_argument("--ship-only", action="store_true",
                        help="ship what an earlier run trained and exported into the scratch home "
                             "(after a failed ship)")
    parser.add_argument("--root", type=Path, default=REPO / "zoo" / "builtin", help="built-in root to ship into")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "zoo", help="logs and training runs")
    parser.add_argument("--home", type=Path, help="scratch SSLZOO_HOME (default: RUNS/home)")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md", help="README to write the table into")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    parser.add_argument("--budget-mb", type=float, default=DEFAULT_BUDGET_MB,
                        help="size limit of the whole built-in root")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models trained at once (each in its own process); shipping stays in order")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per training (default 1, what the shipped models were trained with; "
                             "more is faster but changes the last bits); recorded in the shipped provenance")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build what is out of date, then print (and write) the zoo table."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    args.home = (args.home or args.runs / "home").resolve()
    args.root, args.runs = args.root.resolve(), args.runs.resolve()
    args.runs.mkdir(parents=True, exist_ok=True)
    os.environ["SSLZOO_HOME"] = str(args.home)  # ship's probe data and the subprocesses use the scratch home
    if args.jobs < 1 or args.threads < 1:
        raise SystemExit("--jobs and --threads must be at least 1")
    env = {**os.environ, "SSLZOO_HOME": str(args.home), "OMP_NUM_THREADS": str(args.threads)}
    models = read_models(args.config)
    unknown = set(args.only) - {m.name for m in models}
    if unknown:
        raise SystemExit(f"--only {sorted(unknown)}: not in {args.config}")
    todo = []
    for model in models:
        if args.only and model.name not in args.only:
            continue
        if not args.force and shipped_sha(args.root, model.name) == model.sha256():
            log.info("%s: shipped entry matches its recipe (sha256 %s…): skipped", model.name, model.sha256()[:12])
            continue
        log.info("%s: to build (log: %s)", model.name, args.runs / f"{model.name}.log")
        todo.append(model)
    start = time.perf_counter()
    build_all(todo, args, env)
    if todo:
        log.info("built %d model(s) in %.0f s (%d at once, %d threads each)", len(todo),
                 time.perf_counter() - start, args.jobs, args.threads)
    table = zoo_table(args.root) if args.no_readme else write_table(args.readme, args.root)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
