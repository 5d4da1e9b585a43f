"""Every benchmark script runs end to end in a smoke setting and prints its tables (figures are not checked:
speed is never asserted in tests). A benchmark that rots breaks here, not in front of the next reader."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_benchmark(*args: str, timeout: int = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_rows(text: str, first_column: str) -> list[list[str]]:
    """The rows of the markdown table whose first header cell is ``first_column`` (padding ignored)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and cells(line)[0] == first_column)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


@pytest.mark.slow
def test_service_load_tiny_prints_every_table_without_errors():
    out = run_benchmark("benchmarks.service_load", "--tiny", "--concurrency", "2", "--items", "1", "4")
    assert re.search(r"bare in-process images/s: .*batch 1 = [\d.]+", out)
    embed = table_rows(out, "route")
    assert {(r[0], r[1], r[2]) for r in embed} == {(route, items, "2") for route in ("`/embed`", "`/embed_text`")
                                                 for items in ("1", "4")}
    search = table_rows(out, "index")
    assert search and all(r[-1] == "0" for r in embed + search), out  # the errors column


@pytest.mark.slow
def test_embed_throughput_prints_a_row_per_model():
    out = run_benchmark("benchmarks.embed_throughput", "--models", "resnet_narrow@32", "--batches", "4",
                        "--no-compile", "--seconds", "0.2", "--peak-n", "512")
    rows = table_rows(out, "model")
    assert [r[0] for r in rows] == ["resnet_narrow@32"] and rows[0][1] != ""


@pytest.mark.slow
def test_train_speed_compares_with_lightly():
    out = run_benchmark("benchmarks.train_speed", "--data", "digits", "--batch-size", "32", "--steps", "2",
                        "--warmup", "1", "--workers", "0")
    pipelines = [r[0] for r in table_rows(out, "pipeline")]
    assert any(p.startswith("lightly") for p in pipelines) and any(p.startswith("ours") for p in pipelines)


@pytest.mark.slow
def test_ssl_quality_trains_scores_and_compares_with_pixels(tmp_path):
    out = run_benchmark("benchmarks.ssl_quality", "--methods", "simclr", "--data", "digits", "--budget-s", "3",
                        "--out", str(tmp_path), "--no-progress", "--max-eval-train", "500")
    names = [r[0] for r in table_rows(out, "method")]
    assert "simclr" in names and "raw pixels" in names and "random init" in names


@pytest.mark.slow
def test_label_efficiency_tiny_prints_every_method_and_the_target_line(monkeypatch):
    monkeypatch.setenv("SSLZOO_BUILTIN", "1")  # it compares the shipped encoders
    out = run_benchmark("benchmarks.label_efficiency", "--tiny", "--encoders", "simclr")
    rows = table_rows(out, "method")
    assert {(r[0], r[1]) for r in rows} == {(method, labels) for labels in ("20", "40") for method in (
        "simclr (a) frozen + linear", "simclr (b) fine-tuned", "simclr (c) same arch from scratch",
        "(d) raw pixels + linear", "(e) EfficientNet-Lite0 ImageNet + linear")}
    assert all(0.0 <= float(r[2]) <= 100.0 for r in rows)
    assert re.search(r"gap simclr at 20 labels: \(a\) − \(c\) [+-][\d.]+ points, \(b\) − \(c\) [+-][\d.]+ points", out)
    assert re.search(r"Target: SSL pre-training ahead of \(c\) by ≥ 5 points at 20 labels: (met|MISSED) "
                     r"\(best of \(a\)/\(b\) minus \(c\): simclr [+-][\d.]+\)", out)


@pytest.mark.slow
def test_catalogue_parity_reduced_prints_a_matching_row_per_entry():
    out = run_benchmark("benchmarks.catalogue_parity", "--reduced", "--only", "dinov2-vits14-reg4", "ijepa-vith14")
    rows = table_rows(out, "entry")
    assert [(r[0], r[2]) for r in rows] == [("dinov2-vits14-reg4", "cls_mean"), ("ijepa-vith14", "mean")]
    assert all(float(r[6]) < 1e-5 and float(r[7]) > 0.99999 for r in rows), out


def test_image_towers_refuses_queries_inside_the_gallery() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.image_towers", "--gallery", "5000", "--query-start", "100"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "must be past the gallery" in done.stderr, done.stderr[-2000:]
