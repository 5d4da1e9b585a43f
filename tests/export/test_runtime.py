"""The onnxruntime backend: no torch, clear errors, settings that reach the session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
from export_helpers import drawn_images

import zoo
from export.errors import NotExportedError, RuntimeOptionError
from zoo.backend import ClipBackend, ImageBackend
from zoo.errors import BackendOptionError

NO_TORCH_SCRIPT = textwrap.dedent('''
    import importlib.abc, sys
    blocked = []

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "timm"):
                blocked.append(name)
                raise ImportError(f"torch is blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, BlockTorch())
    import numpy as np
    from PIL import Image
    import zoo

    model = zoo.load(sys.argv[1], backend="onnx")
    images = [Image.open(path) for path in sys.argv[3:]]
    np.save(sys.argv[2] + "-images.npy", model.embed_images(images))
    np.save(sys.argv[2] + "-texts.npy", model.embed_texts(["a red circle", "a blue square at the top"]))
    print("blocked:", blocked, "torch loaded:", "torch" in sys.modules)
    assert "torch" not in sys.modules
''')


def test_onnx_backend_imports_no_torch(clip_export, tmp_path):
    ex = clip_export
    paths = []
    for i, image in enumerate(drawn_images(3, size=36)):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    script = tmp_path / "no_torch.py"
    script.write_text(NO_TORCH_SCRIPT)
    result = subprocess.run([sys.executable, str(script), ex.result.entry.ref, str(tmp_path / "out"), *map(str, paths)],
                            check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={**os.environ, "SSLZOO_HOME": str(ex.home)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch loaded: False" in result.stdout

    torch_clip = zoo.load(ex.source, registry=ex.registry)
    from PIL import Image

    expected_images = torch_clip.embed_images([Image.open(p) for p in paths])
    expected_texts = torch_clip.embed_texts(["a red circle", "a blue square at the top"])
    np.testing.assert_allclose(np.load(tmp_path / "out-images.npy"), expected_images, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "out-texts.npy"), expected_texts, atol=1e-4)


def test_entry_without_onnx_says_how_to_export():
    zoo.save(zoo.build_encoder("vit_nano", in_chans=1), "plain")
    with pytest.raises(NotExportedError, match=r"has no model.onnx: run `sslzoo export plain@1` first"):
        zoo.load("plain", backend="onnx")


def test_int8_of_an_fp32_only_export_is_a_clear_error(clip_export):
    ex = clip_export
    with pytest.raises(NotExportedError, match="--no-int8"):
        zoo.load(ex.result.entry.ref, backend="onnx", registry=ex.registry, precision="int8")


def test_options_are_checked_and_reach_the_session(vit_export):
    ex = vit_export
    ref = ex.result.entry.ref
    with pytest.raises(BackendOptionError, match=r"unknown onnx backend options \['threads'\]"):
        zoo.load(ref, backend="onnx", registry=ex.registry, threads=2)
    with pytest.raises(RuntimeOptionError, match="precision"):
        zoo.load(ref, backend="onnx", registry=ex.registry, precision="fp16")
    model = zoo.load(ref, backend="onnx", registry=ex.registry, intra_op_threads=1)
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert model.entry.ref == ref and model.embedding_space.startswith("es-")
    assert isinstance(model, ImageBackend) and not isinstance(model, ClipBackend)
    grey = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28, 1), dtype=np.uint8)
    assert model.embed_uint8(grey).shape == (3, model.embed_dim)
