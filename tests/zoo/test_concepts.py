"""The concept head: ConSE mixed with the fitted projection by the classifier's confidence, saved and reloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.concepts import GATE_READS, ConceptHead, concept_head, install_concept_head, set_concepts
from zoo.config import GATE_STATISTICS, ConceptHeadConfig, EncoderConfig
from zoo.encoders import build_encoder
from zoo.errors import ConfigError

torch.manual_seed(0)


def _head(classes: int = 6, top_k: int = 3, width: int = 5, dim: int = 4) -> ConceptHead:
    head = ConceptHead(nn.Linear(width, dim), ConceptHeadConfig(classes=classes, top_k=top_k))
    set_concepts(head, torch.randn(classes, width), torch.randn(classes), torch.randn(classes, dim))
    return head


def test_forward_is_the_confidence_weighted_mix_of_projection_and_conse() -> None:
    head, x = _head(), torch.randn(7, 5)
    probs = torch.softmax(x @ head.classes.weight.T + head.classes.bias, dim=-1)
    expected = []
    for row, p in zip(x, probs, strict=True):
        top = p.argsort(descending=True)[:3]
        names = F.normalize(sum(p[k] * head.class_embeddings[k] for k in top), dim=0)
        fitted = F.normalize(head.projection(row), dim=0)
        expected.append((1 - p.max()) * fitted + p.max() * names)
    assert torch.allclose(head(x), torch.stack(expected), atol=1e-6)


def test_a_sure_classifier_answers_by_the_class_name_and_an_unsure_one_by_the_projection() -> None:
    head, x = _head(), torch.randn(2, 5)
    with torch.no_grad():
        head.classes.weight.zero_()
        head.classes.bias.copy_(torch.tensor([0.0, 40.0, 0, 0, 0, 0]))  # sure of class 1
        sure = F.normalize(head(x), dim=-1)
        head.classes.bias.copy_(torch.tensor([0.03, 0.02, 0.01, 0, 0, 0]))  # near uniform: confidence ~1/6
        unsure = head(x)
    assert torch.allclose(sure, head.class_embeddings[1].expand(2, -1), atol=1e-5)
    p = torch.softmax(head.classes.bias.detach(), dim=0)
    fitted = F.normalize(head.projection(x), dim=-1)
    names = F.normalize((p[:3, None] * head.class_embeddings[:3]).sum(0), dim=0)
    assert p.max() < 0.2 and torch.allclose(unsure, (1 - p.max()) * fitted + p.max() * names, atol=1e-5)


def test_below_the_gate_the_projection_answers_alone_and_above_it_the_names_weigh_in_linearly() -> None:
    head, x = _head(), torch.randn(1, 5)
    fitted = F.normalize(head.projection(x), dim=-1)
    with torch.no_grad():
        head.classes.weight.zero_()
        head.gate = 0.5
        head.classes.bias.copy_(torch.tensor([0.0, 0.5, 0, 0, 0, 0]))  # top probability about 0.25: under the gate
        assert torch.allclose(head(x), fitted, atol=1e-6)
        head.classes.bias.copy_(torch.tensor([0.0, 2.5, 0, 0, 0, 0]))  # top probability about 0.71
        p = torch.softmax(head.classes.bias, dim=0)
        top, index = p.topk(3)
        names = F.normalize((top[:, None] * head.class_embeddings[index]).sum(0), dim=0)
        weight = (p.max() - 0.5) / 0.5
        assert torch.allclose(head(x), (1 - weight) * fitted + weight * names, atol=1e-5)
    with pytest.raises(ConfigError, match="gate"):
        ConceptHeadConfig(classes=3, gate=1.0)


def test_the_agreement_gate_reads_how_far_the_top_classes_share_one_meaning() -> None:
    """Spread over near-synonyms the names get their say; spread as widely over unrelated classes, none."""
    head, x = _head(), torch.randn(1, 5)
    head.gate, head.gate_on = 0.5, "agreement"
    fitted = F.normalize(head.projection(x), dim=-1)
    with torch.no_grad():
        head.classes.weight.zero_()
        head.classes.bias.copy_(torch.tensor([3.0, 3.0, 3.0, 0, 0, 0]))  # top-1 probability about 0.32
        meaning = F.normalize(torch.randn(4), dim=0)
        head.class_embeddings.copy_(torch.eye(6, 4))  # unrelated classes: agreement about 0.55
        p = torch.softmax(head.classes.bias, dim=0)
        assert p.max() < 0.35  # a top-1 gate of 0.5 would give the names no say
        agreement = (p[:3, None] * head.class_embeddings[:3]).sum(0).norm()
        weight = (agreement - 0.5) / 0.5
        names = F.normalize((p[:3, None] * head.class_embeddings[:3]).sum(0), dim=0)
        assert torch.allclose(head(x), (1 - weight) * fitted + weight * names, atol=1e-5)
        head.class_embeddings[:3].copy_(meaning.expand(3, -1))  # three names of one thing: agreement = their mass
        weight = (p[:3].sum() - 0.5) / 0.5
        assert torch.allclose(head(x), (1 - weight) * fitted + weight * meaning, atol=1e-5)
        head.class_embeddings.copy_(torch.cat([torch.eye(4), torch.eye(4)[:2]]))
        head.classes.bias.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0, 0, 0]))  # four unrelated: agreement under 0.5
        assert torch.allclose(head(x), fitted, atol=1e-6)
    with pytest.raises(ConfigError, match="gate_on"):
        ConceptHeadConfig(classes=3, gate_on="entropy")
    assert tuple(GATE_READS) == GATE_STATISTICS  # every statistic a config accepts has a reading


def test_with_a_sketch_texts_rank_as_without_it() -> None:
    """Texts never write into the sketch's dimensions; the names must weigh against the fitted block alone."""
    torch.manual_seed(1)
    width, dim, sketch = 5, 6, 2
    sketched = ConceptHead(nn.Linear(width, dim), ConceptHeadConfig(classes=6, top_k=3, sketch_dims=sketch))
    set_concepts(sketched, torch.randn(6, width), torch.randn(6), F.pad(torch.randn(6, dim - sketch), (0, sketch)))
    plain = ConceptHead(nn.Linear(width, dim - sketch), ConceptHeadConfig(classes=6, top_k=3))
    with torch.no_grad():
        plain.projection.weight.copy_(sketched.projection.weight[: dim - sketch])
        plain.projection.bias.copy_(sketched.projection.bias[: dim - sketch])
        sketched.projection.weight[dim - sketch :].mul_(3.0)  # a sketch much longer than the fitted block
    set_concepts(plain, sketched.classes.weight, sketched.classes.bias, sketched.class_embeddings[:, : dim - sketch])
    x, texts = torch.randn(9, width) * 3, torch.randn(7, dim - sketch)
    with torch.no_grad():
        got = F.normalize(sketched(x), dim=-1)[:, : dim - sketch] @ texts.T
        want = F.normalize(plain(x), dim=-1) @ texts.T
    assert torch.equal(got.argsort(dim=1), want.argsort(dim=1))
    unscaled = ConceptHead(sketched.projection, ConceptHeadConfig(classes=6, top_k=3))
    set_concepts(unscaled, sketched.classes.weight, sketched.classes.bias, sketched.class_embeddings)
    with torch.no_grad():  # without the scaling, the names would outweigh the fitted block: other ranks
        assert not torch.equal((unscaled(x)[:, : dim - sketch] @ texts.T).argsort(dim=1), want.argsort(dim=1))


