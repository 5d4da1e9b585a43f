"""The core install has no torch: ``import zoo``, the registry, the CLI and the ONNX backend work without it.

Each test runs a subprocess in which torch, timm, open_clip, onnx and every extra-only package are
refused at import (:mod:`torch_free`), as in ``pip install sslzoo`` without extras.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch_free import EXTRAS_ONLY, TORCH_FAMILY, hooked_env, hooked_pids

import zoo
from zoo.registry import builtin_root

BLOCKED = TORCH_FAMILY + EXTRAS_ONLY
ENTRY = "simclr"  # a built-in entry that ships model.onnx

SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
import zoo
from zoo.registry import builtin_root

registry = zoo.Registry(Path(sys.argv[1]), readonly_roots=(builtin_root(),))
model = zoo.load(sys.argv[2], backend="onnx", registry=registry)
np.save(sys.argv[4], model.embed_images([Image.open(sys.argv[3])]))
try:
    zoo.load(sys.argv[2], backend="torch", registry=registry)
    torch_error = None
except zoo.MissingExtraError as exc:
    torch_error = str(exc)
print(json.dumps({"space": model.embedding_space, "torch_error": torch_error}))
"""


def run_hooked(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **hooked_env(tmp_path / "hook", BLOCKED), "SSLZOO_BUILTIN": "1"}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.skipif(not (builtin_root() / "models" / ENTRY / "1" / "model.onnx").is_file(),
                    reason=f"the built-in {ENTRY} entry has no model.onnx")
def test_onnx_backend_embeds_without_torch(tmp_path):
    image = tmp_path / "probe.png"
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    vectors = tmp_path / "vectors.npy"
    done = run_hooked(tmp_path, "-c", SCRIPT, str(tmp_path / "home"), ENTRY, str(image), str(vectors))
    assert done.returncode == 0, done.stderr[-3000:]
    assert hooked_pids(tmp_path / "hook"), "the import hook did not run"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # the torch backend, asked for without torch, names the extra that brings it
    assert report["torch_error"] is not None and "pip install 'sslzoo[torch]'" in report["torch_error"]

    # the same entry through torch in this (full) environment: the vectors agree to the shipped parity
    registry = zoo.Registry(tmp_path / "home", readonly_roots=(builtin_root(),))
    reference = zoo.load(ENTRY, registry=registry)
    assert report["space"] == reference.embedding_space
    expected = reference.embed_images([Image.open(image)])
    got = np.load(vectors)
    assert got.shape == expected.shape == (1, reference.config.embed_dim)
    cosine = float((got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected))
    assert cosine > 0.999


def test_cli_reads_the_registry_and_names_the_extra_for_training(tmp_path):
    listed = run_hooked(tmp_path, "-m", "zoo.cli", "info", ENTRY)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert json.loads(listed.stdout)["ref"] == f"{ENTRY}@1"
    train = run_hooked(tmp_path, "-m", "zoo.cli", "train", "--help")
    assert train.returncode == 0, train.stderr[-3000:]  # the parser is there without torch
    run = run_hooked(tmp_path, "-m", "zoo.cli", "train", "--method", "simclr", "--steps", "1", "--no-save", "--no-eval")
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "pip install 'sslzoo[" in run.stderr
