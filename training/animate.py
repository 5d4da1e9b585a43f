"""The contrastive animation: positive pairs drawn together as training goes on, from a run's probe files.

Reads ``RUN_DIR/probe/step_*.npz`` (written by :class:`training.probe.ProbeRecorder`), fits one PCA on
the L2-normalised embeddings of *every* step (so the axes stay put and motion on screen is motion in
embedding space), and draws one frame per step: both views of each probe image, joined by a line that
shortens as the views come to agree, with the alignment and uniformity of Wang & Isola (2020) in the
corner and their curves so far below. Written with matplotlib's Pillow writer (GIF) or, when ffmpeg is
installed, its FFmpeg writer (MP4).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from training.probe import META_FILE, PROBE_DIR
from zoo.errors import DataError


@dataclass(frozen=True)
class ProbeFrame:
    """One recorded step: both views' embeddings (unit length) and the probe labels."""

    step: int
    view1: np.ndarray
    view2: np.ndarray
    labels: np.ndarray


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float64)


def load_probes(run_dir: Path) -> list[ProbeFrame]:
    """Every ``probe/step_*.npz`` of a run, sorted by step, embeddings L2-normalised.

    Raises:
        DataError: No probe files, or files whose shapes disagree (a probe set changed mid-run).
    """
    files = sorted((Path(run_dir) / PROBE_DIR).glob("step_*.npz"))
    if not files:
        raise DataError(f"{Path(run_dir) / PROBE_DIR} holds no step_*.npz probe files; record them with "
                        "sslzoo train --probe-every N (or train.probe_every in the recipe)")
    frames = []
    for path in files:
        with np.load(path) as data:
            frames.append(ProbeFrame(int(data["step"]), _unit(data["view1"]), _unit(data["view2"]),
                                     np.asarray(data["labels"], dtype=np.int64)))
    shapes = {(f.view1.shape, f.view2.shape) for f in frames}
    if len(shapes) != 1 or frames[0].view1.shape != frames[0].view2.shape:
        raise DataError(f"probe files in {run_dir} disagree in shape ({sorted(shapes)}); one run, one probe set")
    return sorted(frames, key=lambda f: f.step)


def alignment(view1: np.ndarray, view2: np.ndarray) -> float:
    """``E ||z1 − z2||²`` over positive pairs of unit vectors (Wang & Isola eq. 4, α = 2; 0 when views agree)."""
    return float(np.mean(np.sum((_unit(view1) - _unit(view2)) ** 2, axis=1)))


def uniformity(z: np.ndarray, t: float = 2.0) -> float:
    """``log E exp(−t ||zi − zj||²)`` over distinct pairs (eq. 5; lower: spread over the sphere, 0: one point)."""
    z = _unit(z)
    sq = np.maximum(2.0 - 2.0 * (z @ z.T), 0.0)[np.triu_indices(len(z), k=1)]
    values = -t * sq
    top = values.max()
    return float(top + math.log(np.mean(np.exp(values - top))))


def fit_pca(frames: Sequence[ProbeFrame]) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, components [2, D])`` of every view at every step: one projection for the whole animation."""
    stacked = np.concatenate([np.concatenate([f.view1, f.view2]) for f in frames])
    mean = stacked.mean(axis=0)
    _, _, vt = np.linalg.svd(stacked - mean, full_matrices=False)
    return mean, vt[:2]


@dataclass(frozen=True)
class AnimationSummary:
    """What was drawn: frames, steps and the figures at the first and last step."""

    path: Path
    frames: int
    steps: tuple[int, ...]
    alignment: tuple[float, ...]
    uniformity: tuple[float, ...]


def _title(run_dir: Path) -> str:
    meta = Path(run_dir) / PROBE_DIR / META_FILE
    method = json.loads(meta.read_text()).get("method", "") if meta.is_file() else ""
    return f"{method} · positive pairs" if method else "positive pairs"


def _class_names(run_dir: Path) -> list[str] | None:
    meta = Path(run_dir) / PROBE_DIR / META_FILE
    names = json.loads(meta.read_text()).get("class_names") if meta.is_file() else None
    return list(names) if names else None


@dataclass(frozen=True)
class _Series:
    """Everything the frames show, computed once: 2-D points per step and the figures per step."""

    steps: list[int]
    points: list[tuple[np.ndarray, np.ndarray]]
    align: list[float]
    unif: list[float]
    gaps: list[float]
    labels: np.ndarray


def _series(frames: Sequence[ProbeFrame]) -> _Series:
    mean, components = fit_pca(frames)
    return _Series(steps=[f.step for f in frames],
                   points=[((f.view1 - mean) @ components.T, (f.view2 - mean) @ components.T) for f in frames],
                   align=[alignment(f.view1, f.view2) for f in frames],
                   unif=[0.5 * (uniformity(f.view1) + uniformity(f.view2)) for f in frames],
                   gaps=[float(np.mean(np.linalg.norm(f.view1 - f.view2, axis=1))) for f in frames],
                   labels=frames[0].labels)


def _scatter_axes(fig: plt.Figure, series: _Series, names: list[str] | None) -> tuple[Any, ...]:
    """The projection panel with fixed limits (the whole run's extent); returns its changing artists."""
    ax = fig.add_axes((0.09, 0.37, 0.87, 0.55))
    every = np.concatenate([np.concatenate(p) for p in series.points])
    low, high = every.min(axis=0), every.max(axis=0)
    pad = 0.08 * (high - low + 1e-9)
    ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
    ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
    ax.set_xlabel("PC 1 (fitted on every step)", fontsize=8)
    ax.set_ylabel("PC 2", fontsize=8)
    ax.tick_params(labelsize=7)
    labels = series.labels
    cmap = plt.get_cmap("tab10" if labels.max(initial=0) < 10 else "tab20")
    colours = cmap(np.where(labels < 0, 0, labels) % cmap.N)
    lines = LineCollection([], colors=colours, linewidths=1.0, alpha=0.55)
    ax.add_collection(lines)
    first = ax.scatter([], [], s=22, marker="o", edgecolors="white", linewidths=0.4)
    second = ax.scatter([], [], s=26, marker="^", edgecolors="white", linewidths=0.4)
    if names and (labels >= 0).any():
        handles = [Line2D([], [], ls="", marker="o", color=cmap(c % cmap.N), label=names[c] if c < len(names)
                          else str(c)) for c in np.unique(labels[labels >= 0])]
        handles += [Line2D([], [], ls="", marker=m, color="#555", label=f"view {i}") for i, m in ((1, "o"), (2, "^"))]
        ax.legend(handles=handles, fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=6,
                  frameon=False, handletextpad=0.2, columnspacing=0.9)
    corner = ax.text(0.02, 0.98, "", transform=ax.transAxes, va="top", ha="left", fontsize=8.5, family="monospace",
                     bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "#999"})
    return lines, first, second, corner, colours


