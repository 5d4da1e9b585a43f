"""The catalogue's read-outs that timm has no name for (``cls_mean``) or that carry weights (``map``) export to
ONNX and give the torch encoder's vectors: a pulled DINOv2 or SigLIP 2 entry serves like any other."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.onnx_export import export_image_tower
from zoo.encoders import build_encoder


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "pooling", "args"), [
    ("vit_small_patch14_reg4_dinov2", "cls_mean", {"img_size": 28, "depth": 1}),
    ("vit_base_patch16_siglip_224", "map", {"img_size": 32, "depth": 1})])
def test_a_readout_exports_with_the_torch_vectors(arch, pooling, args, tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder(arch, pooling=pooling, **args).eval()
    export_image_tower(encoder, tmp_path / "model.onnx")
    pixels = torch.randn(2, 3, args["img_size"], args["img_size"])
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: pixels.numpy()})[0]
    with torch.inference_mode():
        expected = encoder(pixels).numpy()
    assert got.shape == (2, encoder.embed_dim)
    np.testing.assert_allclose(got, expected, atol=1e-5)
