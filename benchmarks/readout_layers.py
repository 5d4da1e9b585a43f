"""Which stage of a trained CNN reads out best for k-NN, against the same stages of a random-init twin.

    python -m benchmarks.readout_layers runs/zoo/train/simclr runs/zoo/train/dino   # make zoo's runs
    python -m benchmarks.readout_layers my-encoder --val 5000 --threads 2             # a registry entry
    python -m benchmarks.readout_layers runs/zoo/train/simclr --linear                # + linear probes

A training run folder gives its whole trained backbone (its last checkpoint, before any readout), so
the stages a shipped entry dropped can still be compared.

For each registry reference, every stage's whole feature map (timm's ``forward_intermediates`` 1..4:
``layer1``..``layer4``, the numbering of ``model.readout_stages``; the map flattened to one vector, as
the ``flatten`` readout does) is scored with the
registry's weighted k-NN (k=20, T=0.07, cosine), and so is its global average (the standard ``avg``
readout: at the last stage, what a whole-network entry serves). The scores come from a validation split carved out
of the dataset's *train* split (the last ``--val`` images; the bank is the rest), so choosing a
readout here never looks at the test split. Each stage is also scored for a randomly initialised
encoder of the same architecture, and raw pixels are scored on the same split: a stage only says
something about training where it beats both. ``--linear`` adds the linear probe of each trained
stage's pooled map (and of raw pixels) on the same split, the read-out the linear target is about.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

import zoo
from training.checkpoint import STATE, latest_checkpoint
from training.evaluate import knn_accuracy, linear_probe_accuracy, pixel_features
from training.run import load_training_data, new_method, saved_recipe
from zoo.data import load_dataset
from zoo.encoders import ImageEncoder
from zoo.preprocess import preprocess_uint8


def readout_stages(encoder: ImageEncoder) -> list[int]:
    """The stages a readout can keep: timm's feature_info positions after the stem (1 = ``layer1``)."""
    backbone = encoder.backbone
    if not hasattr(backbone, "forward_intermediates"):
        raise SystemExit(f"{encoder.config.arch} has no forward_intermediates: a timm CNN is needed")
    return list(range(1, len(backbone.feature_info)))


@torch.inference_mode()
def stage_features(encoder: ImageEncoder, images: np.ndarray, stages: list[int],
                   batch_size: int = 500) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each of ``stages``' flattened map ``[N, C·H·W]`` and pooled map ``[N, C]`` of uint8 ``[N, H, W, C]`` images."""
    backbone = encoder.eval().backbone
    chunks: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    for start in range(0, len(images), batch_size):
        pixels = torch.from_numpy(preprocess_uint8(images[start : start + batch_size], encoder.config.preprocess))
        maps = backbone.forward_intermediates(pixels, indices=stages, intermediates_only=True)
        chunks.append([(m.flatten(1).float(), m.float().mean((2, 3))) for m in maps])
    return [(torch.cat([c[i][0] for c in chunks]).numpy(), torch.cat([c[i][1] for c in chunks]).numpy())
            for i in range(len(stages))]


def load_encoder(ref: str) -> ImageEncoder:
    """A registry entry, or the whole backbone of a training run folder's last checkpoint."""
    run = Path(ref)
    if not (run / "recipe.yaml").is_file():
        return zoo.load(ref)
    folder = latest_checkpoint(run)
    if folder is None:
        raise SystemExit(f"{run} has no checkpoint yet")
    recipe = saved_recipe(run)
    method = new_method(recipe, load_training_data(recipe))
    extra = json.loads((folder / STATE).read_text()).get("model_extra", {})
    method.load_state_dict({**load_file(str(folder / "model.safetensors")), **extra}, strict=True)
    encoder: ImageEncoder = method.encoder()  # type: ignore[operator]
    return encoder.cpu().eval()


def random_twin(encoder: ImageEncoder, seed: int) -> ImageEncoder:
    """The same architecture and contract with fresh random weights."""
    torch.manual_seed(seed)
    return ImageEncoder(encoder.config)


def score(features: np.ndarray, labels: np.ndarray, val: int) -> float:
    """k-NN top-1 of the last ``val`` rows against the others."""
    return knn_accuracy(features[:-val], labels[:-val], features[-val:], labels[-val:])


def linear_score(features: np.ndarray, labels: np.ndarray, val: int) -> float:
    """Linear probe top-1 of the last ``val`` rows, fitted on the others."""
    return linear_probe_accuracy(features[:-val], labels[:-val], features[-val:], labels[-val:])


def rows_for(ref: str, images: np.ndarray, labels: np.ndarray, val: int, seed: int,
             linear: bool = False) -> list[dict[str, Any]]:
    """One row per stage: its map shape, the trained k-NN and the random twin's, whole map and pooled.

    ``linear`` adds ``trained_pooled_linear``: the linear probe of the trained pooled map.
    """
    trained = load_encoder(ref)
    stages = readout_stages(trained)
    ours = stage_features(trained, images, stages)
    theirs = stage_features(random_twin(trained, seed), images, stages)
    maps = trained.backbone.forward_intermediates(
        torch.zeros(1, *trained.config.preprocess.input_size), indices=stages, intermediates_only=True)
    rows = [{"ref": ref, "stage": stage, "map": "×".join(str(d) for d in m.shape[1:]), "dims": ours[i][0].shape[1],
             "trained": score(ours[i][0], labels, val), "random": score(theirs[i][0], labels, val),
             "trained_pooled": score(ours[i][1], labels, val), "random_pooled": score(theirs[i][1], labels, val)}
            for i, (stage, m) in enumerate(zip(stages, maps, strict=True))]
    if linear:
        for row, (_, pooled) in zip(rows, ours, strict=True):
            row["trained_pooled_linear"] = linear_score(pooled, labels, val)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("refs", nargs="+", help="registry references of CNN encoders, or training run folders")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--val", type=int, default=10_000, help="validation images taken from the end of train")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random twins")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--linear", action="store_true", help="add the pooled maps' linear probe column")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data, "train")
    if not 0 < args.val < len(data):
        raise SystemExit(f"--val must be between 1 and {len(data) - 1}")
    labels = np.asarray(data.labels)
    pixels = pixel_features(data.images)
    pixel_linear = f", linear {linear_score(pixels, labels, args.val):.4f}" if args.linear else ""
    print(f"# readout_layers: {args.data} train, k-NN of the last {args.val} images against the other "
          f"{len(data) - args.val}; raw pixels {score(pixels, labels, args.val):.4f}{pixel_linear}")
    extra = (" pooled: trained, linear |", "---|") if args.linear else ("", "")
    print("| encoder | stage | map (C×H×W) | dims | k-NN trained | k-NN random init | pooled (C dims): trained "
          f"| pooled: random init |{extra[0]}\n|---|---|---|---|---|---|---|---|{extra[1]}")
    for ref in args.refs:
        for row in rows_for(ref, data.images, labels, args.val, args.seed, args.linear):
            linear = f" {row['trained_pooled_linear']:.4f} |" if args.linear else ""
            print(f"| {row['ref']} | {row['stage']} | {row['map']} | {row['dims']} | {row['trained']:.4f} "
                  f"| {row['random']:.4f} | {row['trained_pooled']:.4f} | {row['random_pooled']:.4f} |{linear}",
                  flush=True)


if __name__ == "__main__":
    main()
