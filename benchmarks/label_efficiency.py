"""With 1 % and 10 % of Fashion-MNIST's labels, is the zoo's self-supervised pre-training worth it?

    python -m benchmarks.label_efficiency                        # all of it (see the header it prints)
    python -m benchmarks.label_efficiency --seeds 0 1 2 --lite0-test 2000
    python -m benchmarks.label_efficiency --tiny                 # a smoke run: a few dozen images, a few steps
    python -m benchmarks.label_efficiency --lr-grid 1e-4 3e-4 1e-3 3e-3   # (b) and (c) each pick their lr
    python -m benchmarks.label_efficiency --encoders simclr --json runs/simclr.json  # also as data (model cards)

The labelled subsets are class-balanced and seeded (``--fractions`` of the train split; one subset per
seed, the median over seeds is reported). For every shipped SSL image encoder trained on Fashion-MNIST
(``--encoders``) the table has

* (a) the shipped encoder frozen + a linear probe (logistic regression on its embeddings, as the zoo's
  ``linear_top1``; its inverse regularisation ``C`` is picked on a validation split carved from the
  labelled subset, then the probe is refitted on the whole subset: the test split is only scored);
* (b) the shipped encoder fine-tuned end to end with a linear head on its pooled (pre-normalisation)
  features, cross-entropy;
* (c) the same architecture from random init (built from the entry's config), trained as (b): the same
  steps, batch, optimiser, schedule and augmentations, so (b) − (c) is what pre-training buys (with
  ``--lr-grid`` each (b) and (c) run picks its learning rate by the same rule on a validation fifth of its
  labels: a shared fixed lr can favour either side);

and, once per subset, (d) raw pixels + the same probe and (e) ImageNet-supervised EfficientNet-Lite0
pooled features (224 px, its own preprocessing) + the same probe. Lite0 runs at tens of images per
second on CPU, so its features are cached on disk by content and ``--lite0-test`` may limit its test
images (the table says so). The target line is the issue's: SSL pre-training (the better of (a), (b))
ahead of (c) by at least 5 points at 1 %.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import zoo
from training.clip.features import cached, trunk_digest
from training.evaluate import embed_images, linear_probe_accuracy, pixel_features
from training.parts.views import BatchViews, ViewConfig
from zoo.data import load_dataset
from zoo.encoders import ImageEncoder
from zoo.preprocess import preprocess_uint8
from zoo.pretrained import efficientnet_lite0_encoder

PROBE_C = (0.01, 0.1, 1.0, 10.0)
TARGET_POINTS = 5.0


@dataclass(frozen=True)
class Budget:
    """One training recipe, shared by fine-tuning (b) and from-scratch (c) so their gap is pre-training's."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    crop_scale: tuple[float, float] = (0.5, 1.0)
    hflip_p: float = 0.5
    lr_grid: tuple[float, ...] = ()  # if set, each (b) and (c) run picks its own lr from these on validation

    def describe_lr(self) -> str:
        """How the learning rate is set: one for every run, or picked per run by the same rule."""
        if not self.lr_grid:
            return f"AdamW lr {self.lr:g} (cosine to 0)"
        return (f"AdamW (cosine to 0), lr picked per run from {list(self.lr_grid)} on a class-balanced fifth of "
                "the labelled subset and refitted on all of it")

    def views(self, size: tuple[int, int]) -> ViewConfig:
        """Random-resized crop + horizontal flip only (no colour jitter on grey clothes)."""
        return ViewConfig(size=size, scale=self.crop_scale, hflip_p=self.hflip_p, jitter_p=0.0, grayscale_p=0.0)

    def describe(self) -> str:
        """The header's budget line."""
        return (f"{self.steps} steps × batch {self.batch_size}, {self.describe_lr()}, "
                f"wd {self.weight_decay:g}, augmentation random-resized-crop scale {self.crop_scale} "
                f"+ hflip p={self.hflip_p}")


