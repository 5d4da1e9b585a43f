"""``sslzoo ship``: copy a trained (and exported) entry into the built-in root, compactly, with its parity.

The built-in root (``zoo/builtin``) is what ``pip install`` brings, so every byte counts (the whole zoo
stays under 40 MB) and every byte must still be verified. Shipping therefore:

* stores large float tensors as fp16 when the probe parity holds (``config.storage``; the
  torch backend casts them back to fp32), else keeps fp32;
* references tensors that a dependency package already ships byte for byte (the locked MiniLM text
  tower) instead of copying them (``config.external_weights``, see :mod:`zoo.package_weights`); a
  package that ships a pickle (EfficientNet-Lite0) never matches, so such a tower is copied;
* stores an fp16 entry's ONNX graphs with fp16 initializers (:mod:`release.graph_storage`), and
  keeps them only when they fit the budget; a CLIP keeps its image graph only together with its
  text graph, because the service's ONNX backend needs both and would otherwise fail over to torch;
* records the parity figures, the probe, the ORT/torch throughput and the sizes in
  ``config.shipped``, with the source's probe embeddings in ``golden.npz``, so
  :func:`release.shipcheck.check_entry` can re-check the entry on any machine.

The entry becomes ``NAME@1`` in the root, replacing whatever was shipped under that name: the root is
maintained by ``make zoo``, not a user's store.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from release import DEFAULT_BUDGET_MB
from release.graph_storage import fp16_initializer_graph
from release.shipcheck import (
    GOLDEN,
    MIN_COSINE,
    default_probe,
    golden_bytes,
    measure,
    onnx_image_encoder,
    probe_inputs,
    torch_embeddings,
)
from zoo.api import locate
from zoo.card import render_card
from zoo.config import EncoderConfig, ExternalRef, WeightStorage
from zoo.errors import ConfigError, RefError, SslzooError
from zoo.manifest import MANIFEST, build_manifest
from zoo.refs import NAME_RE
from zoo.registry import CARD, CONFIG, Entry, Registry, builtin_root, config_bytes

MB = 1_000_000
MIN_FP16_NUMEL = 1024  # smaller tensors (biases, norms, the CLIP temperature) stay fp32: they cost nothing
FP16_MAX = 65504.0
THROUGHPUT_BATCH = 64
ONNX_ORDER = ("model.onnx", "text.onnx", "model.int8.onnx", "text.int8.onnx")
CARD_MARGIN = 64_000  # config, card and manifest, written after the budget decision
_FIGURE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


class ShipError(SslzooError):
    """The shipped folder is not what the built-in root now resolves the name to."""


@dataclass
class ShipResult:
    """What was shipped: the entry, its files' sizes, what was left out and why, the root's total."""

    entry: Entry
    sizes: dict[str, int]
    dropped: dict[str, str]
    root_bytes: int
    budget_bytes: int
    record: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """Sizes per file, what was dropped, the parity and the root total against the budget."""
        lines = [f"shipped {self.entry.name}@{self.entry.version} to {self.entry.path}"]
        lines += [f"  {name:28} {size / MB:8.3f} MB" for name, size in sorted(self.sizes.items())]
        lines.append(f"  {'entry total':28} {sum(self.sizes.values()) / MB:8.3f} MB")
        lines += [f"  left out {name}: {why}" for name, why in self.dropped.items()]
        for side, towers in self.record.get("parity", {}).items():
            for tower, fig in towers.items():
                lines.append(f"  parity {side}/{tower}: max|Δ| {fig['max_abs_diff']:.2e}, "
                             f"min cos {fig['min_cosine']:.6f} (n={fig['n']})")
        lines.append(f"  storage {self.record.get('storage_dtype')}; built-in root total "
                     f"{self.root_bytes / MB:.3f} MB of {self.budget_bytes / MB:.1f} MB")
        return "\n".join(lines)


def fits_fp16(values: np.ndarray) -> bool:
    """Whether a float32 tensor is stored as fp16: large enough to matter, finite, within fp16's range.

    The one rule for the weights and the ONNX graphs' initializers alike.
    """
    return (values.dtype == np.float32 and values.size >= MIN_FP16_NUMEL and bool(np.isfinite(values).all())
            and float(np.abs(values).max()) <= FP16_MAX)


def _compact(tensors: dict[str, Any], dtype: str) -> tuple[dict[str, Any], int]:
    """Large finite fp32 tensors to fp16 (when ``dtype`` says so); returns them and how many were cast."""
    import torch

    if dtype == "float32":
        return tensors, 0
    out, cast = {}, 0
    for key, value in tensors.items():
        if value.dtype == torch.float32 and fits_fp16(value.detach().cpu().numpy()):
            out[key], cast = value.half().contiguous(), cast + 1
        else:
            out[key] = value
    return out, cast


def _weight_files(model: Any, dtype: str) -> tuple[dict[str, bytes], list[ExternalRef], int]:
    """Weight files with package tensors referenced and the rest compacted; refs; tensors cast."""
    from zoo.package_weights import split_references
    from zoo.torch_backend import weights_bytes

    files: dict[str, bytes] = {}
    refs: list[ExternalRef] = []
    cast = 0
    for name, state in model.tensor_files().items():
        remaining, found = split_references(name, state)
        compact, n = _compact(remaining, dtype)
        files[name] = weights_bytes(compact, {"format": "pt", "storage": dtype})
        refs += found
        cast += n
    return files, refs, cast


def _graph_bytes(path: Path, storage: str) -> bytes:
    """An exported graph as shipped: with fp16 initializers where the weights are stored fp16 (int8 graphs as is)."""
    if storage == "float32" or ".int8." in path.name:
        return path.read_bytes()
    return fp16_initializer_graph(path, fits_fp16)


def _carried(source: Entry) -> dict[str, bytes]:
    """The source's other files (tokenizer, recipe, plots); weights, graphs and generated files excluded."""
    skip = {CONFIG, CARD, MANIFEST, GOLDEN}
    return {p.relative_to(source.path).as_posix(): p.read_bytes() for p in sorted(source.path.rglob("*"))
            if p.is_file() and p.name not in skip and p.suffix not in (".safetensors", ".onnx")}


