"""ConSE alone on Fashion-MNIST: how far Lite0's own ImageNet classifier gets as a zero-shot labeller.

    python -m benchmarks.conse_fmnist [--n 2000]

ConSE (Norouzi et al., 2014) embeds an image as the probability-weighted sum of its top-T ImageNet
classes' name embeddings; here the names are embedded by the default CLIP's locked MiniLM trunk (no
projection: the raw sentence space) in the service's prompt templates, up to three lemmas a class, and a
label's score is the cosine to its own prompt embedding. It isolates what the classifier transfers to a
domain it was not trained on, whatever projection is fitted around it (``docs/clip-default-experiments.md``).
Prints top-1 over T and softmax temperature, and the classifier's top class for the first images.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

import zoo
from benchmarks.zeroshot_real import pooled
from training.clip.features import text_trunk_features
from training.clip.imagenet_classes import imagenet_classes, lite0_classifier
from zoo.data import load_dataset
from zoo.pretrained import efficientnet_lite0_encoder
from zoo.zeroshot import DEFAULT_TEMPLATES


def prompt_embedding(model: zoo.ClipModel, texts: list[str]) -> torch.Tensor:
    """One unit vector for a set of prompts: the mean of their unit MiniLM trunk embeddings."""
    return F.normalize(F.normalize(text_trunk_features(model, texts), dim=-1).mean(0), dim=0)


def imagenet_name_embeddings(model: zoo.ClipModel) -> torch.Tensor:
    """The 1,000 ImageNet classes embedded by their names: up to three lemmas each, in the service's prompts."""
    return torch.stack([prompt_embedding(model, [t.format(n) for n in c.lemmas[:3] for t in DEFAULT_TEMPLATES])
                        for c in imagenet_classes()])


def label_embeddings(model: zoo.ClipModel, labels: Sequence[str]) -> torch.Tensor:
    """The zero-shot labels embedded in the service's prompts."""
    return torch.stack([prompt_embedding(model, [t.format(n) for t in DEFAULT_TEMPLATES]) for n in labels])


def conse_top1(logits: torch.Tensor, names: torch.Tensor, prompts: torch.Tensor, truth: torch.Tensor, top: int,
               temperature: float) -> float:
    """ConSE's top-1: the top-``top`` classes' name embeddings weighted by their softmax probabilities."""
    value, index = torch.softmax(logits / temperature, dim=1).topk(top, dim=1)
    semantic = torch.zeros_like(logits).scatter(1, index, value) @ names
    return float(((F.normalize(semantic, dim=-1) @ prompts.T).argmax(1) == truth).float().mean())


def main(argv: Sequence[str] | None = None) -> dict[tuple[int, float], float]:
    """Print ConSE top-1 on the first ``--n`` Fashion-MNIST test images for each T and temperature."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="first N Fashion-MNIST test images")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    test = load_dataset("fashion-mnist", "test")
    test = test.subset(np.arange(min(args.n, len(test))))
    tower = efficientnet_lite0_encoder(embed_dim=1000).eval()
    weight, bias = lite0_classifier()
    logits = pooled(tower.backbone, tower.config.preprocess, test.images, "fashion-mnist/test") @ weight.T + bias
    model = zoo.load("default")
    classes = imagenet_classes()
    names = imagenet_name_embeddings(model)
    labels = [n.lower() for n in test.class_names or []]
    prompts = label_embeddings(model, labels)
    truth = torch.as_tensor(np.asarray(test.labels))
    print(f"# ConSE on the first {len(test)} Fashion-MNIST test images; chance {1 / len(labels):.1%}")
    print("lite0's top class for the first 10:", ", ".join(classes[int(i)].lemmas[0] for i in logits.argmax(1)[:10]))
    print("| T | temperature | top-1 |\n|---|---|---|")
    out = {}
    for top in (1, 3, 5, 10, 50, 1000):
        for temperature in (0.5, 1.0, 2.0):
            accuracy = conse_top1(logits, names, prompts, truth, top, temperature)
            out[(top, temperature)] = accuracy
            print(f"| {top} | {temperature} | {accuracy:.1%} |")
    return out


if __name__ == "__main__":
    main()
