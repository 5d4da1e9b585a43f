"""What a tower sketch could keep of Lite0's neighbourhoods, before any fit: a look on training data only.

    python -m benchmarks.sketch_preview [--threads 1]

The shipped default's fitted 256-d projection stands in for the fitted block; the sketch block is
Lite0's raw pooled features mapped by the top right singular vectors of a pool (the default's fit images
and the ``clipart`` ``train`` folders, as :class:`~training.clip.locked_fit.TowerSketch` draws it), either
of the raw features uncentred (the sketch that was built) or of the standardised, centred ones. Each block
is made unit and the two are mixed so that the fitted one carries ``fitted share`` of the squared norm.
Weighted k-NN (k = 20, T = 0.07) on Fashion-MNIST *train* (gallery [:5000], queries [50000:52000], the
protocol of ``benchmarks/image_towers.py``) and the clip-art ``val`` folders in seeded halves: no row of
``benchmarks/zeroshot_real.py`` is read. It chooses nothing (``benchmarks/tower_sketch.py`` chooses).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import zoo
from benchmarks.zeroshot_real import pooled
from training.clip.default import geometry_pool, training_sets
from training.clip.features import cached_image_features
from training.evaluate import knn_accuracy
from training.methods.clip import image_trunk_and_head
from zoo.data import load_dataset

SHIPPED = "./zoo/builtin/models/default/1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=SHIPPED, help="the CLIP whose projection stands in for the fitted block")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = zoo.load(args.model).eval()
    backbone, head = image_trunk_and_head(model)
    projection = getattr(head, "projection", head)  # a concept head's linear part
    sets = [*training_sets(3000, 0), *geometry_pool()]
    pool = torch.cat([cached_image_features(model, ds.images, label=f"{ds.name}/{ds.split}")[0] for ds in sets])
    pool = pool.double()
    mean, std = pool.mean(0), pool.std(0).clamp(min=1e-6)
    _, _, raw_basis = torch.linalg.svd(pool, full_matrices=False)
    standard = (pool - mean) / std
    _, _, std_basis = torch.linalg.svd(standard - standard.mean(0), full_matrices=False)

    fmnist, clipart = load_dataset("fashion-mnist", "train"), load_dataset("clipart", "val")
    gallery, queries = np.arange(5000), np.arange(50000, 52000)
    halves = np.random.default_rng(0).permutation(len(clipart.labels))
    clip_gallery, clip_queries = halves[: len(halves) // 2], halves[len(halves) // 2 :]
    labels, clip_labels = np.asarray(fmnist.labels), np.asarray(clipart.labels)
    feats = {"fm gallery": pooled(backbone, model.config.preprocess, fmnist.images[gallery], "fashion-mnist/train"),
             "fm queries": pooled(backbone, model.config.preprocess, fmnist.images[queries], "fashion-mnist/train"),
             "clipart": pooled(backbone, model.config.preprocess, clipart.images, "clipart/val")}

    def sketch(f: Tensor, kind: str, dims: int) -> Tensor:
        f = f.double()
        if kind == "raw uncentred":
            return f @ raw_basis[:dims].T
        return ((f - mean) / std - standard.mean(0)) @ std_basis[:dims].T

    def knn(embed: Callable[[Tensor], np.ndarray]) -> tuple[float, float]:
        fm = knn_accuracy(embed(feats["fm gallery"]), labels[gallery], embed(feats["fm queries"]), labels[queries])
        cl = embed(feats["clipart"])
        return fm, knn_accuracy(cl[clip_gallery], clip_labels[clip_gallery], cl[clip_queries], clip_labels[clip_queries])

    def fitted(f: Tensor) -> Tensor:
        with torch.no_grad():
            return F.normalize(projection(f.float()).double(), dim=-1)

    raw = knn(lambda f: f.float().numpy())
    print(f"# sketch_preview: {args.model}; pool = fit images + clipart train ({len(pool)}); Fashion-MNIST train "
          f"gallery {len(gallery)} / queries {len(queries)}, clipart val {len(clip_labels)} in halves; torch threads "
          f"{args.threads}")
    print("| sketch | dims | fitted share | fmnist k-NN | fmnist ratio | clipart k-NN | clipart ratio |")
    print("|---|---|---|---|---|---|---|")
    print(f"| raw Lite0 (no projection) | - | - | {raw[0]:.4f} | 1.000 | {raw[1]:.4f} | 1.000 |")
    for kind in ("standardised centred", "raw uncentred"):
        for dims in (64, 128):
            for share in (1.0, 0.5, 0.3, 0.15, 0.0):
                if share == 1.0 and (kind, dims) != ("standardised centred", 64):
                    continue  # the projection alone: one row is enough

                def embed(f: Tensor, kind: str = kind, dims: int = dims, share: float = share) -> np.ndarray:
                    return torch.cat([share**0.5 * fitted(f), (1 - share) ** 0.5 * F.normalize(sketch(f, kind, dims), dim=-1)],
                                     dim=-1).float().numpy()

                fm, cl = knn(embed)
                name = "none (the projection alone)" if share == 1.0 else kind
                print(f"| {name} | {dims if share < 1.0 else '-'} | {share} | {fm:.4f} | {fm / raw[0]:.3f} | {cl:.4f} | "
                      f"{cl / raw[1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
