"""A concept head (TopK, gather and the confidence mix) exports to ONNX and gives the torch vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import SIZES, drawn_images

import zoo
from export.parity import FP32_TOLERANCE
from export.pipeline import export_entry
from zoo.concepts import concept_head, install_concept_head, set_concepts
from zoo.config import ConceptHeadConfig
from zoo.encoders import build_encoder
from zoo.registry import Registry


@pytest.mark.parametrize(("sketch_dims", "gate_on", "gate"), [(0, "top1", 0.0), (5, "top1", 0.0), (0, "agreement", 0.2)])
def test_a_concept_head_round_trips_through_onnx(tmp_path, sketch_dims: int, gate_on: str, gate: float) -> None:
    torch.manual_seed(0)
    registry = Registry(tmp_path)
    encoder = build_encoder("resnet_narrow", img_size=28, in_chans=3, embed_dim=16)
    config = ConceptHeadConfig(classes=12, top_k=4, gate=gate, gate_on=gate_on, sketch_dims=sketch_dims)
    head = concept_head(install_concept_head(encoder.backbone, config))
    set_concepts(head, torch.randn(12, head.projection.in_features) * 4, torch.randn(12), torch.randn(12, 16))
    encoder.config = encoder.config.replace(concepts=config)
    source = zoo.save(encoder, "concepts", registry=registry)
    result = export_entry(source.ref, int8=False, sizes=SIZES, registry=registry)
    images = drawn_images(6)
    expected = zoo.load(source.ref, registry=registry).embed_images(images)
    got = zoo.load(result.entry.ref, backend="onnx", registry=registry).embed_images(images)
    assert np.abs(got - expected).max() < FP32_TOLERANCE.max_abs_diff
