"""Exports that cannot succeed fail with one clear error and save nothing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from export_helpers import SIZES
from onnx import numpy_helper
from torch import nn

import export.pipeline
import zoo
from export.errors import ExportError, ParityError, UnsupportedOperatorError
from export.onnx_export import export_image_tower, export_module
from zoo.cli import main


@torch.library.custom_op("sslzoo_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    """An operator with no ONNX translation (a custom op nobody registered one for)."""
    return x * 2


@mystery.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Mystery(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mystery(x)


class Doubler(nn.Module):
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels * 2


def test_unknown_ref(capsys):
    assert main(["export", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "sslzoo export: error:" in err and "no model named 'no-such-model'" in err


def test_ambiguous_ref(capsys):
    assert main(["export", "org/repo"]) == 2
    assert "ambiguous" in capsys.readouterr().err


def test_operator_without_onnx_mapping(tmp_path):
    encoder = zoo.build_encoder("vit_nano", in_chans=1)
    encoder.backbone.fc_norm = Mystery()  # timm's ViT calls fc_norm between pooling and head
    with pytest.raises(UnsupportedOperatorError, match=r"sslzoo_test\.mystery.*cannot translate to ONNX") as info:
        export_image_tower(encoder, tmp_path / "model.onnx")
    assert info.value.operators == ("sslzoo_test.mystery",)
    assert not (tmp_path / "model.onnx").exists()


def test_opset_the_exporter_cannot_produce(tmp_path):
    # torch's exporter starts at opset 18 and silently keeps 18 when down-conversion fails.
    with pytest.raises(ExportError, match=r"asked for ONNX opset 13 but .* produced 18"):
        export_module(Doubler(), [torch.randn(2, 4)], tmp_path / "m.onnx", ["pixels"], opset=13)
    assert not (tmp_path / "m.onnx").exists()


def test_parity_gate_rejects_a_graph_that_differs(vit_export, monkeypatch, tmp_path):
    """A graph whose weights drifted by 5 % is exported 'successfully' but must not be saved."""
    good = vit_export.result.entry.path / "model.onnx"

    def drifted_export(encoder, path, opset=18):
        model = onnx.load(str(good))
        weight = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.05, weight.name))
        onnx.save(model, str(path))
        return model

    monkeypatch.setattr(export.pipeline, "export_image_tower", drifted_export)
    with pytest.raises(ParityError, match="misses the parity tolerances against torch") as info:
        export.pipeline.export_entry(vit_export.source, name="vit-drifted", registry=vit_export.registry, int8=False,
                                     sizes=SIZES)
    assert info.value.figures["figures"]["golden"]["rel_max_abs_diff"] > 1e-4
    assert "vit-drifted" not in vit_export.registry.names()