def _curve_axes(fig: plt.Figure, series: _Series) -> tuple[Any, Any]:
    """Alignment and uniformity against the step, drawn up to the current frame."""
    curve = fig.add_axes((0.1, 0.06, 0.84, 0.14))
    curve.set_xlim(min(series.steps), max(*series.steps, min(series.steps) + 1))
    both = series.align + series.unif
    curve.set_ylim(min(both) - 0.1, max(both) + 0.1)
    curve.tick_params(labelsize=7)
    curve.set_xlabel("step", fontsize=7)
    curve.grid(alpha=0.3)
    (align_line,) = curve.plot([], [], color="#d62728", lw=1.3, marker="o", ms=2.5, label="alignment ↓")
    (unif_line,) = curve.plot([], [], color="#1f77b4", lw=1.3, marker="o", ms=2.5, label="uniformity ↓")
    curve.legend(fontsize=7, loc="center right", frameon=False)
    return align_line, unif_line


def animate(run_dir: Path, out: Path, *, fps: int = 4, dpi: int = 80, title: str | None = None,
            hold_last: int = 6) -> AnimationSummary:
    """Write the animation of a run's probes to ``out`` (``.gif``, or ``.mp4`` with ffmpeg).

    Args:
        run_dir: A run folder holding ``probe/step_*.npz``.
        out: Output path; the suffix picks the writer.
        fps: Frames per second.
        dpi: Resolution (the figure is 6.4 × 7.2 inches).
        title: Figure title; defaults to the method recorded in ``probe/meta.json``.
        hold_last: Extra copies of the last frame, so a looping GIF rests on the result.

    Raises:
        DataError: No probe files, or an unknown output suffix / missing ffmpeg for MP4.
    """
    frames = load_probes(run_dir)
    out = Path(out)
    writer = _writer(out, fps)
    series = _series(frames)
    fig = plt.figure(figsize=(6.4, 7.2))
    lines, first, second, corner, colours = _scatter_axes(fig, series, _class_names(run_dir))
    align_line, unif_line = _curve_axes(fig, series)
    name = title if title is not None else _title(run_dir)
    fig.suptitle(f"{name} — {len(series.labels)} probe images, both views", fontsize=10)

    def draw(i: int) -> list[Any]:
        a, b = series.points[i]
        lines.set_segments(np.stack([a, b], axis=1))
        first.set_offsets(a)
        first.set_facecolors(colours)
        second.set_offsets(b)
        second.set_facecolors(colours)
        corner.set_text(f"step {series.steps[i]:>6}\nalignment  {series.align[i]:6.3f}\n"
                        f"uniformity {series.unif[i]:6.3f}\npair dist  {series.gaps[i]:6.3f}")
        align_line.set_data(series.steps[: i + 1], series.align[: i + 1])
        unif_line.set_data(series.steps[: i + 1], series.unif[: i + 1])
        return [lines, first, second, corner, align_line, unif_line]

    order = list(range(len(frames))) + [len(frames) - 1] * max(0, hold_last)
    anim = animation.FuncAnimation(fig, draw, frames=order, blit=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    anim.save(str(out), writer=writer, dpi=dpi)
    plt.close(fig)
    return AnimationSummary(out, len(order), tuple(series.steps), tuple(series.align), tuple(series.unif))


def _writer(out: Path, fps: int) -> animation.AbstractMovieWriter:
    suffix = out.suffix.lower()
    if suffix == ".gif":
        return animation.PillowWriter(fps=fps)
    if suffix == ".mp4":
        if not animation.FFMpegWriter.isAvailable():
            raise DataError("MP4 needs ffmpeg on PATH (apt-get install ffmpeg); write a .gif instead")
        return animation.FFMpegWriter(fps=fps)
    raise DataError(f"unknown animation format {suffix!r}: use .gif (or .mp4 with ffmpeg)")
