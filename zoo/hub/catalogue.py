"""Recommended pretrained checkpoints on the Hugging Face Hub, as data.

Each entry names a real Hub repo, the format it is pulled in, the method that trained it and its
licence. The licence matters: the MAE and I-JEPA weights are CC-BY-NC-4.0 (non-commercial), and it
travels into the pulled entry's config, model card and ``info``. ``sslzoo pull <name>`` (or
``zoo.hub.pull(name)``) accepts a catalogue name in place of ``org/repo``.

The repos are listed, never contacted at import: this module is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogueEntry:
    """One recommended checkpoint."""

    name: str
    repo_id: str
    arch: str
    method: str
    license: str
    format: str
    data: str = ""
    notes: str = ""
    revision: str | None = None


CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry("dino-vits16", "timm/vit_small_patch16_224.dino", "vit_small_patch16_224", "dino",
                   "apache-2.0", "timm", "imagenet-1k", "DINO ViT-S/16, CLS token; strong k-NN features"),
    CatalogueEntry("dino-vitb16", "timm/vit_base_patch16_224.dino", "vit_base_patch16_224", "dino",
                   "apache-2.0", "timm", "imagenet-1k", "DINO ViT-B/16, CLS token"),
    CatalogueEntry("mae-vitb16", "timm/vit_base_patch16_224.mae", "vit_base_patch16_224", "mae",
                   "cc-by-nc-4.0", "timm", "imagenet-1k",
                   "MAE pretraining only (no fine-tuning): weak linear/k-NN features, meant for fine-tuning"),
    CatalogueEntry("ijepa-vith14", "facebook/ijepa_vith14_1k", "vit_huge_patch14_gap_224", "ijepa",
                   "cc-by-nc-4.0", "transformers", "imagenet-1k",
                   "I-JEPA ViT-H/14 in the transformers layout: listed for its licence and provenance; sslzoo "
                   "does not convert transformers checkpoints yet, so pulling it is refused with that reason"),
    CatalogueEntry("clip-vitb32-openai-timm", "timm/vit_base_patch32_clip_224.openai", "vit_base_patch32_clip_224",
                   "clip", "mit", "open_clip", "openai-wit",
                   "OpenAI CLIP ViT-B/32; the repo also has a timm image tower (format='timm' for that alone)"),
    CatalogueEntry("clip-vitb32-laion2b", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "ViT-B-32", "clip", "mit",
                   "open_clip", "laion-2b", "open_clip ViT-B/32 trained on LAION-2B"),
)


def find(name: str) -> CatalogueEntry | None:
    """The catalogue entry called ``name``, if any."""
    return next((entry for entry in CATALOGUE if entry.name == name), None)


def by_repo(repo_id: str) -> CatalogueEntry | None:
    """The catalogue entry for a Hub repo, if it is listed."""
    return next((entry for entry in CATALOGUE if entry.repo_id == repo_id), None)
