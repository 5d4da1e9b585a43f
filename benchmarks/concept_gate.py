"""Choosing the concept head's gate on validation splits of the default CLIP's own training data.

    python -m benchmarks.concept_gate                    # the table and the gate the rule picks
    python -m benchmarks.concept_gate --candidates top1:0.5 agreement:0.3    # other gates
    python -m benchmarks.concept_gate --split-rule images --seeds 1 2 3 4 5 6   # the mean over six splits

The concept head (:mod:`zoo.concepts`) lets Lite0's ImageNet classifier speak for an image as far as
it is sure; below the gate it has no say. Photographs are where it helps; no photograph a benchmark
reports may be used to choose anything, so the gate is chosen to cost the drawing domains nothing
measurable on validation data, and, within that, to serve the validation photographs best (without
them: as low as that allows):

* ``emoji`` train families split again (a seeded ``--val-fraction`` of the *train* families is held
  out of the fit; the emoji ``heldout`` split that the benchmarks report is never loaded).
  ``--split-rule families`` (the default, and every table up to docs/clip-default-experiments.md §8)
  holds out that share of the families, each equally likely; ``--split-rule images`` draws them as
  ``heldout`` was drawn (families in a seeded order while their images stay within the share);
* ``shapes`` images from another random stream of the train generator (each of ``--seeds`` picks both);
* ``clipart`` ``val`` folders (:data:`zoo.data.clipart.VALIDATION`), drawings of nameable things:
  the nearest thing to photographs that may be looked at.

The projection is fitted exactly as :func:`training.clip.default.fit_default` fits the default, on
``shapes`` train and the remaining emoji families; each gate then reads the same cached trunk features.
``gate 1.0`` is the linear head alone (the classifier never has a say).

A candidate is ``STATISTIC:GATE``: what the gate reads (``top1``, the classifier's top probability, or
``agreement``, how far its top classes agree on one meaning: :class:`zoo.config.ConceptHeadConfig`) and
the threshold. With ``make photos`` run, the ``photos`` ``val`` set (28 real photographs, one per label,
from a pip wheel; :mod:`zoo.data.photos`) is scored too: the domain the head is for, never reported by
a benchmark row. The rules, fixed before the tables were read:

* without photos (every table up to docs/clip-default-experiments.md §11): the lowest ``top1`` gate
  whose emoji macro top-1 and mean shapes top-1 (means over the splits) are each within
  ``--tolerance`` points of the linear head's;
* with photos: among the candidates within that tolerance, the one with the highest photos top-1;
  ties go to the higher emoji macro.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from training.clip.default import EMOJI_SIZE, fit_default, with_concept_head
from training.clip.features import cached_image_features
from training.clip.locked_fit import image_trunk_and_head
from training.clip.quality import EMOJI_TEMPLATES, shapes_tasks
from zoo import zeroshot as zs
from zoo.clip import ClipModel
from zoo.concepts import concept_head
from zoo.config import GATE_STATISTICS
from zoo.data import ImageDataset, dataset_available, load_dataset
from zoo.data.emoji_catalog import describe, families_within
from zoo.naming import NameRegistry

K = TypeVar("K")  # what a sweep names its candidates by: a gate, a weight, a list of views
CANDIDATES = ("top1:0", "top1:0.3", "top1:0.5", "top1:0.7", "top1:0.9",
              "agreement:0.2", "agreement:0.3", "agreement:0.4", "agreement:0.5", "agreement:0.6")
LINEAR = "linear head"
log = logging.getLogger("concept_gate")


@dataclass(frozen=True)
class ValidationSets:
    """What the gate is chosen on, and what the projection is fitted on."""

    fit: list[ImageDataset]
    emoji: ImageDataset
    shapes: ImageDataset
    clipart: ImageDataset
    photos: ImageDataset | None = None  # the ``photos`` ``val`` set, when ``make photos`` has fetched it

    @property
    def scored(self) -> list[ImageDataset]:
        """Every set a candidate is scored on."""
        return [self.emoji, self.shapes, self.clipart, *([self.photos] if self.photos is not None else [])]


SplitRule = Callable[[list[str], float, int], set[str]]
SPLIT_RULES: NameRegistry[SplitRule] = NameRegistry("validation split rule")


@SPLIT_RULES.register("families")
def uniform_families(image_families: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded ``fraction`` of the families, each equally likely: every table of the lab notes up to §8."""
    names = sorted(set(image_families))
    rng = np.random.default_rng(seed)
    return set(rng.choice(names, size=max(1, round(fraction * len(names))), replace=False))


SPLIT_RULES.add("images", families_within, origin=families_within)  # the rule that drew the `heldout` split


