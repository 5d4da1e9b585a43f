"""Planted bugs, each run against the tests that claim to catch it: ``make mutants``.

A test's name is a promise ("learns", "resumes exactly", "written when it passes"); the way to know it
keeps it is to break the code it guards and watch it fail. Each mutant below is one small edit of the
kind a tired person makes (a flipped sign, a skipped load, a no-op augmentation). The runner copies the
working tree to a scratch folder per mutant, applies the edit there (never here), runs the named tests
with that copy first on ``PYTHONPATH``, and reports the mutant *killed* when they fail. A mutant that
survives is a blind spot: the run exits 1.

    python scripts/mutants.py                 # every mutant
    python scripts/mutants.py --only simclr-loss-sign --keep   # one, keeping its scratch copy
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    """One planted bug: replace ``original`` (which must occur exactly once) in ``path`` by ``planted``."""

    name: str
    path: str
    original: str
    planted: str
    tests: tuple[str, ...]  # pytest node ids or ``file -k expression`` strings

    def apply(self, root: Path) -> None:
        """Plant the bug in the copy at ``root``."""
        target = root / self.path
        text = target.read_text()
        if text.count(self.original) != 1:
            raise SystemExit(f"{self.name}: {self.path} holds {text.count(self.original)} copies of the original "
                             "line (need exactly 1): update the mutant")
        target.write_text(text.replace(self.original, self.planted))


MUTANTS = (
    Mutant("simclr-loss-sign", "training/methods/simclr.py",
           "loss = self.criterion(z0, z1)", "loss = -self.criterion(z0, z1)",
           ("tests/training/test_methods.py -k objective",)),
    Mutant("byol-loss-sign", "training/methods/byol.py",
           "loss = self.criterion(p1, t2) + self.criterion(p2, t1)",
           "loss = -(self.criterion(p1, t2) + self.criterion(p2, t1))",
           ("tests/training/test_methods.py -k objective",)),
    Mutant("resume-ignores-checkpoint", "training/trainer.py",
           "if resume and checkpoint is not None:", "if False and resume and checkpoint is not None:",
           ("tests/training/test_trainer.py -k resume",)),
    Mutant("no-optimiser-step", "training/trainer.py",
           "            self.scaler.step(self.optimizer)  # an fp16 scaler skips non-finite steps itself",
           "            pass",
           ("tests/training/test_trainer.py::test_gradient_accumulation_equals_one_large_batch",
            "tests/training/test_ddp.py -k simclr")),
    Mutant("int8-never-kept", "export/pipeline.py",
           "    if not report.passed:\n        path.unlink(missing_ok=True)",
           "    if True:\n        path.unlink(missing_ok=True)",
           ("tests/export/test_int8.py",)),
    Mutant("int8-precision-ignored", "export/runtime.py",
           'IMAGE_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}',
           'IMAGE_FILES = {"fp32": "model.onnx", "int8": "model.onnx"}',
           ("tests/export/test_int8.py",)),
    Mutant("pixel-gate-open", "release/make_zoo.py",
           'if figure["value"] > bar:', "if True:",
           ("tests/release/test_make_zoo.py::test_pixel_gate_refuses_what_does_not_beat_raw_pixels",)),
    Mutant("few-shot-scored-on-its-shots", "training/evaluate.py",
           "scores.append(model.score(unit_test, test_labels))",
           "scores.append(model.score(unit_train[picked], train_labels[picked]))",
           ("tests/training/test_evaluate.py",)),
    Mutant("hue-no-op", "training/parts/views.py",
           "x = _hue_rotate(x, hue).clamp_(0.0, 255.0)", "x = x.clamp_(0.0, 255.0)",
           ("tests/training/test_parts.py -k hue",)),
    Mutant("greyscale-keeps-colour", "training/parts/views.py",
           'x = torch.where(_per_sample(p.cat("grey"), x).bool(), _grey(x).expand_as(x), x)', "x = x",
           ("tests/training/test_parts.py -k grey",)),
)


def scratch_copy(into: Path) -> Path:
    """The working tree's files (tracked and untracked, ignored ones left out) copied under ``into``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    root = into / "tree"
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return root


def pytest_args(spec: str) -> list[str]:
    """``"file -k expr"`` → ``["file", "-k", "expr"]``; a node id stays one argument."""
    path, _, expression = spec.partition(" -k ")
    return [path, "-k", expression] if expression else [path]


def run_mutant(mutant: Mutant, keep: bool) -> tuple[bool, float, str]:
    """Plant the mutant in a scratch copy and run its tests; returns (killed, seconds, what failed)."""
    folder = Path(tempfile.mkdtemp(prefix=f"sslzoo-mutant-{mutant.name}-"))
    start = time.perf_counter()
    try:
        root = scratch_copy(folder)
        mutant.apply(root)
        env = {**os.environ, "PYTHONPATH": str(root), "SSLZOO_NO_SKIPS": "0"}
        killed, last = False, ""
        for spec in mutant.tests:
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                   *pytest_args(spec)], cwd=root, env=env, capture_output=True, text=True,
                                  check=False)
            lines = done.stdout.strip().splitlines()
            failed = [line.split(" - ")[0].removeprefix("FAILED ") for line in lines if line.startswith("FAILED ")]
            last = ", ".join(failed) or (lines or [""])[-1]
            if done.returncode not in (0, 1):  # 5: no test collected, 2-4: errors: the mutant list is stale
                raise SystemExit(f"{mutant.name}: `pytest {spec}` exited {done.returncode}: {last}")
            if done.returncode == 1:
                killed = True
                break
        return killed, time.perf_counter() - start, last
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen mutants and print one table row each; exit 1 if any survived."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        raise SystemExit(f"unknown mutant; known: {', '.join(m.name for m in MUTANTS)}")
    print("| mutant | planted in | tests run | result | s | failed test (or pytest's last line) |\n"
          "|---|---|---|---|---|---|", flush=True)
    survivors = []
    for mutant in chosen:
        killed, seconds, last = run_mutant(mutant, args.keep)
        if not killed:
            survivors.append(mutant.name)
        print(f"| {mutant.name} | `{mutant.path}` | {'; '.join(f'`{t}`' for t in mutant.tests)} | "
              f"{'killed' if killed else 'SURVIVED'} | {seconds:.0f} | {last} |", flush=True)
    print(f"{len(chosen) - len(survivors)} of {len(chosen)} planted bugs caught"
          + (f"; survived: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
