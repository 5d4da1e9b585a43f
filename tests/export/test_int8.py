"""The int8 decision: a quantised graph is written exactly when it meets its tolerance."""

from __future__ import annotations

import json
import shutil

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
from zoo.errors import ManifestError

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


@pytest.mark.parametrize("family", ["vit", "resnet", "int8"])
def test_entry_holds_int8_exactly_when_it_passed(family, request):
    ex = request.getfixturevalue(f"{family}_export")
    entry = ex.result.entry
    config = entry.read_config()
    report = config.onnx["parity"]["image_int8"]
    written = (entry.path / "model.int8.onnx").is_file()
    assert written == report["passed"] == ("image_int8" in config.onnx["files"])
    assert config.metrics["onnx_image_int8_written"]["value"].startswith("yes" if written else "no")
    if written:
        model = zoo.load(entry.ref, backend="onnx", registry=ex.registry, precision="int8")
        assert model.precision == "int8"
    else:
        with pytest.raises(NotExportedError, match="missed its parity tolerances"):
            zoo.load(entry.ref, backend="onnx", registry=ex.registry, precision="int8")
    assert np.isfinite(report["figures"]["golden"]["min_cosine"])


def test_written_int8_is_in_the_manifest_and_serves(int8_export):
    """The "written" branch end to end: file on disk, covered by the manifest, loaded as int8, close to fp32."""
    entry = int8_export.result.entry
    assert (entry.path / "model.int8.onnx").is_file()
    manifest = json.loads((entry.path / "manifest.json").read_text())
    assert "model.int8.onnx" in manifest["files"]
    int8 = zoo.load(entry.ref, backend="onnx", registry=int8_export.registry, precision="int8")
    fp32 = zoo.load(entry.ref, backend="onnx", registry=int8_export.registry)
    assert int8.precision == "int8" and fp32.precision == "fp32"
    images = np.random.default_rng(0).integers(0, 256, size=(6, 28, 28, 1), dtype=np.uint8)
    a, b = int8.embed_uint8(images), fp32.embed_uint8(images)
    assert not np.array_equal(a, b)  # really another graph
    assert (a * b).sum(axis=1).mean() > 0.9


def test_tampered_int8_file_is_refused(int8_export, tmp_path):
    entry = int8_export.result.entry
    copy = tmp_path / "entry"
    shutil.copytree(entry.path, copy)
    graph = copy / "model.int8.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"model\.int8\.onnx"):
        zoo.load(copy, backend="onnx", precision="int8")
