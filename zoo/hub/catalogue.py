"""Recommended pretrained checkpoints on the Hugging Face Hub, as data.

Each entry names a real Hub repo, the format it is pulled in, the method that trained it, its licence
and, where the method's evaluation reads features out differently from the repo's default, that
read-out. The licence matters: the MAE and I-JEPA weights are CC-BY-NC-4.0 (non-commercial), DINOv3's
the DINOv3 License, MobileCLIP's Apple's AMLR; it travels into the pulled entry's config, model card and
``info``. ``sslzoo pull <name>`` (or ``zoo.hub.pull(name)``) accepts a catalogue name in place of
``org/repo``.

The read-out matters as much as the weights: DINOv2 and DINOv3 are evaluated on the class token
concatenated with the mean of the patch tokens (their linear heads take ``2·D`` inputs), while timm's
repos default to the class token alone (DINOv2) or the patch mean alone (DINOv3); I-JEPA has no class
token and is read out by the patch mean. Preprocessing (input size, crop, interpolation, mean and std)
comes from each repo's own config. ``benchmarks/catalogue_parity.py`` checks every entry's pulled
encoder against timm's, open_clip's or transformers' own forward.

The repos are listed, never contacted at import: this module is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogueEntry:
    """One recommended checkpoint.

    ``pooling`` is the read-out of the method's own evaluation when it differs from the repo's default
    (``cls_mean`` for DINOv2/DINOv3); None keeps the repo's.
    """

    name: str
    repo_id: str
    arch: str
    method: str
    license: str
    format: str
    data: str = ""
    notes: str = ""
    revision: str | None = None
    pooling: str | None = None


_DINOV2 = ("DINOv2 {size}/14{reg}, 518 px; read out as the class token + mean of the patch tokens (DINOv2's "
           "linear-probe features; its k-NN uses the class token alone: zoo.encoders.with_pooling(encoder, 'cls'))")
_DINOV3 = ("DINOv3 {size}/16, 4 registers, RoPE, 256 px; class token + patch mean (DINOv3's linear head). "
           "Released under the DINOv3 License, not an open-source one; the Hub repo may be gated (accept the "
           "licence there and pass a token)")
CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry("dino-vits16", "timm/vit_small_patch16_224.dino", "vit_small_patch16_224", "dino",
                   "apache-2.0", "timm", "imagenet-1k", "DINO ViT-S/16, CLS token; strong k-NN features"),
    CatalogueEntry("dino-vitb16", "timm/vit_base_patch16_224.dino", "vit_base_patch16_224", "dino",
                   "apache-2.0", "timm", "imagenet-1k", "DINO ViT-B/16, CLS token"),
    CatalogueEntry("dinov2-vits14", "timm/vit_small_patch14_dinov2.lvd142m", "vit_small_patch14_dinov2", "dinov2",
                   "apache-2.0", "timm", "lvd-142m", _DINOV2.format(size="ViT-S", reg=""), pooling="cls_mean"),
    CatalogueEntry("dinov2-vits14-reg4", "timm/vit_small_patch14_reg4_dinov2.lvd142m",
                   "vit_small_patch14_reg4_dinov2", "dinov2", "apache-2.0", "timm", "lvd-142m",
                   _DINOV2.format(size="ViT-S", reg=" with 4 registers (left out of the mean)"), pooling="cls_mean"),
    CatalogueEntry("dinov2-vitb14", "timm/vit_base_patch14_dinov2.lvd142m", "vit_base_patch14_dinov2", "dinov2",
                   "apache-2.0", "timm", "lvd-142m", _DINOV2.format(size="ViT-B", reg=""), pooling="cls_mean"),
    CatalogueEntry("dinov2-vitb14-reg4", "timm/vit_base_patch14_reg4_dinov2.lvd142m",
                   "vit_base_patch14_reg4_dinov2", "dinov2", "apache-2.0", "timm", "lvd-142m",
                   _DINOV2.format(size="ViT-B", reg=" with 4 registers (left out of the mean)"), pooling="cls_mean"),
    CatalogueEntry("dinov3-vits16", "timm/vit_small_patch16_dinov3.lvd1689m", "vit_small_patch16_dinov3", "dinov3",
                   "dinov3-license", "timm", "lvd-1689m", _DINOV3.format(size="ViT-S"), pooling="cls_mean"),
    CatalogueEntry("dinov3-vitb16", "timm/vit_base_patch16_dinov3.lvd1689m", "vit_base_patch16_dinov3", "dinov3",
                   "dinov3-license", "timm", "lvd-1689m", _DINOV3.format(size="ViT-B"), pooling="cls_mean"),
    CatalogueEntry("mae-vitb16", "timm/vit_base_patch16_224.mae", "vit_base_patch16_224", "mae",
                   "cc-by-nc-4.0", "timm", "imagenet-1k",
                   "MAE pretraining only (no fine-tuning), CLS token as in MAE's linear probe: weak linear/k-NN "
                   "features, meant for fine-tuning"),
    CatalogueEntry("ijepa-vith14", "facebook/ijepa_vith14_1k", "vit_huge_patch14_gap_224", "ijepa",
                   "cc-by-nc-4.0", "transformers", "imagenet-1k",
                   "I-JEPA ViT-H/14 in the transformers layout (IJepaModel), converted to timm's ViT-H/14 without "
                   "a class token; read out as the mean of the patch tokens, as I-JEPA's evaluation does"),
    CatalogueEntry("siglip2-vitb16", "timm/vit_base_patch16_siglip_224.v2_webli", "vit_base_patch16_siglip_224",
                   "siglip2", "apache-2.0", "timm", "webli",
                   "SigLIP 2 ViT-B/16 image tower (timm layout, no text tower), read out by its attention-pool "
                   "head (map) into the image-text space"),
    CatalogueEntry("mobileclip2-s0", "timm/fastvit_mci0.apple_mclip2_dfndr2b", "fastvit_mci0", "mobileclip2",
                   "apple-amlr", "timm", "dfndr-2b",
                   "MobileCLIP2-S0 image tower (FastViT MCi0, timm layout, no text tower): its 512-d image-text "
                   "embedding; inputs in [0, 1] (mean 0, std 1)"),
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
