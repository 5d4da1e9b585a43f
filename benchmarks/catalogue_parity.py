"""Every catalogue entry, pulled through sslzoo, against the reference library's own forward.

No real weights can be downloaded here, so each entry is checked as a *random-init twin*: the same
architecture built by timm, open_clip or transformers with random weights, written in the file layout
its real Hub repo has (timm's ``save_for_hf``, open_clip's ``open_clip_config.json`` +
``open_clip_model.safetensors``, transformers' ``save_pretrained`` + its image processor's
``preprocessor_config.json``), committed under the real repo id to a local Hub server
(``tests/hub/hubserver.py`` on loopback, the one the hub tests use) and pulled with ``zoo.hub.pull``.
So the catalogue's own pooling, preprocessing and licence are what get applied. The reference is the
library's forward with the method's read-out: timm's ``forward`` (or ``forward_features`` with DINOv2's
class token + patch mean), open_clip's ``encode_image``, ``IJepaModel(...).last_hidden_state.mean(1)``.
Both sides are L2-normalised (the entries' contract) and compared on the same random inputs at the
entry's input size: the table gives the largest absolute difference and the smallest cosine.

    python -m benchmarks.catalogue_parity                 # every entry, full size (ViT-H/14 I-JEPA: ~3 GB RAM)
    python -m benchmarks.catalogue_parity --reduced       # 2 blocks per ViT: the same layouts, seconds each
    python -m benchmarks.catalogue_parity --only dinov2-vits14-reg4 ijepa-vith14
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
HUBSERVER = REPO / "tests" / "hub" / "hubserver.py"
BATCH = 2
#: Blocks kept by ``--reduced`` (ViTs and transformers configs); everything else stays as the real one.
REDUCED_DEPTH = 2
#: open_clip model names of catalogue entries whose ``arch`` is the timm name of the image tower.
OPEN_CLIP_NAMES = {"clip-vitb32-openai-timm": "ViT-B-32-quickgelu"}
#: I-JEPA ViT-H/14 as its Hub ``config.json`` states it (facebook/ijepa_vith14_1k).
IJEPA_VITH14: dict[str, Any] = {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "intermediate_size": 5120,
                "image_size": 224, "patch_size": 14, "layer_norm_eps": 1e-6, "qkv_bias": True, "hidden_act": "gelu"}


@dataclass
class Twin:
    """A catalogue entry's random-init twin: its repo files, and the reference forward on pixels."""

    files: dict[str, Path | bytes]
    reference: Callable[[Tensor], Tensor]
    library: str
    size: str


def _card(license: str, library: str) -> bytes:
    return f"---\nlicense: {license}\nlibrary_name: {library}\n---\n# random-init twin\n".encode()


def _cls_patch_mean(model: Any) -> Callable[[Tensor], Tensor]:
    """DINOv2/DINOv3's linear-probe features, from timm's normalised tokens."""
    def forward(x: Tensor) -> Tensor:
        tokens = model.forward_features(x)
        return torch.cat([tokens[:, 0], tokens[:, model.num_prefix_tokens:].mean(dim=1)], dim=-1)
    return forward


#: The method's read-out on top of timm's tokens, by the catalogue's ``pooling`` (None: timm's own forward).
TIMM_READOUTS: dict[str | None, Callable[[Any], Callable[[Tensor], Tensor]]] = {
    None: lambda model: model, "cls_mean": _cls_patch_mean}


def timm_twin(entry: Any, folder: Path, reduced: bool) -> Twin:
    """timm's ``arch.tag`` model (its pretrained config included) saved the way timm's Hub repos are."""
    import timm

    args: dict[str, Any] = {"depth": REDUCED_DEPTH} if reduced and entry.arch.startswith("vit") else {}
    model = timm.create_model(entry.repo_id.split("/", 1)[1], pretrained=False, **args).eval()
    timm.models.save_for_hf(model, str(folder), safe_serialization=True, model_args=args or None)
    files: dict[str, Path | bytes] = {n: folder / n for n in ("config.json", "model.safetensors")}
    files["README.md"] = _card(entry.license, "timm")
    return Twin(files, TIMM_READOUTS[entry.pooling](model), "timm", "2 blocks" if args else "full")


def open_clip_twin(entry: Any, folder: Path, reduced: bool) -> Twin:
    """open_clip's model saved as its Hub repos are: ``open_clip_config.json`` + ``open_clip_model.safetensors``."""
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    name = OPEN_CLIP_NAMES.get(entry.name, entry.arch)
    model = open_clip.create_model(name, pretrained=None).eval()
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=open_clip.get_model_config(name))
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    files: dict[str, Path | bytes] = {n: folder / n for n in ("open_clip_config.json", "open_clip_model.safetensors")}
    files["README.md"] = _card(entry.license, "open_clip")
    return Twin(files, model.encode_image, f"open_clip {name}", "full")


