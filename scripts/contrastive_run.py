"""A short real SimCLR run with a probe recorder, then the contrastive animation (docs/contrastive.gif).

It trains the shipped recipe (``training/recipes/simclr_<data>.yaml``) through the same
:func:`training.run.train_method` as ``sslzoo train``, with ``train.probe_every`` set to ``--every`` and
``train.probe_size`` to ``--probe``: the probe of balanced test images is recorded at step 0, every
``--every`` steps and at the end, exactly as ``sslzoo train --probe-every N`` does, and the animation is
drawn from the run folder (as ``sslzoo plot animate RUN_DIR`` would). ``--save NAME`` also saves the encoder to the
registry (``$SSLZOO_HOME``), which the page demo (``scripts/page_demo.py``) serves.

    nice -n 10 .venv/bin/python scripts/contrastive_run.py --steps 400 --every 20 --out runs/contrastive \
        --gif docs/contrastive.gif
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.animate import animate  # noqa: E402
from training.config import apply_overrides, load_recipe  # noqa: E402
from training.probe import recorded_steps  # noqa: E402
from training.run import train_method  # noqa: E402

log = logging.getLogger("contrastive_run")


def main(argv: list[str] | None = None) -> int:
    """Train, record the probes, draw the animation (and save the encoder with ``--save``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "digits"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=20, help="probe every N steps")
    parser.add_argument("--probe", type=int, default=60, help="probe images (balanced over classes)")
    parser.add_argument("--max-images", type=int, default=20000, help="training subset")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("runs/contrastive"))
    parser.add_argument("--gif", type=Path, help="also write the animation here")
    parser.add_argument("--save", help="save the encoder to the registry under this name")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(ROOT / "training" / "recipes" / f"simclr_{args.data}.yaml")
    recipe = apply_overrides(recipe, {"train.steps": args.steps, "train.epochs": None,
                                      "data.max_images": args.max_images, "train.batch_size": args.batch_size,
                                      "train.checkpoint_every": 0, "train.progress": False,
                                      "train.log_every": args.every, "train.probe_every": args.every,
                                      "train.probe_size": args.probe})
    start = time.perf_counter()
    result, method, data = train_method(recipe, args.out)
    probes = recorded_steps(args.out)
    log.info("trained %d steps in %.0f s (%.0f img/s), final loss %.4f; %d probes recorded", result.steps,
             time.perf_counter() - start, result.img_per_s, result.final_loss, len(probes))
    (args.out / "result.json").write_text(json.dumps({"steps": result.steps, "seconds": result.seconds,
                                                      "final_loss": result.final_loss, "probes": probes}, indent=2))
    if args.gif:
        summary = animate(args.out, args.gif, title=f"SimCLR on {data.name} ({recipe.model.arch})")
        log.info("wrote %s: alignment %.3f → %.3f, uniformity %.3f → %.3f", summary.path, summary.alignment[0],
                 summary.alignment[-1], summary.uniformity[0], summary.uniformity[-1])
    if args.save:
        import zoo

        encoder = method.encoder().cpu().eval()
        encoder.config = encoder.config.replace(data=data.name)
        entry = zoo.save(encoder, args.save)
        log.info("saved %s (%s)", entry.ref, entry.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
