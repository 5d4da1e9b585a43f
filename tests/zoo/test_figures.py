"""The key figures ``sslzoo list`` and the zoo table show are read from recorded metrics only."""

from __future__ import annotations

from zoo.config import EncoderConfig
from zoo.figures import key_figures, percent


def test_key_figures_read_recorded_metrics_only():
    config = EncoderConfig(arch="resnet18", metrics={
        "knn_top1": {"value": 0.8612}, "linear_top1": 0.9, "zeroshot_shape_top1": {"value": 0.5}, "other": 1.0})
    assert key_figures(config) == {"knn": 0.8612, "linear": 0.9, "zero_shot": 0.5}
    assert key_figures(EncoderConfig(arch="resnet18")) == {"knn": None, "linear": None, "zero_shot": None}
    assert percent(0.8612) == "86.1" and percent(None) == "—"


def test_a_per_concept_zero_shot_figure_is_preferred():
    config = EncoderConfig(arch="resnet18", metrics={
        "zeroshot_emoji_top1": {"value": 0.4}, "zeroshot_emoji_macro_top1": {"value": 0.2}})
    assert key_figures(config)["zero_shot"] == 0.2
