"""Two CPU processes on gloo under torchrun: gradients synchronised, data sharded, checkpoints per rank.

The methods are registered ones at test size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "tiny_method.py"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["simclr", pytest.param("ijepa", marks=pytest.mark.slow)])
def test_two_ranks_on_gloo_train_in_sync(method, tmp_path):
    """SimCLR gathers negatives across ranks; I-JEPA leaves a parameter out of its loss (DDP must cope)."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(run), "--steps", "3",
           "--batch-size", "4", "--checkpoint-every", "2", "--method", method]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    digests = [(run / f"params_rank{r}.txt").read_text() for r in range(2)]
    assert digests[0] == digests[1]  # DDP averaged the gradients: both ranks hold the same weights
    assert digests[0] != (run / "initial_params_rank0.txt").read_text()  # ... after real optimiser steps
    batches = [set(json.loads((run / f"first_batch_rank{r}.json").read_text())) for r in range(2)]
    assert len(batches[0]) == len(batches[1]) == 4 and batches[0].isdisjoint(batches[1])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # rank 0 alone writes the log
    final = run / "checkpoints" / "step_0000003"
    assert {p.name for p in final.glob("rng_rank*.safetensors")} == {"rng_rank0.safetensors", "rng_rank1.safetensors"}