@dataclass
class Row:
    """One table row: a method (of one encoder, or a baseline) at one label count, its test top-1 per seed."""

    method: str
    labels: int
    scores: list[float] = field(default_factory=list)
    note: str = ""
    encoder: str = ""

    @property
    def name(self) -> str:
        """What the table shows: the encoder's name before its method, if it has one."""
        return f"{self.encoder} {self.method}" if self.encoder else self.method

    @property
    def median(self) -> float:
        """Median over seeds."""
        return statistics.median(self.scores)


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices, ``n / classes`` from each class, drawn with ``seed`` (sorted).

    Each class's images are shuffled once per seed and the first ``n / classes`` taken, so with one seed
    a smaller subset lies inside a larger one (the 1 % labels are part of the 10 %).
    """
    classes = np.unique(labels)
    if n % len(classes) or n < len(classes):
        raise SystemExit(f"{n} labels do not split evenly over {len(classes)} classes")
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[: n // len(classes)] for c in classes]
    return np.sort(np.concatenate(picked))


def validation_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val) indices of a labelled subset: a class-balanced fifth held out for choosing settings."""
    val = balanced_subset(labels, len(labels) // 5 // 10 * 10 or 10, seed + 1000)
    return np.setdiff1d(np.arange(len(labels)), val), val


def probe(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
          seed: int) -> tuple[float, float]:
    """Linear-probe test top-1 and the ``C`` picked on a class-balanced fifth of the labelled subset."""
    fit, val = validation_split(train_labels, seed)
    val_scores = [linear_probe_accuracy(train[fit], train_labels[fit], train[val], train_labels[val], c=c)
                  for c in PROBE_C]
    c = PROBE_C[int(np.argmax(val_scores))]
    return linear_probe_accuracy(train, train_labels, test, test_labels, c=c), c


class Classifier(nn.Module):
    """An encoder's pooled features (before the contract's L2 normalisation) → class logits."""

    def __init__(self, encoder: ImageEncoder, classes: int) -> None:
        super().__init__()
        self.backbone = encoder.backbone
        self.head = nn.Linear(encoder.embed_dim, classes)

    def forward(self, pixels: Tensor) -> Tensor:
        """Standardised pixels → logits."""
        features: Tensor = self.backbone(pixels)
        return self.head(features)


def train_classifier(encoder: ImageEncoder, images: np.ndarray, labels: np.ndarray, budget: Budget,
                     seed: int, lr: float) -> Classifier:
    """End-to-end cross-entropy training of ``encoder`` + a new linear head under ``budget``, at ``lr``."""
    torch.manual_seed(seed)
    model = Classifier(encoder, int(labels.max()) + 1).train()
    views = BatchViews([budget.views(encoder.config.preprocess.input_size[1:])], encoder.config.preprocess)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=budget.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=budget.steps)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    targets = torch.from_numpy(labels).long()
    for _ in range(budget.steps):
        batch = torch.randint(len(images), (min(budget.batch_size, len(images)),), generator=generator)
        (view,) = views(pixels[batch], generator)
        loss = F.cross_entropy(model(view), targets[batch])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval()


def fit_classifier(start: Callable[[], ImageEncoder], images: np.ndarray, labels: np.ndarray, budget: Budget,
                   seed: int) -> tuple[Classifier, ImageEncoder, float]:
    """Train a classifier from ``start()``; with ``budget.lr_grid``, at the lr that scores best on validation.

    Each candidate trains a fresh ``start()`` on four fifths of the labels and is scored on the held-out
    fifth (:func:`validation_split`, the probe's); the winner is retrained on all of them. (b) and (c) go
    through the same rule, so neither gets a learning rate the other could not have picked.
    """
    lr = budget.lr
    if budget.lr_grid:
        fit, val = validation_split(labels, seed)
        scores = []
        for candidate in budget.lr_grid:
            encoder = start()
            model = train_classifier(encoder, images[fit], labels[fit], budget, seed, candidate)
            scores.append(classifier_accuracy(model, encoder, images[val], labels[val]))
        lr = budget.lr_grid[int(np.argmax(scores))]
    encoder = start()
    return train_classifier(encoder, images, labels, budget, seed, lr), encoder, lr


@torch.inference_mode()
def classifier_accuracy(model: Classifier, encoder: ImageEncoder, images: np.ndarray, labels: np.ndarray,
                        batch_size: int = 500) -> float:
    """Top-1 of ``model`` on uint8 images through the encoder's own preprocessing (no augmentation)."""
    hits = 0
    for start in range(0, len(images), batch_size):
        pixels = torch.from_numpy(preprocess_uint8(images[start : start + batch_size], encoder.config.preprocess))
        hits += int((model(pixels).argmax(1).numpy() == labels[start : start + batch_size]).sum())
    return hits / len(images)


