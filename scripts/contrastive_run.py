"""A short real SimCLR run with a probe recorder, then the contrastive animation (docs/contrastive.gif).

It builds the method from the shipped recipe (``training/recipes/simclr_<data>.yaml``) with the same
helpers ``sslzoo train`` uses, trains it with the project's :class:`training.trainer.Trainer` (the probe
recorder is one of the trainer's callbacks), records a probe of balanced test images every
``--every`` steps plus step 0, and draws the animation. ``--save NAME`` also saves the encoder to the
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
from training.probe import ProbeRecorder, pick_probe  # noqa: E402
from training.run import build_method, build_run_encoder, load_training_data  # noqa: E402
from training.trainer import Trainer  # noqa: E402
from zoo.data import load_dataset  # noqa: E402

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
                                      "train.log_every": args.every})
    data = load_training_data(recipe)
    test = load_dataset(recipe.data.name, recipe.data.eval_split, seed=recipe.data.seed)
    chosen = pick_probe(test.labels, args.probe, seed=1)
    torch.manual_seed(recipe.train.seed)
    method = build_method(recipe, build_run_encoder(recipe, data))
    recorder = ProbeRecorder(args.out, test.images[chosen], args.every, labels=test.labels[chosen],
                             class_names=test.class_names, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    recorder.record(0, method)  # the untrained network: where the lines start
    trainer = Trainer(method, data.images, recipe.train, args.out, name=recipe.method,
                      callbacks=[recorder.callback(method)])
    start = time.perf_counter()
    result = trainer.fit()
    log.info("trained %d steps in %.0f s (%.0f img/s), final loss %.4f; %d probes recorded", result.steps,
             time.perf_counter() - start, result.img_per_s, result.final_loss, len(recorder.recorded))
    (args.out / "result.json").write_text(json.dumps({"steps": result.steps, "seconds": result.seconds,
                                                      "final_loss": result.final_loss,
                                                      "probes": recorder.recorded}, indent=2))
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
