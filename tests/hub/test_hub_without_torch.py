"""Push and pull through the Hub with torch, timm, open_clip and onnx refused at import (a core install).

The entry is the built-in ``simclr``'s weights and ONNX graph saved as an ordinary registry entry; a
subprocess with the torch-free import hook (:mod:`torch_free`) pushes it, loads it back through
``zoo.load("hf-hub:...", backend="onnx")`` and embeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from torch_free import TORCH_FAMILY, hooked_env, hooked_pids

import zoo
from zoo.registry import builtin_root

SOURCE = builtin_root() / "models" / "simclr" / "1"

SCRIPT = """
import json, sys
import numpy as np
from PIL import Image
import zoo
from zoo import hub

repo, url, token, image, out = sys.argv[1:6]
pushed = hub.push("tiny", repo, endpoint=url, token=token)
model = zoo.load(f"hf-hub:{repo}", backend="onnx")
np.save(out, model.embed_images([Image.open(image)]))
print(json.dumps({"commit": pushed.commit, "space": model.embedding_space, "ref": model.entry.ref}))
"""


@pytest.mark.skipif(not (SOURCE / "model.onnx").is_file(), reason="the built-in simclr entry has no model.onnx")
def test_push_and_pull_an_onnx_entry_without_torch(hub_server, hf_cache, sslzoo_home, tmp_path, repo_id):
    config = zoo.Registry(readonly_roots=(builtin_root(),)).resolve("simclr").read_config()
    files = {name: (SOURCE / name).read_bytes() for name in ("model.safetensors", "model.onnx")}
    saved = zoo.save_files("tiny", config, files)
    image = tmp_path / "probe.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (36, 30, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "vectors.npy"
    hook = tmp_path / "hook"
    env = {**os.environ, **hooked_env(hook, TORCH_FAMILY), "HF_HUB_CACHE": str(hf_cache),
           "SSLZOO_HF_ENDPOINT": hub_server.url}
    done = subprocess.run([sys.executable, "-c", SCRIPT, repo_id, hub_server.url, hub_server.token, str(image),
                           str(out)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert hooked_pids(hook), "the import hook did not run"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["commit"]) == 40
    assert report["space"] == saved.embedding_space and report["ref"] != saved.ref  # pulled, not the local one
    expected = zoo.load("tiny", backend="onnx").embed_images([Image.open(image)])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)