def lite0_features(encoder: ImageEncoder, images: np.ndarray, label: str) -> np.ndarray:
    """Lite0's pooled features of ``images``, from the on-disk cache when the same trunk saw the same bytes."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    key = [trunk_digest(encoder.backbone, encoder.config.preprocess), f"label-efficiency {label}", digest,
           str(images.shape)]
    return cached(key, lambda: torch.from_numpy(embed_images(encoder, images, batch_size=64))).numpy()


@dataclass
class Setting:
    """What every method of one run sees."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    lite0_test: int
    budget: Budget


def encoder_rows(name: str, setting: Setting, counts: Sequence[int], seeds: Sequence[int]) -> list[Row]:
    """Rows (a), (b), (c) of one shipped encoder at each label count."""
    shipped: ImageEncoder = zoo.load(name)
    test = embed_images(shipped, setting.test_images)
    rows = []
    for n in counts:
        frozen, tuned, scratch = (Row(method, n, encoder=name) for method in
                                  ("(a) frozen + linear", "(b) fine-tuned", "(c) same arch from scratch"))
        cs: list[float] = []
        tuned_lrs: list[float] = []
        scratch_lrs: list[float] = []
        for seed in seeds:
            pick = balanced_subset(setting.train_labels, n, seed)
            images, labels = setting.train_images[pick], setting.train_labels[pick]
            score, c = probe(embed_images(shipped, images), labels, test, setting.test_labels, seed)
            frozen.scores.append(score)
            cs.append(c)
            for row, start, picked in ((tuned, partial(zoo.load, name), tuned_lrs),
                                       (scratch, partial(random_init, shipped, seed), scratch_lrs)):
                model, encoder, lr = fit_classifier(start, images, labels, setting.budget, seed)
                row.scores.append(classifier_accuracy(model, encoder, setting.test_images, setting.test_labels))
                picked.append(lr)
        frozen.note = f"C picked on val: {cs}"
        if setting.budget.lr_grid:
            tuned.note, scratch.note = (f"lr picked on val: {', '.join(f'{lr:g}' for lr in picked)}"
                                        for picked in (tuned_lrs, scratch_lrs))
        rows += [frozen, tuned, scratch]
        log_rows([frozen, tuned, scratch])
    return rows


def random_init(encoder: ImageEncoder, seed: int) -> ImageEncoder:
    """The entry's architecture and contract (built from its config) with fresh random weights."""
    torch.manual_seed(seed)
    return ImageEncoder(encoder.config)


def baseline_rows(setting: Setting, counts: Sequence[int], seeds: Sequence[int]) -> list[Row]:
    """Rows (d) raw pixels + linear and (e) Lite0 features + linear at each label count."""
    lite0 = efficientnet_lite0_encoder().eval()
    test_n = setting.lite0_test
    lite0_test = lite0_features(lite0, setting.test_images[:test_n], "test")
    pixels_test = pixel_features(setting.test_images)
    largest = {seed: balanced_subset(setting.train_labels, max(counts), seed) for seed in seeds}
    lite0_train = {seed: lite0_features(lite0, setting.train_images[pick], f"train seed {seed}")
                   for seed, pick in largest.items()}
    rows = []
    for n in counts:
        pixels, imagenet = Row("(d) raw pixels + linear", n), Row("(e) EfficientNet-Lite0 ImageNet + linear", n)
        if test_n < len(setting.test_images):
            imagenet.note = f"first {test_n} test images only"
        for seed in seeds:
            pick = balanced_subset(setting.train_labels, n, seed)
            images, labels = setting.train_images[pick], setting.train_labels[pick]
            pixels.scores.append(probe(pixel_features(images), labels, pixels_test, setting.test_labels, seed)[0])
            if not np.isin(pick, largest[seed]).all():
                raise AssertionError("balanced_subset must nest smaller subsets in larger ones")
            train = lite0_train[seed][np.searchsorted(largest[seed], pick)]
            imagenet.scores.append(probe(train, labels, lite0_test, setting.test_labels[:test_n], seed)[0])
        rows += [pixels, imagenet]
        log_rows([pixels, imagenet])
    return rows


def log_rows(rows: list[Row]) -> None:
    """Progress lines, so a long run that is stopped still shows what it measured."""
    for row in rows:
        print(f"# {time.strftime('%H:%M:%S')} {row.name} at {row.labels} labels: "
              f"{' '.join(f'{s * 100:.2f}' for s in row.scores)}", flush=True)


