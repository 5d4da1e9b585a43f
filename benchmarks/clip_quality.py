"""CLIP quality on the bundled captioned sets, under a CPU budget: zero-shot and retrieval versus chance.

It is how the shipped CLIP recipe was chosen, and how a change to it is judged: every run is scored
on images it never trained on, against the chance level of the same task, with the same figures.

Runs (each on ``shapes`` and/or ``emoji``):

* ``own``      — our text transformer (WordPiece on the captions) + a small image network, both from scratch;
* ``lit``      — locked MiniLM text tower (its projection trains) + the same small image network from scratch;
* ``locked``   — locked MiniLM + locked ImageNet EfficientNet-Lite0, two linear projections trained on
                 precomputed features (the calibration run);
* ``locked+``  — the best emoji recipe found: the same towers, concept-level positives (skin-tone
                 variants of one concept are positives of each other, not negatives) and richer
                 phrasings (:func:`training.clip.captions.emoji_phrasings`: the concept bare and in the
                 prompts' wording). On ``shapes`` it is the same run as ``locked``. ``--views`` adds
                 cropped image views;
* ``tuned``    — ``locked+``, then EfficientNet-Lite0's last stages (``--tail-from 5``: stages 5–6 and
                 the conv head, 2.7 M of its 3.4 M trunk parameters) fine-tuned from that fit for
                 ``--tail-steps`` steps of 256 images, on ``--tail-views`` cached inputs of stage 5 (view 0
                 plain, the others mild crops), text still locked (:mod:`training.clip.last_stage`);
* ``default``  — the shipped recipe (:mod:`training.clip.default`): ``locked+`` fitted once on
                 ``shapes`` + ``emoji`` train together, tested on both held-out sets.

Fit steps of the locked runs are chosen on a validation split of the training families (15% of the
train families), never on the held-out set; the projections overfit within a few hundred steps (3,034
training images, 1,474 concepts).

Evaluation never sees training images: ``shapes`` test images (another random stream) and the emoji
``heldout`` split, whose concept *families* never occur in training (386 concepts, 621 images).
Emoji zero-shot is reported per concept (macro) and per image.

    nice -n 10 python benchmarks/clip_quality.py --data emoji --runs locked,locked+
    nice -n 10 python benchmarks/clip_quality.py --data emoji --runs locked+,tuned --threads 2 [--seed 1]
    nice -n 10 python benchmarks/clip_quality.py --runs default

What the runs showed (each variation of the locked fit tried, the fine-tuning figures, where the limit
lies) is in ``docs/clip-quality-notes.md``.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import torch

import zoo
from training.clip.captions import build_caption_table, richer_captions
from training.clip.default import fit_default, test_sets, training_sets
from training.clip.last_stage import finetune_tail, stage_inputs
from training.clip.locked_fit import fit_projections, image_features
from training.clip.quality import EMOJI_TEMPLATES, Row, evaluate, shapes_tasks
from training.data import BatchLoader
from training.methods.clip import Clip
from zoo import zeroshot as zs
from zoo.clip import ClipModel
from zoo.data import ImageDataset, load_dataset
from zoo.data.emoji_catalog import describe
from zoo.text import trim_padding

log = logging.getLogger("clip_quality")


# -- training -------------------------------------------------------------------------------------------
def train_method(method: Clip, train: ImageDataset, steps: int, batch_size: int, lr: float, seed: int) -> float:
    """A plain loop over the trainer's batch contract (uint8 images + indices), AdamW with cosine decay."""
    torch.manual_seed(seed)
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    batches = BatchLoader(train.images, batch_size, seed=seed).batches()
    method.train()
    start, loss = time.perf_counter(), float("nan")
    for step in range(steps):
        out = method.training_step(next(batches))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        sched.step()
        method.on_step_end(step, steps)
        loss = float(out["loss"].detach())
        if step % max(1, steps // 5) == 0:
            log.info("step %d/%d loss %.3f scale %.1f", step, steps, loss, float(out["logit_scale"]))
    return time.perf_counter() - start


def run_scratch(train: ImageDataset, text: str, args: argparse.Namespace) -> tuple[ClipModel, str]:
    """``own`` or ``lit``: a small image network from scratch with our or the locked MiniLM text tower."""
    torch.manual_seed(args.seed)
    method = Clip.from_dataset(train, image=args.image_arch, text=text, embed_dim=128, img_size=args.scratch_size,
                               context_length=32, lock_text=text == "minilm", crop_scale=args.crop_scale,
                               text_args={"width": 128, "layers": 3, "heads": 4} if text == "transformer" else None)
    seconds = train_method(method, train, args.steps, args.batch_size, args.lr, args.seed)
    return method.encoder(), f"{args.steps} steps × {args.batch_size}, {seconds:.0f} s"


_MEMO: dict[str, object] = {}


def locked_features(model: ClipModel, train: ImageDataset, views: int, seed: int) -> torch.Tensor:
    """Image-trunk features, computed once per (data, size, views) in this process."""
    key = f"img:{train.name}:{model.config.preprocess.input_size}:{views}:{seed}"
    if key not in _MEMO:
        _MEMO[key] = image_features(model, train.images, views=views, crop_scale=0.8, seed=seed)
    return _MEMO[key]  # type: ignore[return-value]


def caption_features(model: ClipModel, texts: Sequence[str]) -> torch.Tensor:
    """Locked text-trunk features per caption string, each string encoded once in this process."""
    memo: dict[str, torch.Tensor] = _MEMO.setdefault("txt", {})  # type: ignore[assignment]
    todo = sorted({t for t in texts if t not in memo})
    tower = model.text.tower.eval()
    for start in range(0, len(todo), 256):
        ids, mask = trim_padding(*model.text.tokenize(todo[start : start + 256]))
        with torch.inference_mode():
            memo.update(zip(todo[start : start + 256], tower.pooled(ids, mask).float(), strict=True))
    return torch.stack([memo[t] for t in texts])


def family_split(train: ImageDataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation indices with whole families (emoji) or random images (shapes) held out."""
    rng = np.random.default_rng(seed + 1)
    if train.name == "emoji":
        families = sorted({m["family"] for m in train.meta or []})
        held = set(rng.permutation(families)[: int(fraction * len(families))])
        val = np.array([m["family"] in held for m in train.meta or []])
    else:
        val = rng.random(len(train)) < fraction
    return np.flatnonzero(~val), np.flatnonzero(val)


def run_locked(train: ImageDataset, args: argparse.Namespace, improved: bool,
               tune: bool = False) -> tuple[ClipModel, str]:
    """Both towers locked, linear projections on precomputed features; ``improved`` adds what helped.

    The number of fit steps is chosen on a validation split of the *training* families (zero-shot
    macro top-1 on them), never on the held-out evaluation set, then the fit is redone on all of train.
    ``tune`` then fine-tunes the image trunk's last stages from that fit (:mod:`training.clip.last_stage`).
    """
    torch.manual_seed(args.seed)
    positives = "label" if improved and train.name == "emoji" else "caption"
    captions = richer_captions(train) if improved and train.name == "emoji" else None
    method = Clip.from_dataset(train, image="efficientnet_lite0", text="minilm", embed_dim=256, img_size=args.lite_size,
                               context_length=32, lock_image=True, lock_text=True)
    model = method.model
    start = time.perf_counter()
    views = args.views if improved else 1
    feats = locked_features(model, train, views, args.seed)
    extract = time.perf_counter() - start
    fit_index, val_index = family_split(train, 0.15, args.seed)
    best: tuple[float, int] = (-1.0, 0)
    for steps in args.fit_steps:
        sub = train.subset(fit_index)
        table = build_caption_table(sub, model.text.tokenizer, 32, positives,
                                    captions=None if captions is None else [captions[i] for i in fit_index])
        fit_projections(model, table, feats[:, fit_index], caption_features(model, table.texts), steps=steps,
                        batch_size=512, lr=1e-3, weight_decay=0.05, seed=args.seed)
        val = train.subset(val_index)
        score = validation_score(model, val, feats[0, val_index])
        log.info("validation (%s): %d steps → %.3f", "locked+" if improved else "locked", steps, score)
        best = max(best, (score, steps))
    table = build_caption_table(train, model.text.tokenizer, 32, positives, captions=captions)
    fit = fit_projections(model, table, feats, caption_features(model, table.texts), steps=best[1], batch_size=512,
                          lr=1e-3, weight_decay=0.05, seed=args.seed)
    note = (f"features {extract:.0f} s ({views} view{'s' * (views > 1)}), {best[1]} fit steps (validation), "
            f"fit {fit.seconds:.0f} s, positives={positives}, captions={'richer' if captions else 'dataset'}")
    model = method.encoder()
    if tune:
        start = time.perf_counter()
        inputs = stage_inputs(model, train.images, args.tail_from, views=args.tail_views, seed=args.seed)
        cached = time.perf_counter() - start
        tuned = finetune_tail(model, table, inputs, caption_features(model, table.texts), args.tail_from,
                              steps=args.tail_steps, seed=args.seed)
        note += (f"; stages {args.tail_from}.. fine-tuned {args.tail_steps} steps ({args.tail_views} views "
                 f"cached in {cached:.0f} s, {tuned.seconds:.0f} s)")
    return model, note


def validation_score(model: ClipModel, val: ImageDataset, feats: torch.Tensor) -> float:
    """Zero-shot top-1 on validation images (macro over concepts for emoji, the composed task for shapes)."""
    head = model.visual.backbone.get_classifier()
    with torch.no_grad():
        image_emb = torch.nn.functional.normalize(head(feats), dim=-1).numpy()
    if val.name == "emoji":
        names = sorted({m["concept"] for m in val.meta or []})
        labels = np.array([names.index(m["concept"]) for m in val.meta or []])
        weights = zs.build_classifier(model.embed_texts, [describe(n, []) for n in names], EMOJI_TEMPLATES)
        return zs.macro_accuracy(zs.logits(image_emb, weights), labels, ks=(1,))["top1"]
    _, names, templates, labels = shapes_tasks(val)[-1]
    return zs.accuracy(zs.logits(image_emb, zs.build_classifier(model.embed_texts, names, templates)), labels,
                       ks=(1,))["top1"]


def print_table(title: str, rows: Sequence[Row]) -> None:
    """A plain-text table under a title line."""
    width = max(len(r[0]) for r in rows)
    print(f"\n## {title}")
    print(f"{'measure':<{width}}  {'result':<34}  chance")
    for name, figures, chance in rows:
        print(f"{name:<{width}}  {figures:<34}  {chance}")


def run_default(args: argparse.Namespace) -> None:
    """The shipped recipe (:func:`training.clip.default.fit_default`): one fit on shapes + emoji, both tested."""
    start = time.perf_counter()
    model, notes = fit_default(training_sets(args.shapes_n, args.seed), lite_size=args.default_size,
                               fit_steps=args.default_steps, seed=args.seed)
    note = (f"shapes + emoji train, {args.default_size} px, {args.default_steps} fit steps, features "
            f"{notes['features_s']:.0f} s, fit {notes['fit_s']:.0f} s")
    for test in test_sets(args.shapes_n, args.seed):
        rows = evaluate(model, test)
        print_table(f"{test.name} · default · {note} · total {time.perf_counter() - start:.0f} s", rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="shapes,emoji", help="comma-separated: shapes, emoji")
    parser.add_argument("--runs", default="own,lit,locked,locked+",
                        help="comma-separated: own, lit, locked, locked+, tuned, default (the shipped recipe, both sets)")
    parser.add_argument("--steps", type=int, default=300, help="steps of the from-scratch runs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--image-arch", default="resnet_narrow", help="image network of the from-scratch runs")
    parser.add_argument("--scratch-size", type=int, default=32, help="image size of the from-scratch runs")
    parser.add_argument("--lite-size", type=int, default=224, help="EfficientNet-Lite0 input size")
    parser.add_argument("--default-size", type=int, default=224, help="default run: EfficientNet-Lite0 input size")
    parser.add_argument("--default-steps", type=int, default=300, help="default run: projection fit steps")
    parser.add_argument("--tail-from", type=int, default=5, help="tuned: first Lite0 stage fine-tuned")
    parser.add_argument("--tail-steps", type=int, default=120, help="tuned: fine-tuning steps (256 images each)")
    parser.add_argument("--tail-views", type=int, default=3, help="tuned: cached views per image (view 0 uncropped)")
    parser.add_argument("--views", type=int, default=1, help="locked+: image views per image (view 0 uncropped)")
    parser.add_argument("--crop-scale", type=float, default=1.0, help="from-scratch runs: smallest crop area")
    parser.add_argument("--fit-steps", type=lambda v: [int(x) for x in v.split(",")], default=[75, 150, 300, 600],
                        help="candidate steps of the projection fit, chosen on a validation split of train")
    parser.add_argument("--shapes-n", type=int, default=3000, help="shapes training images (test: a fifth)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default="", help="save each run's model as <save>-<data>-<run> with its metrics")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    runs = args.runs.split(",")
    if "default" in runs:
        run_default(args)
        runs.remove("default")
    for data in args.data.split(",") if runs else []:
        if data == "shapes":
            size = max(args.scratch_size, 32)
            train = load_dataset("shapes", "train", n=args.shapes_n, image_size=size, seed=args.seed)
            test = load_dataset("shapes", "test", n=args.shapes_n // 5, image_size=size, seed=args.seed)
        else:
            train = load_dataset("emoji", "train", image_size=112, seed=args.seed)
            test = load_dataset("emoji", "heldout", image_size=112, seed=args.seed)
        for run in runs:
            start = time.perf_counter()
            if run in ("own", "lit"):
                model, note = run_scratch(train, "transformer" if run == "own" else "minilm", args)
            else:
                model, note = run_locked(train, args, improved=run != "locked", tune=run == "tuned")
            rows = evaluate(model, test)
            if args.save:
                metrics = {name: {"value": figures, "dataset": f"{test.name}/{test.split}", "split": test.split,
                                  "chance": chance} for name, figures, chance in rows}
                model.config = model.config.replace(metrics=metrics, recipe={"run": run, **vars(args)})
                zoo.save(model, f"{args.save}-{data}-{run.replace('+', '-plus')}")
            print_table(f"{data} · {run} · {note} · total {time.perf_counter() - start:.0f} s", rows)


if __name__ == "__main__":
    main()
