"""The real server serves an ONNX entry with torch, timm, open_clip and onnx refused at import.

This is ``pip install 'sslzoo[serve]'`` without torch: the import hook (:mod:`torch_free`) runs in the
BentoML arbiter and in its worker, and the built-in ``simclr`` entry (which ships ``model.onnx``) must
become ready and answer ``/embed`` with the vectors the ONNX backend gives in-process.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from svc_helpers import Server, descendants, image_uri, png_bytes
from torch_free import TORCH_FAMILY, hooked_env, hooked_pids

import zoo
from zoo.registry import builtin_root

ENTRY = "simclr"


@pytest.mark.slow
@pytest.mark.skipif(not (builtin_root() / "models" / ENTRY / "1" / "model.onnx").is_file(),
                    reason=f"the built-in {ENTRY} entry has no model.onnx")
def test_server_serves_an_onnx_entry_without_torch(tmp_path):
    hook = tmp_path / "hook"
    server = Server(tmp_path / "home", tmp_path / "data", tmp_path / "server.log", SSLZOO_BUILTIN="1",
                    SSLZOO_DEFAULT_MODEL=ENTRY, SSLZOO_BACKEND="onnx", **hooked_env(hook, TORCH_FAMILY))
    try:
        server.wait()
        workers = set(descendants(server.proc.pid))
        images = [image_uri(seed) for seed in range(3)]
        answer = server.post("/embed", {"images": images})
        models = {m["ref"]: m for m in server.get("/models").json()["models"]}
    finally:
        server.stop()
    assert workers and workers | {server.proc.pid} <= hooked_pids(hook), "the import hook did not run in the server"
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == f"{ENTRY}@1" and models[f"{ENTRY}@1"]["backend"].startswith("onnx")

    registry = zoo.Registry(tmp_path / "ref_home", readonly_roots=(builtin_root(),))
    reference = zoo.load(ENTRY, backend="onnx", registry=registry)
    expected = reference.embed_images([Image.open(io.BytesIO(png_bytes(seed=seed))) for seed in range(3)])  # image_uri's pixels
    np.testing.assert_allclose(np.asarray(body["embeddings"]), expected, atol=1e-5)
