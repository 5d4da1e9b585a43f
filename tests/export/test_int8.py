"""The int8 decision: a quantised graph is written exactly when it meets its tolerance."""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import SIZES, sslzoo_home_env

import zoo
from export.checks import ImageEmbeddings
from export.errors import NotExportedError
from export.golden import image_sets
from export.parity import Tolerance
from export.pipeline import quantize_image_gated
from export.runtime import OnnxImageEncoder

LENIENT = Tolerance(max_abs_diff=None, min_cosine=0.9, knn_agreement=0.0)  # untrained: answers are ties
UNREACHABLE_FOR_INT8 = Tolerance(max_abs_diff=None, min_cosine=0.99999999, knn_agreement=1.0)


@pytest.fixture(scope="module")
def fp32_graph(resnet_export):
    entry = resnet_export.result.entry
    config = entry.read_config()
    with sslzoo_home_env(resnet_export.home):  # the dataset cache, before the per-test home is set
        sets = image_sets(config.preprocess, SIZES)
    session = OnnxImageEncoder(entry.path / "model.onnx", config)
    return entry.path / "model.onnx", config, sets, ImageEmbeddings.from_onnx(session, sets)


def test_int8_written_when_it_meets_the_tolerance(fp32_graph, tmp_path):
    fp32, config, sets, vectors = fp32_graph
    target = tmp_path / "model.int8.onnx"
    report = quantize_image_gated(fp32, target, config, sets, vectors, LENIENT)
    assert report.passed and target.is_file()
    assert target.stat().st_size < 0.5 * fp32.stat().st_size  # int8 weights
    quantised = OnnxImageEncoder(target, config, precision="int8").embed_array(sets.golden)
    cosine = (quantised * vectors.vectors["golden"]).sum(axis=1)
    assert cosine.min() >= LENIENT.min_cosine
    assert report.figures["golden"]["min_cosine"] == pytest.approx(float(cosine.min()), abs=1e-6)


def test_int8_not_written_when_it_misses(fp32_graph, tmp_path):
    fp32, config, sets, vectors = fp32_graph
    target = tmp_path / "model.int8.onnx"
    report = quantize_image_gated(fp32, target, config, sets, vectors, UNREACHABLE_FOR_INT8)
    assert not report.passed and not target.exists()
    assert any("min cosine" in failure for failure in report.failures)
    assert report.figures["golden"]["min_cosine"] < 0.99999999  # int8 really does move vectors


@pytest.mark.parametrize("family", ["vit", "resnet"])
def test_entry_holds_int8_exactly_when_it_passed(family, request):
    ex = request.getfixturevalue(f"{family}_export")
    entry = ex.result.entry
    config = entry.read_config()
    report = config.extra["onnx"]["parity"]["image_int8"]
    written = (entry.path / "model.int8.onnx").is_file()
    assert written == report["passed"] == ("image_int8" in config.extra["onnx"]["files"])
    assert config.metrics["onnx_image_int8_written"]["value"].startswith("yes" if written else "no")
    if written:
        model = zoo.load(entry.ref, backend="onnx", registry=ex.registry, precision="int8")
        assert model.precision == "int8"
    else:
        with pytest.raises(NotExportedError, match="missed its parity tolerances"):
            zoo.load(entry.ref, backend="onnx", registry=ex.registry, precision="int8")
    assert np.isfinite(report["figures"]["golden"]["min_cosine"])
