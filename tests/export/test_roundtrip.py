"""Round trips per architecture family: PyTorch entry → ONNX entry → same vectors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import SIZES, drawn_images
from tokenizers import processors

import zoo
from export.parity import FP32_TOLERANCE
from export.pipeline import export_entry
from zoo.backend import ClipBackend
from zoo.registry import Registry
from zoo.tokenizer import EOT_ID, train_wordpiece


@pytest.fixture(params=["vit", "resnet"])
def image_export(request):
    return request.getfixturevalue(f"{request.param}_export")


def test_image_round_trip_meets_fp32_tolerances(image_export):
    ex = image_export
    config = ex.result.entry.read_config()
    report = config.onnx["parity"]["image_fp32"]
    assert report["passed"] and not report["failures"]
    for name in ("golden", "random", "digits", "golden batch=1"):
        figures = report["figures"][name]
        assert figures["rel_max_abs_diff"] <= FP32_TOLERANCE.max_abs_diff, name
        assert figures["min_cosine"] >= FP32_TOLERANCE.min_cosine, name
    for name in ("digits k-NN", "digits k-NN mixed"):  # own index, and ONNX queries against a torch index
        assert report["figures"][name]["knn_agreement"] >= FP32_TOLERANCE.knn_agreement

    # Independently of the gate: the public API on images the gate never saw, through PIL preprocessing.
    images = drawn_images(6)
    expected = zoo.load(ex.source, registry=ex.registry).embed_images(images)
    onnx_model = zoo.load(ex.result.entry.ref, backend="onnx", registry=ex.registry)
    got = onnx_model.embed_images(images)
    assert got.shape == (6, config.embed_dim) and got.dtype == np.float32
    assert np.abs(got - expected).max() < FP32_TOLERANCE.max_abs_diff
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # normalisation is in the graph


def test_export_is_a_new_version_with_the_same_weights(image_export):
    ex = image_export
    source, new = ex.registry.resolve(ex.source), ex.result.entry
    assert new.name == source.name and new.version == source.version + 1
    assert not list(source.path.glob("*.onnx")), "the source version is immutable"
    source.verify()
    manifest = new.verify()
    assert "model.onnx" in manifest["files"]
    assert manifest["embedding_space"] == source.embedding_space  # same weights, same space
    assert (new.path / "model.safetensors").read_bytes() == (source.path / "model.safetensors").read_bytes()
    config = new.read_config()
    assert config.onnx["source"] == source.ref
    assert "onnx_image_fp32_max_abs_diff" in config.metrics
    card = (new.path / "README.md").read_text()
    assert "onnx_image_fp32_max_abs_diff" in card and "onnx_image_fp32_top1_agreement" in card
    json.loads((new.path / "config.json").read_text())


def test_dynamic_batch_axis(image_export):
    ex = image_export
    config = ex.result.entry.read_config()
    model = onnx.load(str(ex.result.entry.path / "model.onnx"))
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert graph_input.name == "pixels" and graph_output.name == "embeddings"
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ["batch", *config.preprocess.input_size]
    assert [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim] == ["batch", config.embed_dim]

    session = ort.InferenceSession(str(ex.result.entry.path / "model.onnx"), providers=["CPUExecutionProvider"])
    encoder = zoo.load(ex.source, registry=ex.registry)
    pixels = torch.randn(5, *config.preprocess.input_size, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = encoder(pixels).numpy()
    five = session.run(None, {"pixels": pixels.numpy()})[0]
    one = session.run(None, {"pixels": pixels[:1].numpy()})[0]
    assert five.shape == (5, config.embed_dim) and one.shape == (1, config.embed_dim)
    np.testing.assert_allclose(five, expected, atol=1e-5)
    np.testing.assert_allclose(one[0], five[0], atol=1e-5)


def test_clip_text_tower_round_trip(clip_export):
    ex = clip_export
    entry = ex.result.entry
    config = entry.read_config()
    parity = config.onnx["parity"]
    assert parity["text_fp32"]["passed"] and parity["image_fp32"]["passed"]
    assert parity["text_fp32"]["figures"]["captions"]["rel_max_abs_diff"] <= FP32_TOLERANCE.max_abs_diff
    assert parity["text_fp32"]["figures"]["caption→image top-1"]["retrieval_agreement"] >= 0.99
    assert "text_int8" not in parity and not (entry.path / "text.int8.onnx").exists()  # exported with int8=False

    text_model = onnx.load(str(entry.path / "text.onnx"))
    assert [i.name for i in text_model.graph.input] == ["ids", "mask"]
    for value in text_model.graph.input:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"

    torch_clip = zoo.load(ex.source, registry=ex.registry)
    onnx_clip = zoo.load(entry.ref, backend="onnx", registry=ex.registry)
    texts = ["a red circle", "words the tokenizer never saw: zyx", "", "a blue square at the top " * 8]
    np.testing.assert_allclose(onnx_clip.embed_texts(texts), torch_clip.embed_texts(texts), atol=1e-4)
    images = drawn_images(3, size=50)
    np.testing.assert_allclose(onnx_clip.embed_images(images), torch_clip.embed_images(images), atol=1e-4)
    assert onnx_clip.embed_texts([]).shape == (0, config.embed_dim)
    assert onnx_clip.similarity_scale() == pytest.approx(torch_clip.similarity_scale(), rel=1e-6)
    assert isinstance(onnx_clip, ClipBackend) and isinstance(torch_clip, ClipBackend)  # one contract, two backends
    pixels = np.random.default_rng(0).standard_normal((2, *config.preprocess.input_size)).astype(np.float32)
    np.testing.assert_allclose(onnx_clip.embed_array(pixels), torch_clip.embed_array(pixels), atol=1e-4)


def test_cli_prints_the_parity_table(vit_export):
    out = vit_export.cli_output
    assert "exported vit@1 -> vit@2" in out
    assert "image_fp32" in out and "PASS -> model.onnx" in out
    for column in ("max|Δ|", "min cos", "top-1 agree"):
        assert column in out
    assert "image_int8" in out  # int8 is on by default: its verdict is printed either way


def test_a_tokenizer_that_closes_with_its_own_token_embeds_the_same_strings_in_onnx(tmp_path) -> None:
    """MiniLM closes with ``[SEP]``, open_clip's BPE with ``<end_of_text>``: the torch-free runtime must
    tokenise strings as the torch tower does, not stamp sslzoo's ``[EOT]`` id on the last token."""
    tokenizer = train_wordpiece(["a red circle", "a blue square at the top", "a green star"] * 4, vocab_size=80)
    tokenizer.add_special_tokens(["[CLS]", "[SEP]"])
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    assert sep_id != EOT_ID
    registry = Registry(tmp_path, readonly_roots=())
    torch.manual_seed(3)
    clip = zoo.build_clip("vit_nano", tokenizer, embed_dim=24, img_size=32,
                          text_args={"width": 32, "layers": 1, "heads": 2}, context_length=12)
    zoo.save(clip, "bert-style", registry=registry)
    exported = export_entry("bert-style@1", sizes=SIZES, int8=False, registry=registry)
    texts = ["a red circle", "a blue square at the top " * 4, ""]
    onnx_clip = zoo.load(exported.entry.ref, backend="onnx", registry=registry)
    np.testing.assert_allclose(onnx_clip.embed_texts(texts), clip.embed_texts(texts), atol=1e-4)