def transformers_twin(entry: Any, folder: Path, reduced: bool) -> Twin:
    """transformers' ``IJepaModel`` as ``save_pretrained`` writes it, with a ViT image processor's config."""
    from transformers import IJepaConfig, IJepaModel, ViTImageProcessor

    settings = {**IJEPA_VITH14, **({"num_hidden_layers": REDUCED_DEPTH} if reduced else {})}
    model = IJepaModel(IJepaConfig(**settings)).eval()
    model.save_pretrained(str(folder))
    ViTImageProcessor(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(str(folder))
    files: dict[str, Path | bytes] = {n: folder / n for n in ("config.json", "model.safetensors",
                                                               "preprocessor_config.json")}
    files["README.md"] = _card(entry.license, "transformers")

    def reference(x: Tensor) -> Tensor:
        return model(pixel_values=x).last_hidden_state.mean(dim=1)
    return Twin(files, reference, "transformers IJepaModel", "2 blocks" if reduced else "full")


TWINS: dict[str, Callable[[Any, Path, bool], Twin]] = {
    "timm": timm_twin, "open_clip": open_clip_twin, "transformers": transformers_twin}


def _hubserver() -> Any:
    spec = importlib.util.spec_from_file_location("hubserver", HUBSERVER)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{HUBSERVER} is missing: run from a checkout of sslzoo")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def local_hub(root: Path) -> Iterator[str]:
    """``tests/hub/hubserver.py`` serving ``root`` on loopback; yields its URL."""
    process = subprocess.Popen([sys.executable, str(HUBSERVER), "--root", str(root), "--token", "unused"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("PORT "):
            raise SystemExit(f"hubserver.py did not start (said {line!r})")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Row:
    """One table row."""

    entry: str
    library: str
    pooling: str
    input: str
    size: str
    license: str
    max_abs: float
    min_cos: float


def check(entry: Any, url: str, root: Path, work: Path, reduced: bool, seed_repo: Callable[..., str]) -> Row:
    """Build, publish (``seed_repo``: a commit straight into the local hub's git store), pull and compare one entry."""
    import zoo
    from zoo import hub

    folder = work / entry.name
    folder.mkdir()
    torch.manual_seed(0)
    twin = TWINS[entry.format](entry, folder, reduced)
    commit = seed_repo(root, entry.repo_id, twin.files)
    pulled = hub.pull(f"{entry.repo_id}@{commit}", endpoint=url)
    ours = zoo.load(pulled.ref)
    config = ours.config
    pixels = torch.randn(BATCH, *config.preprocess.input_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = F.normalize(twin.reference(pixels).float(), dim=-1)
        got = ours.visual(pixels) if config.is_clip else ours(pixels)
    if got.shape != expected.shape:
        raise SystemExit(f"{entry.name}: sslzoo gives {tuple(got.shape)}, {twin.library} {tuple(expected.shape)}")
    pre = config.preprocess
    return Row(entry.name, twin.library, config.pooling,
               f"{pre.input_size[1]} px {pre.interpolation} crop {pre.crop_pct:g}", twin.size, config.license,
               float((got - expected).abs().max()), float(F.cosine_similarity(got, expected, dim=-1).min()))


def table(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    head = ("| entry | reference | pooling | input (preprocessing) | twin | licence | max abs diff | min cosine |\n"
            "|---|---|---|---|---|---|---:|---:|\n")
    return head + "".join(f"| {r.entry} | {r.library} | {r.pooling} | {r.input} | {r.size} | {r.license} | "
                          f"{r.max_abs:.2e} | {r.min_cos:.7f} |\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="catalogue names to check (default: all)")
    parser.add_argument("--reduced", action="store_true", help=f"{REDUCED_DEPTH} blocks per ViT (a quick run)")
    args = parser.parse_args(argv)
    from zoo.hub.catalogue import CATALOGUE, find

    unknown = [n for n in args.only or [] if find(n) is None]
    if unknown:
        parser.error(f"not in the catalogue: {unknown}; it has {[e.name for e in CATALOGUE]}")
    entries = [e for e in CATALOGUE if args.only is None or e.name in args.only]
    rows = []
    with tempfile.TemporaryDirectory(prefix="catalogue-parity-") as tmp:
        work = Path(tmp)
        os.environ["SSLZOO_HOME"] = str(work / "registry")
        os.environ["HF_HUB_CACHE"] = str(work / "hf-cache")
        from huggingface_hub import constants
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as transformers_logging

        constants.HF_HUB_CACHE = str(work / "hf-cache")  # huggingface_hub reads the variable once, at import
        disable_progress_bars()
        transformers_logging.disable_progress_bar()
        seed_repo = _hubserver().seed_repo
        with local_hub(work / "repos") as url:
            for entry in entries:
                start = time.perf_counter()
                rows.append(check(entry, url, work / "repos", work, args.reduced, seed_repo))
                print(f"{entry.name}: max |Δ| {rows[-1].max_abs:.2e} ({time.perf_counter() - start:.0f} s)",
                      file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
