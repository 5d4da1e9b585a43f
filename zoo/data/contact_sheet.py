"""A contact sheet: a few images of each bundled dataset with their caption or label, as one PNG.

Looking is the fastest check that a builder is right (emoji in colour rather than tofu, captions
that match the pictures). ``python -m zoo.data.contact_sheet docs/datasets.png`` regenerates the
picture in the docs.
"""

from __future__ import annotations

import argparse
import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from zoo.data import ImageDataset, dataset_available, list_datasets, load_dataset
from zoo.data.registry import resolve

log = logging.getLogger(__name__)


def _title(dataset: ImageDataset, i: int) -> str:
    if dataset.captions is not None:
        text = dataset.captions[i][0]
    elif dataset.labels is not None and dataset.class_names is not None:
        text = dataset.class_names[int(dataset.labels[i])]
    else:
        text = ""
    return "\n".join(textwrap.wrap(text, 22)[:4])


def make_contact_sheet(
    out: str | Path, names: Sequence[str] | None = None, per_dataset: int = 8, seed: int = 0
) -> Path:
    """Draw ``per_dataset`` random images of each dataset (one row each) and save a PNG at ``out``.

    Datasets whose files are not installed are left out with a log message, so the sheet can still
    be drawn on a machine that lacks some Debian packages.
    """
    chosen = [n for n in (names or list_datasets()) if dataset_available(n)]
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(
        len(chosen), per_dataset, figsize=(1.6 * per_dataset, 2.3 * len(chosen)), squeeze=False
    )
    for row, name in zip(axes, chosen, strict=True):
        spec, _ = resolve(name)
        dataset = load_dataset(name, spec.splits[0], seed=seed)
        picks = np.sort(rng.choice(len(dataset), size=min(per_dataset, len(dataset)), replace=False))
        for ax, i in zip(row, picks, strict=False):
            image = dataset.images[i]
            ax.imshow(
                image[..., 0] if image.shape[-1] == 1 else image,
                cmap="gray",
                vmin=0,
                vmax=255,
                interpolation="nearest",
            )
            ax.set_title(_title(dataset, int(i)), fontsize=7)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{name}\n{dataset.split}, {len(dataset):,} images", fontsize=9)
    skipped = sorted(set(names or list_datasets()) - set(chosen))
    if skipped:
        log.warning("contact sheet: left out datasets that are not installed: %s", ", ".join(skipped))
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m zoo.data.contact_sheet OUT.png [--names ...] [--per-dataset N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--names", nargs="*", default=None, help="datasets to show (default: all)")
    parser.add_argument("--per-dataset", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = make_contact_sheet(args.out, args.names, args.per_dataset, args.seed)
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
