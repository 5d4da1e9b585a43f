"""Push an entry to a Hub server, pull it back through another, and get the same model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError

import zoo
from zoo import hub
from zoo.errors import RefError
from zoo.tokenizer import train_wordpiece

IMAGES = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
CAPTIONS = ["a small red circle", "a large blue square", "a green star", "a yellow triangle"] * 3


def _encoder(seed: int, **config_changes) -> zoo.ImageEncoder:
    torch.manual_seed(seed)
    encoder = zoo.build_encoder("vit_nano", in_chans=1, method="dino")
    if config_changes:
        encoder.config = encoder.config.replace(**config_changes)
    return encoder.eval()


def test_push_then_pull_through_olah_gives_the_same_embeddings(hub_server, olah_server, repo_id):
    metrics = {"knn_top1": {"value": 0.91, "dataset": "digits", "split": "test"}}
    encoder = _encoder(0, metrics=metrics, data="digits", license="apache-2.0")
    saved = zoo.save(encoder, "tiny")
    pushed = hub.push("tiny", repo_id, endpoint=hub_server.url, token=hub_server.token)
    assert len(pushed.commit) == 40 and pushed.embedding_space == saved.embedding_space

    entry = hub.pull(repo_id, endpoint=olah_server.url)  # olah reads the git repo hubserver wrote
    assert entry.ref == f"{hub.entry_name(repo_id)}@1"
    assert entry.embedding_space == saved.embedding_space
    source = entry.read_config().hub
    assert source is not None and source.commit == pushed.commit and source.format == "sslzoo"
    assert source.revision == "main"
    loaded = zoo.load(entry.ref)
    np.testing.assert_array_equal(loaded.embed_uint8(IMAGES), encoder.embed_uint8(IMAGES))

    info = zoo.info(entry.ref)
    assert info["config"]["hub"]["commit"] == pushed.commit
    assert info["config"]["license"] == "apache-2.0"

    card = ModelCard.load(hf_hub_download(repo_id, "README.md", revision=pushed.commit, endpoint=olah_server.url))
    data = card.data.to_dict()
    assert data["library_name"] == "sslzoo" and data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "image-feature-extraction" and data["datasets"] == ["digits"]
    assert {"dino", "vit_tiny_patch16_224", "self-supervised", "image-feature-extraction"} <= set(data["tags"])
    metric = data["model-index"][0]["results"][0]["metrics"][0]
    assert metric["type"] == "knn_top1" and metric["value"] == pytest.approx(0.91)


def test_zoo_load_of_a_hub_ref_registers_once(hub_server, monkeypatch, repo_id):
    encoder = _encoder(1)
    zoo.save(encoder, "tiny")
    pushed = hub.push("tiny", repo_id, endpoint=hub_server.url, token=hub_server.token)
    monkeypatch.setenv("SSLZOO_HF_ENDPOINT", hub_server.url)  # read at call time
    first = zoo.load(f"hf-hub:{repo_id}@{pushed.commit}")
    again = zoo.load(f"hf-hub:{repo_id}")  # main is the same commit: the registered entry is reused
    assert first.entry.ref == again.entry.ref == f"{hub.entry_name(repo_id)}@1"
    np.testing.assert_array_equal(again.embed_uint8(IMAGES), encoder.embed_uint8(IMAGES))
    assert [e.ref for e in zoo.list() if e.name == hub.entry_name(repo_id)] == [first.entry.ref]


def test_revisions_pull_exactly_what_was_pushed(hub_server, olah_server, repo_id):
    first, second, branch = _encoder(2), _encoder(3), _encoder(4)
    zoo.save(first, "tiny")
    zoo.save(second, "tiny")
    zoo.save(branch, "other")
    one = hub.push("tiny@1", repo_id, endpoint=hub_server.url, token=hub_server.token, tag="v1")
    two = hub.push("tiny@2", repo_id, endpoint=hub_server.url, token=hub_server.token)
    exp = hub.push("other", repo_id, revision="exp", endpoint=hub_server.url, token=hub_server.token)
    assert len({one.commit, two.commit, exp.commit}) == 3

    refs = HfApi(endpoint=olah_server.url).list_repo_refs(repo_id)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": two.commit, "exp": exp.commit}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": one.commit}

    for revision, model in [(one.commit, first), ("v1", first), (two.commit, second), ("main", second),
                            ("exp", branch)]:
        entry = hub.pull(repo_id, revision=revision, endpoint=olah_server.url)
        np.testing.assert_array_equal(zoo.load(entry.ref).embed_uint8(IMAGES), model.embed_uint8(IMAGES),
                                      err_msg=f"revision {revision}")
    # Five pulls of three commits: three versions.
    assert len([e for e in zoo.list() if e.name == hub.entry_name(repo_id)]) == 3
    assert hub.pull(f"{repo_id}@v1", endpoint=olah_server.url).read_config().hub.commit == one.commit


def test_a_clip_entry_travels_with_its_text_tower_and_tokenizer(hub_server, olah_server, repo_id):
    torch.manual_seed(5)
    clip = zoo.build_clip("vit_nano", train_wordpiece(CAPTIONS, vocab_size=120), embed_dim=32, img_size=28,
                          in_chans=1, text_args={"width": 64, "layers": 2, "heads": 2}).eval()
    zoo.save(clip, "tinyclip")
    pushed = hub.push("tinyclip", repo_id, endpoint=hub_server.url, token=hub_server.token)
    files = set(HfApi(endpoint=olah_server.url).list_repo_files(repo_id, revision=pushed.commit))
    assert {"model.safetensors", "text.safetensors", "tokenizer.json", "config.json", "README.md",
            "manifest.json"} <= files
    card = ModelCard.load(hf_hub_download(repo_id, "README.md", endpoint=olah_server.url)).data.to_dict()
    assert card["pipeline_tag"] == "zero-shot-image-classification"

    loaded = zoo.load(hub.pull(repo_id, endpoint=olah_server.url).ref)
    np.testing.assert_array_equal(loaded.embed_texts(CAPTIONS[:4]), clip.embed_texts(CAPTIONS[:4]))
    np.testing.assert_array_equal(loaded.embed_uint8(IMAGES), clip.embed_uint8(IMAGES))


def test_extra_and_onnx_files_travel_and_a_push_replaces_what_an_earlier_one_left(hub_server, repo_id):
    graph = b"an ONNX graph, as far as the hub is concerned"
    zoo.save(_encoder(6), "tiny", extra_files={"notes.txt": b"first version", "model.onnx": graph})
    zoo.save(_encoder(7), "tiny")
    api = HfApi(endpoint=hub_server.url)
    first = hub.push("tiny@1", repo_id, endpoint=hub_server.url, token=hub_server.token)
    second = hub.push("tiny@2", repo_id, endpoint=hub_server.url, token=hub_server.token)
    assert {"notes.txt", "model.onnx"} <= set(api.list_repo_files(repo_id, revision=first.commit))
    assert not {"notes.txt", "model.onnx"} & set(api.list_repo_files(repo_id, revision=second.commit))
    assert ".gitattributes" in api.list_repo_files(repo_id, revision=second.commit)
    old = hub.pull(repo_id, revision=first.commit, endpoint=hub_server.url)
    assert (old.path / "model.onnx").read_bytes() == graph and "model.onnx" in old.manifest()["files"]
    assert not (hub.pull(repo_id, endpoint=hub_server.url).path / "model.onnx").exists()


def test_private_repo_needs_the_token(hub_server, repo_id):
    zoo.save(_encoder(8), "tiny")
    hub.push("tiny", repo_id, private=True, endpoint=hub_server.url, token=hub_server.token)
    with pytest.raises(RefError, match="or it is private"):
        hub.pull(repo_id, endpoint=hub_server.url)
    assert hub.pull(repo_id, endpoint=hub_server.url, token=hub_server.token).version == 1


def test_push_refuses_a_modified_entry(hub_server, repo_id):
    entry = zoo.save(_encoder(9), "tiny")
    weights = entry.path / "model.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(zoo.ManifestError, match=r"model\.safetensors"):
        hub.push("tiny", repo_id, endpoint=hub_server.url, token=hub_server.token)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub_server.url).model_info(repo_id)  # nothing was created before the check
