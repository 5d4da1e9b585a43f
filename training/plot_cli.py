"""``sslzoo plot``: figures from a run folder, added to the ``sslzoo`` command through an entry point.

``sslzoo plot animate RUN_DIR --out anim.gif`` draws the contrastive animation from the probe files a
:class:`training.probe.ProbeRecorder` wrote during training (see :mod:`training.animate`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_plot_command(sub: Any) -> None:
    """Add ``sslzoo plot`` (with its ``animate`` subcommand) to the ``sslzoo`` subparsers."""
    p = sub.add_parser("plot", help="figures from a training run folder",
                       description="Figures from a run folder (RUN_DIR as written by sslzoo train).")
    kinds = p.add_subparsers(dest="plot_kind", metavar="KIND", required=True)
    a = kinds.add_parser("animate", help="animated GIF/MP4 of the probe set's positive pairs over training",
                         description="Turn RUN_DIR/probe/step_*.npz into an animation: a PCA of both views of each "
                                     "probe image (fitted on all steps, so the axes stay put), each pair joined by "
                                     "a line, alignment and uniformity in the corner.")
    a.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder holding probe/step_*.npz")
    a.add_argument("--out", type=Path, help="output .gif (or .mp4 with ffmpeg); default RUN_DIR/contrastive.gif")
    a.add_argument("--fps", type=int, default=4, help="frames per second (default 4)")
    a.add_argument("--dpi", type=int, default=80, help="resolution (default 80: 512×576 pixels)")
    a.add_argument("--title", help="figure title (default: the method recorded in probe/meta.json)")
    a.set_defaults(func=run_animate)


def run_animate(args: argparse.Namespace) -> int:
    """``sslzoo plot animate``: writes the animation and prints what it shows."""
    from training.animate import animate

    out = args.out or args.run_dir / "contrastive.gif"
    summary = animate(args.run_dir, out, fps=args.fps, dpi=args.dpi, title=args.title)
    print(f"wrote {summary.path}: {len(summary.steps)} recorded steps ({summary.steps[0]}–{summary.steps[-1]}), "
          f"alignment {summary.alignment[0]:.3f} → {summary.alignment[-1]:.3f}, "
          f"uniformity {summary.uniformity[0]:.3f} → {summary.uniformity[-1]:.3f}")
    return 0