def _figures(source: Entry, files: Mapping[str, bytes]) -> dict[str, str]:
    """Figures the source's card shows whose files travel along."""
    card = source.path / CARD
    text = card.read_text() if card.is_file() else ""
    return {caption: path for caption, path in _FIGURE.findall(text) if path in files}


def _root_bytes(root: Path, exclude: str | None = None) -> int:
    """Bytes of every file in a root's models, leaving out one model (the one being replaced)."""
    models = root / "models"
    if not models.is_dir():
        return 0
    return sum(p.stat().st_size for d in models.iterdir() if d.is_dir() and d.name != exclude
               for p in d.rglob("*") if p.is_file() and ".tmp-" not in p.as_posix())


def choose_onnx(candidates: Mapping[str, int], is_clip: bool, room: int) -> tuple[list[str], dict[str, str]]:
    """Which ONNX files to keep within ``room`` bytes, in :data:`ONNX_ORDER`, and why the others are not.

    A CLIP's image graph is kept only with its text graph: the service prefers ONNX whenever
    ``model.onnx`` exists, and the ONNX backend of a CLIP needs ``text.onnx`` as well. An int8 graph
    is kept only beside its fp32 one.
    """
    units = [["model.onnx", "text.onnx"], ["model.int8.onnx"], ["text.int8.onnx"]] if is_clip else \
        [[n] for n in ONNX_ORDER]
    kept: list[str] = []
    dropped: dict[str, str] = {}
    for unit in units:
        present = [n for n in unit if n in candidates]
        if not present:
            continue
        size = sum(candidates[n] for n in present)
        base = present[0].replace(".int8", "")
        if is_clip and present == ["model.onnx"]:
            why = "a CLIP's image graph is served only with text.onnx, which was not exported"
        elif base != present[0] and base not in kept:
            why = f"its fp32 graph {base} is not shipped"
        elif size > room:
            why = f"{size / MB:.1f} MB does not fit the remaining budget ({room / MB:.1f} MB)"
        else:
            kept += present
            room -= size
            continue
        dropped.update({n: f"{why}; the torch backend serves the entry" if n == "model.onnx" else why
                        for n in present})
    return kept, dropped


