"""An entry's key figures, read from what it recorded: what ``sslzoo list`` and the zoo table show.

Three numbers answer "how good is it" across methods: weighted k-NN top-1, linear-probe top-1 and
zero-shot top-1. They live here, not with the table, because ``sslzoo list`` shows them for any
registry entry while the table is a release step above the bottom layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.config import EncoderConfig

ZERO_SHOT_PREFIXES = ("zeroshot", "zero_shot")


def metric_value(metric: Any) -> float | None:
    """The number a recorded metric holds (``{"value": ...}`` or a bare number), or None."""
    value = metric.get("value") if isinstance(metric, Mapping) else metric
    return float(value) if isinstance(value, (int, float)) else None


def zero_shot_metric(config: EncoderConfig) -> Any:
    """The zero-shot top-1 shown: a per-concept (``macro``) one when recorded, else the first.

    Per concept, because per image the many variants of a few concepts (emoji skin tones) inflate it.
    """
    keys = [k for k in sorted(config.metrics) if k.startswith(ZERO_SHOT_PREFIXES) and k.endswith("top1")]
    key = next((k for k in keys if "macro" in k), keys[0] if keys else None)
    return config.metrics[key] if key else None


def key_figures(config: EncoderConfig) -> dict[str, float | None]:
    """k-NN top-1, linear-probe top-1 and zero-shot top-1 (:func:`zero_shot_metric`), or None."""
    metrics = config.metrics
    return {"knn": metric_value(metrics.get("knn_top1")), "linear": metric_value(metrics.get("linear_top1")),
            "zero_shot": metric_value(zero_shot_metric(config))}


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal; ``—`` when not measured."""
    return "—" if value is None else f"{100 * value:.1f}"