def validation_families(emoji: ImageDataset, fraction: float, seed: int, rule: str = "families") -> np.ndarray:
    """Boolean mask of the ``emoji`` images whose concept family the split ``rule`` holds out."""
    families = [m["family"] for m in emoji.meta or []]
    held = SPLIT_RULES.get(rule)(families, fraction, seed)
    return np.array([f in held for f in families])


def split_families(emoji: ImageDataset, fraction: float, seed: int,
                   rule: str = "families") -> tuple[ImageDataset, ImageDataset]:
    """``emoji`` train cut by whole concept families: (fit, validation), the validation labels re-indexed."""
    is_val = validation_families(emoji, fraction, seed, rule)
    fit, val = emoji.subset(np.flatnonzero(~is_val)), emoji.subset(np.flatnonzero(is_val))
    labels = [] if val.labels is None else val.labels.tolist()
    concepts = sorted(set(labels))
    index = {c: i for i, c in enumerate(concepts)}
    relabelled = ImageDataset(name=val.name, split="val", images=val.images,
                              labels=np.array([index[c] for c in labels], dtype=np.int64),
                              class_names=[(emoji.class_names or [])[c] for c in concepts], captions=val.captions,
                              license=val.license, source=val.source, meta=val.meta)
    return fit, relabelled


def validation_parser(doc: str | None, tolerance_help: str,
                      seeds: Sequence[int] = (1,)) -> argparse.ArgumentParser:
    """The options every benchmark that chooses a fit option on this harness shares (each adds its own)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds),
                        help="each picks the held-out emoji families and the shapes validation stream")
    parser.add_argument("--val-fraction", type=float, default=0.17, help="emoji train families held out")
    parser.add_argument("--shapes-n", type=int, default=600)
    parser.add_argument("--tolerance", type=float, default=0.5, help=tolerance_help)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--split-rule", choices=SPLIT_RULES.names(), default="families",
                        help="how emoji validation families are drawn (images: as the held-out split was)")
    return parser


def parse_validation_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, then set up what every sweep on this harness runs with: INFO logging and the torch threads."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    return args


def load_sets(val_fraction: float, shapes_n: int, seed: int, rule: str = "families") -> ValidationSets:
    """The default's training sets with emoji families held out, and the three validation sets.

    ``seed`` picks both the held-out families (drawn by ``rule``) and the shapes validation stream.
    """
    emoji_fit, emoji_val = split_families(load_dataset("emoji", "train", image_size=EMOJI_SIZE, seed=0),
                                          val_fraction, seed, rule)
    shapes_fit = load_dataset("shapes", "train", n=3000, image_size=32, seed=0)
    shapes_val = load_dataset("shapes", "train", n=shapes_n, image_size=32, seed=seed)
    photos = load_dataset("photos", "val") if dataset_available("photos") else None
    return ValidationSets([shapes_fit, emoji_fit], emoji_val, shapes_val, load_dataset("clipart", "val"), photos)


def pooled_features(model: ClipModel, data: ImageDataset) -> torch.Tensor:
    """Lite0's pooled trunk features of a set (cached on disk by content)."""
    return cached_image_features(model, data.images, label=f"{data.name}/{data.split}")[0]


def scores(model: ClipModel, vectors: np.ndarray, data: ImageDataset) -> dict[str, float]:
    """Top-1 (in points) of every zero-shot task on one validation set."""
    scale = float(model.scale().detach())
    if data.name == "shapes":
        got = {task: 100 * zs.accuracy(zs.logits(vectors, zs.build_classifier(model.embed_texts, names, templates),
                                                 scale), labels)["top1"]
               for task, names, templates, labels in shapes_tasks(data)}
        return {"shapes mean": float(np.mean(list(got.values()))), **{f"shapes {k}": v for k, v in got.items()}}
    if data.name == "emoji":
        names = [describe(c, []) for c in data.class_names or []]
        logits = zs.logits(vectors, zs.build_classifier(model.embed_texts, names, EMOJI_TEMPLATES), scale)
        return {"emoji macro": 100 * zs.macro_accuracy(logits, np.asarray(data.labels))["top1"]}
    names = list(data.class_names or [])
    logits = zs.logits(vectors, zs.build_classifier(model.embed_texts, names, zs.DEFAULT_TEMPLATES), scale)
    return {data.name: 100 * zs.accuracy(logits, np.asarray(data.labels))["top1"]}


def mean_rows(per_seed: Sequence[Mapping[K, Mapping[str, float]]]) -> dict[K, dict[str, float]]:
    """Every column averaged over the splits' sweeps (the same candidates in each)."""
    return {w: {k: float(np.mean([rows[w][k] for rows in per_seed])) for k in per_seed[0][w]} for w in per_seed[0]}