def _throughput(model: Any, config: EncoderConfig, images: np.ndarray, onnx_path: Path | None) -> dict[str, Any]:
    """img/s of the torch model and of ``onnx_path``, one thread, one fixed batch, best of 5 after a warm-up."""
    import onnxruntime as ort
    import torch

    from zoo.preprocess import preprocess_uint8

    reps = int(np.ceil(THROUGHPUT_BATCH / len(images)))
    pixels = preprocess_uint8(np.concatenate([images] * reps)[:THROUGHPUT_BATCH], config.preprocess)
    tower = getattr(model, "visual", model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch_s = _best_of(lambda: tower.embed_array(pixels, THROUGHPUT_BATCH))
    finally:
        torch.set_num_threads(threads)
    out: dict[str, Any] = {"batch": THROUGHPUT_BATCH, "threads": 1, "torch_img_s": THROUGHPUT_BATCH / torch_s,
                           "torch": torch.__version__, "machine": platform.machine(), "cpu": _cpu_name()}
    if onnx_path is not None:
        encoder = onnx_image_encoder(onnx_path, config)
        out.update(onnx_img_s=THROUGHPUT_BATCH / _best_of(lambda: encoder.embed_array(pixels, THROUGHPUT_BATCH)),
                   onnxruntime=ort.__version__, onnx_file=onnx_path.name)
    return out


def _best_of(fn: Any, runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _params(model: Any) -> dict[str, int]:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    if getattr(model, "text", None) is not None:
        return {"image": count(model.visual), "text": count(model.text), "total": count(model)}
    return {"image": count(model), "total": count(model)}


def _write(folder: Path, files: Mapping[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def _publish(tmp: Path, model_dir: Path) -> Path:
    """Put ``tmp`` in place as version 1, then remove every earlier shipped version of the name."""
    target = model_dir / "1"
    old = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    trash = []
    for path in old:
        moved = model_dir / f".tmp-old-{uuid.uuid4().hex}"
        path.rename(moved)
        trash.append(moved)
    tmp.rename(target)
    (model_dir / "aliases.json").unlink(missing_ok=True)
    for path in trash:
        shutil.rmtree(path, ignore_errors=True)
    return target


def ship_entry(ref: str | Path, name: str, *, root: Path | None = None, dtype: str = "float16",
               budget_mb: float = DEFAULT_BUDGET_MB, int8_onnx: bool = False, registry: Registry | None = None,
               provenance: Mapping[str, Any] | None = None,
               label_efficiency: Mapping[str, Any] | None = None) -> ShipResult:
    """Ship ``ref`` into ``root`` (the package's built-in root by default) as ``name@1``.

    Args:
        ref: Any reference :func:`zoo.locate` accepts; ideally an exported entry (with ``model.onnx``).
        name: The built-in name; a shipped model of that name is replaced.
        root: The read-only root to write into (``zoo/builtin`` by default).
        dtype: ``float16`` (falls back to ``float32`` if the probe parity misses :data:`MIN_COSINE`) or
            ``float32``.
        budget_mb: The whole root's size limit; ONNX graphs that would cross it are left out.
        int8_onnx: Also consider the int8 graphs (the service uses fp32 by default).
        registry: Where ``ref`` is resolved.
        provenance: Recorded as is (``make zoo`` stores the recipe and its sha256 here).
        label_efficiency: ``benchmarks.label_efficiency --json``'s record and its ``command``; recorded and
            drawn as the card's "Label efficiency" section.

    Raises:
        RefError: ``name`` is not a valid model name, or ``ref`` names nothing.
        ConfigError: The weights alone do not fit the budget, or ``dtype`` is unknown.
    """
    if dtype not in ("float16", "float32"):
        raise ConfigError(f"dtype must be float16 or float32, not {dtype!r}")
    if not NAME_RE.match(name):
        raise RefError(f"{name!r} is not a valid model name (letters, digits, '.', '_', '-')")
    from zoo.torch_backend import load_torch

    root = (root or builtin_root()).resolve()
    source = locate(ref, registry)
    source.verify()
    config = source.read_config()
    model = load_torch(source.path, config)
    spec = default_probe(config)
    images, texts = probe_inputs(spec, config.is_clip)
    golden = torch_embeddings(model, images, texts)
    model_dir = root / "models" / name
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".tmp-{uuid.uuid4().hex}"
    try:
        result = _build(tmp, source, config, model, spec.to_dict(), golden, images,
                        dtype=dtype, budget=int(budget_mb * MB), int8_onnx=int8_onnx, root=root, name=name,
                        provenance=dict(provenance or {}), label_efficiency=label_efficiency)
        path = _publish(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not any(model_dir.iterdir()):
            model_dir.rmdir()  # a first ship that failed leaves no empty model folder behind
        raise
    result.entry = Registry(root / ".no-home", readonly_roots=(root,)).resolve(f"{name}@1")
    if result.entry.path != path:
        raise ShipError(f"shipped {name} to {path}, but {name}@1 in {root} resolves to {result.entry.path}: "
                        f"remove {root / '.no-home'}, which shadows the built-in root")
    result.root_bytes = _root_bytes(root)
    return result


def _build(tmp: Path, source: Entry, config: EncoderConfig, model: Any, probe: dict[str, Any],
           golden: dict[str, np.ndarray], images: np.ndarray, *, dtype: str, budget: int, int8_onnx: bool,
           root: Path, name: str, provenance: dict[str, Any],
           label_efficiency: Mapping[str, Any] | None = None) -> ShipResult:
    """Write the shipped folder's files into ``tmp``, measuring parity (fp32 storage if fp16 misses it anywhere)."""
    carried = {**_carried(source), GOLDEN: golden_bytes(golden)}
    exported = [n for n in ONNX_ORDER if (source.path / n).is_file() and (int8_onnx or ".int8." not in n)]
    for storage in dict.fromkeys([dtype, "float32"]):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        weights, refs, cast = _weight_files(model, storage)
        base = sum(map(len, weights.values())) + sum(map(len, carried.values())) + CARD_MARGIN
        room = budget - _root_bytes(root, exclude=name) - base
        if room < 0:
            raise ConfigError(f"{name}: the weights alone ({base / MB:.1f} MB) do not fit the remaining "
                              f"budget ({(budget - _root_bytes(root, exclude=name)) / MB:.1f} MB)")
        graphs = {n: _graph_bytes(source.path / n, storage) for n in exported}
        kept, dropped = choose_onnx({n: len(data) for n, data in graphs.items()}, config.is_clip, room)
        compact = WeightStorage(storage, MIN_FP16_NUMEL, cast) if storage != "float32" else None
        provisional = config.replace(storage=compact, external_weights=tuple(refs),
                                     shipped={"probe": probe, "onnx_files": kept})
        _write(tmp, {**weights, **carried, **{n: graphs[n] for n in kept}, CONFIG: config_bytes(provisional)})
        parity = measure(tmp, provisional, golden, kept)
        if storage == "float32" or all(f["min_cosine"] >= MIN_COSINE for side in ("torch", "onnx")
                                       for f in parity.get(side, {}).values()):
            break
    onnx_path = tmp / "model.onnx" if "model.onnx" in kept else None
    record = {**(provisional.shipped or {}), "name": name, "storage_dtype": storage,
              "source": {"ref": source.ref, "embedding_space": source.embedding_space},
              "parity": parity, "tolerance": {"min_cosine": MIN_COSINE}, "onnx_dropped": dropped,
              "throughput": {**_throughput(model, config, images, onnx_path),
                             "onnx_shipped": "model.onnx" in kept},
              "params": _params(model), "provenance": provenance,
              **({"label_efficiency": dict(label_efficiency)} if label_efficiency else {})}
    final = provisional.replace(shipped=record)
    (tmp / CONFIG).write_bytes(config_bytes(final))
    (tmp / CARD).write_text(render_card(name, final, _figures(source, carried) or None))
    sizes = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in tmp.rglob("*") if p.is_file()}
    (tmp / MANIFEST).write_text(json.dumps(build_manifest(tmp), indent=2))
    sizes[MANIFEST] = (tmp / MANIFEST).stat().st_size
    return ShipResult(source, sizes, dropped, 0, budget, record)