def print_table(rows: list[Row], budget: Budget, seeds: Sequence[int]) -> None:
    """The markdown table, one row per method × label count."""
    print("| method | labels | top-1 test (median) | per seed | seeds / budget |\n|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: r.labels):
        trained = "(b)" in row.method or "(c)" in row.method
        setup = f"seeds {list(seeds)}" + (f"; {budget.steps} steps × {budget.batch_size}" if trained else "")
        per_seed = " ".join(f"{s * 100:.2f}" for s in row.scores)
        note = f"; {row.note}" if row.note else ""
        print(f"| {row.name} | {row.labels} | {row.median * 100:.2f} | {per_seed} | {setup}{note} |")


def print_gaps(rows: list[Row], encoders: Sequence[str], counts: Sequence[int]) -> None:
    """SSL − (c) per encoder and label count, then the issue's target line at the smallest count."""
    score: Callable[[str, int], float] = lambda method, n: next(  # noqa: E731
        r.median for r in rows if r.name == method and r.labels == n) * 100
    best: dict[str, float] = {}
    for name in encoders:
        for n in counts:
            scratch = score(f"{name} (c) same arch from scratch", n)
            frozen = score(f"{name} (a) frozen + linear", n) - scratch
            tuned = score(f"{name} (b) fine-tuned", n) - scratch
            print(f"gap {name} at {n} labels: (a) − (c) {frozen:+.2f} points, (b) − (c) {tuned:+.2f} points")
            if n == min(counts):
                best[name] = max(frozen, tuned)
    leader = max(best, key=best.__getitem__)
    status = "met" if best[leader] >= TARGET_POINTS else "MISSED"
    figures = ", ".join(f"{name} {gap:+.2f}" for name, gap in best.items())
    print(f"Target: SSL pre-training ahead of (c) by ≥ {TARGET_POINTS:g} points at {min(counts)} labels: {status} "
          f"(best of (a)/(b) minus (c): {figures})")


def write_json(path: Path, rows: list[Row], header: list[str]) -> None:
    """The run as data: what ``make zoo`` puts in a model card (``zoo.card``), one record per row."""
    path.write_text(json.dumps({"header": header, "rows": [
        {"encoder": r.encoder, "method": r.method, "labels": r.labels, "top1": r.median, "per_seed": r.scores,
         "note": r.note} for r in sorted(rows, key=lambda r: r.labels)]}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["simclr", "dino", "mae"])
    parser.add_argument("--labels", type=int, nargs="+", default=[600, 6000], help="labelled train images")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one labelled subset per seed")
    parser.add_argument("--test", type=int, default=None, help="first N test images (default all 10,000)")
    parser.add_argument("--lite0-test", type=int, default=None, help="first N test images for (e) only")
    parser.add_argument("--steps", type=int, default=Budget.steps, help="training steps of (b) and (c)")
    parser.add_argument("--batch-size", type=int, default=Budget.batch_size)
    parser.add_argument("--lr", type=float, default=Budget.lr)
    parser.add_argument("--lr-grid", type=float, nargs="+", default=[], metavar="LR",
                        help="(b) and (c) each pick their lr from these on a fifth of the labels (default: --lr)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="smoke run: 20/40 labels, 100 test images, 3 steps")
    parser.add_argument("--json", type=Path, help="also write the rows and the header to this file")
    args = parser.parse_args()
    if args.tiny:
        args.labels, args.test, args.steps, args.lite0_test = [20, 40], 100, 3, 8
    torch.set_num_threads(args.threads)
    budget = Budget(steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_grid=tuple(args.lr_grid))
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    n_test = min(args.test or len(test), len(test))
    setting = Setting(train.images, np.asarray(train.labels), test.images[:n_test],
                      np.asarray(test.labels)[:n_test], min(args.lite0_test or n_test, n_test), budget)
    header = [f"fashion-mnist, {args.labels} class-balanced train labels, seeds {args.seeds}, "
              f"{n_test} test images ((e): {setting.lite0_test}), torch threads {args.threads}",
              f"(b)/(c) budget: {budget.describe()}; linear head on pooled features, cross-entropy",
              f"(a)/(d)/(e) probe: logistic regression on standardised features, C from {list(PROBE_C)} picked "
              "on a class-balanced fifth of the labelled subset, refitted on all of it"]
    print(f"# label_efficiency: {header[0]}")
    print("\n".join(f"# {line}" for line in header[1:]), flush=True)
    rows = [row for name in args.encoders for row in encoder_rows(name, setting, args.labels, args.seeds)]
    rows += baseline_rows(setting, args.labels, args.seeds)
    print_table(rows, budget, args.seeds)
    print_gaps(rows, args.encoders, args.labels)
    if args.json:
        write_json(args.json, rows, header)


if __name__ == "__main__":
    main()