def paired_spread(per_seed: Sequence[Mapping[K, Mapping[str, float]]], column: str,
                  base: K | None = None) -> dict[K, tuple[float, float]]:
    """Each candidate's ``column`` minus ``base``'s (default: the first candidate), per split: (mean, s.e.).

    Candidates are fitted on the same split, so the difference is what a choice rests on; its spread
    over splits says how large an effect the harness can see.
    """
    base = next(iter(per_seed[0])) if base is None else base
    spread = {}
    for name in per_seed[0]:
        diffs = np.array([rows[name][column] - rows[base][column] for rows in per_seed])
        se = float(diffs.std(ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")  # one split: unknown
        spread[name] = (float(diffs.mean()), se)
    return spread


def parse_candidate(text: str) -> tuple[str, float]:
    """``"STATISTIC:GATE"`` as ``(statistic, gate)``; a gate of 1 or more is the linear head."""
    statistic, _, gate = text.partition(":")
    if statistic not in GATE_STATISTICS or not gate:
        raise SystemExit(f"a candidate is STATISTIC:GATE with STATISTIC one of {list(GATE_STATISTICS)}, got {text!r}")
    return statistic, float(gate)


def gate_rows(model: ClipModel, sets: ValidationSets, candidates: Sequence[str]) -> dict[str, dict[str, float]]:
    """One row per candidate (and the linear head): every validation figure, and how often the gate opens."""
    features = {d.name: pooled_features(model, d) for d in sets.scored}
    data = {d.name: d for d in sets.scored}
    gated = with_concept_head(model, gate=0.0)
    head = concept_head(image_trunk_and_head(gated)[0])
    rows: dict[str, dict[str, float]] = {}
    for candidate in [*candidates, LINEAR]:
        statistic, gate = parse_candidate(candidate) if candidate != LINEAR else ("top1", 1.0)
        row: dict[str, float] = {}
        for name, feats in features.items():
            with torch.inference_mode():
                if gate >= 1.0:
                    vectors, opened = head.projection(feats), 0.0
                else:
                    head.gate, head.gate_on = gate, statistic
                    vectors = head(feats)
                    opened = 100 * float((head.concepts(feats)[0] > gate).float().mean())
            row.update(scores(gated, F.normalize(vectors, dim=-1).numpy(), data[name]))
            row[f"{name} gate open %"] = opened
        rows[candidate] = row
        log.info("%s: %s", candidate, row)
    return rows


def choose(rows: Mapping[str, Mapping[str, float]], tolerance: float) -> str:
    """The rule of the module docstring (the photos rule when the rows have a photos column)."""
    linear = rows[LINEAR]
    fine = [c for c, r in rows.items() if r["emoji macro"] >= linear["emoji macro"] - tolerance
            and r["shapes mean"] >= linear["shapes mean"] - tolerance]
    if "photos" in linear:
        return max(fine, key=lambda c: (rows[c]["photos"], rows[c]["emoji macro"]))
    top1 = [c for c in fine if c == LINEAR or parse_candidate(c)[0] == "top1"]
    return min(top1, key=lambda c: 1.0 if c == LINEAR else parse_candidate(c)[1])


def table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """The rows as markdown."""
    keys = list(next(iter(rows.values())))
    lines = ["| gate | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for candidate, row in rows.items():
        lines.append(f"| {candidate} | " + " | ".join(f"{row[k]:.1f}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = validation_parser(__doc__, "points the drawing domains may lose", seeds=(1,))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), metavar="STATISTIC:GATE")
    args = parse_validation_args(parser, argv)
    per_seed = []
    for seed in args.seeds:
        sets = load_sets(args.val_fraction, args.shapes_n, seed, rule=args.split_rule)
        model, _ = fit_default(sets.fit)
        rows = gate_rows(model, sets, args.candidates)
        photos = f", photos val {len(sets.photos)}" if sets.photos is not None else " (no photos: run `make photos`)"
        print(f"# concept_gate: emoji val {len(sets.emoji)} images / {len(sets.emoji.class_names or [])} concepts "
              f"(families seed {seed}, {args.split_rule} rule), shapes val {len(sets.shapes)} (stream {seed}), "
              f"clipart val {len(sets.clipart)} / {len(sets.clipart.class_names or [])} categories{photos}; top-1 in %")
        print(table(rows))
        per_seed.append(rows)
    rows = per_seed[0] if len(per_seed) == 1 else mean_rows(per_seed)
    if len(per_seed) > 1:
        print(f"# mean over seeds {args.seeds}")
        print(table(rows))
        spread = paired_spread(per_seed, "emoji macro", base=LINEAR)
        print("# emoji macro minus the linear head's, per split: " + "; ".join(
            f"{c} {mean:+.2f} ± {se:.2f} (s.e.)" for c, (mean, se) in spread.items() if c != LINEAR))
    rule = ("the highest photos top-1 within" if "photos" in rows[LINEAR] else "the lowest top1 gate within")
    print(f"chosen gate ({rule} {args.tolerance} points of the linear head on emoji and shapes): {choose(rows, args.tolerance)}")


if __name__ == "__main__":
    main()