def test_config_round_trips_and_configs_without_a_head_keep_their_keys() -> None:
    plain = EncoderConfig(arch="resnet18")
    assert "concepts" not in plain.to_dict()  # configs written before the field keep their bytes
    withhead = plain.replace(concepts=ConceptHeadConfig(classes=10, top_k=4, gate=0.6))
    again = EncoderConfig.from_dict(json.loads(json.dumps(withhead.to_dict())))
    assert again == withhead and again.concepts == ConceptHeadConfig(10, 4, 0.6)
    assert list(withhead.to_dict()["concepts"]) == ["classes", "top_k", "gate"]  # older heads keep their bytes
    agreeing = plain.replace(concepts=ConceptHeadConfig(classes=10, top_k=4, gate=0.3, gate_on="agreement"))
    assert EncoderConfig.from_dict(json.loads(json.dumps(agreeing.to_dict()))).concepts == agreeing.concepts
    sketched = plain.replace(concepts=ConceptHeadConfig(classes=10, top_k=4, gate=0.6, sketch_dims=3))
    assert EncoderConfig.from_dict(json.loads(json.dumps(sketched.to_dict()))).concepts == sketched.concepts
    with pytest.raises(ConfigError, match="top_k"):
        ConceptHeadConfig(classes=3, top_k=4)


def test_install_refuses_a_backbone_without_a_linear_head() -> None:
    headless = build_encoder("resnet_narrow", img_size=28, in_chans=1)  # no embed_dim: no projection head
    with pytest.raises(ConfigError, match="linear projection head"):
        install_concept_head(headless.backbone, ConceptHeadConfig(classes=3, top_k=2))


def test_an_entry_with_a_concept_head_saves_and_loads_to_the_same_vectors(tmp_path) -> None:
    encoder = build_encoder("resnet_narrow", img_size=28, in_chans=1, embed_dim=8)
    config = ConceptHeadConfig(classes=5, top_k=2)
    head = concept_head(install_concept_head(encoder.backbone, config))
    width = head.projection.in_features
    set_concepts(head, torch.randn(5, width) * 3, torch.randn(5), torch.randn(5, 8))
    encoder.config = encoder.config.replace(concepts=config)
    images = np.random.default_rng(0).integers(0, 255, (4, 28, 28, 1), dtype=np.uint8)
    before = encoder.embed_uint8(images)
    entry = zoo.save(encoder, "concepts-test", registry=zoo.Registry(tmp_path))
    loaded = zoo.load(str(entry.path), backend="torch")
    assert isinstance(concept_head(loaded.backbone), ConceptHead)
    np.testing.assert_array_equal(loaded.embed_uint8(images), before)
