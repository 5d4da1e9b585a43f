"""Bad input and broken downloads: each a clear error, and nothing half-downloaded is ever used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hubserver import seed_repo
from huggingface_hub import HfApi

import zoo
from zoo import hub
from zoo.errors import ConfigError, ManifestError, RefError, UnsafeWeightsError

IMAGES = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)


@pytest.fixture
def pushed(hub_server, repo_id):
    """A small entry pushed to the test hub: ``(repo_id, commit, expected embeddings)``."""
    torch.manual_seed(11)
    encoder = zoo.build_encoder("vit_nano", in_chans=1).eval()
    zoo.save(encoder, "tiny")
    result = hub.push("tiny", repo_id, endpoint=hub_server.url, token=hub_server.token)
    return repo_id, result.commit, encoder.embed_uint8(IMAGES)


def _cached(cache: Path, suffix: str) -> list[Path]:
    return [p for p in cache.rglob("*") if p.name.endswith(suffix)] if cache.exists() else []


def _blobs(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("blobs/*") if p.is_file()] if cache.exists() else []


def test_unknown_repo(hub_server, olah_server):
    for server in (hub_server, olah_server):
        with pytest.raises(RefError, match="no Hub repository 'acme/does-not-exist'"):
            hub.pull("acme/does-not-exist", endpoint=server.url)


def test_missing_revision_names_the_ones_that_exist(pushed, hub_server, olah_server):
    repo_id, _, _ = pushed
    for server in (hub_server, olah_server):  # olah answers 401 here, the test hub 404 RevisionNotFound
        with pytest.raises(RefError, match=r"has no revision 'v9'; it has branches \['main'\], tags \[\]"):
            hub.pull(f"{repo_id}@v9", endpoint=server.url)


def test_malformed_targets():
    for bad in ("not-a-repo", "org/", "org/repo@", "hf-hub:/x"):
        with pytest.raises(RefError):
            hub.pull(bad, endpoint="http://127.0.0.1:9")
    with pytest.raises(RefError, match="revision='b' was given too"):
        hub.parse_target("org/repo@a", "b")


def test_pickle_only_repo_is_refused_without_downloading_the_pickle(hub_server, hf_cache, repo_id):
    # A timm-layout repo whose weights are only a pickle; uploaded the way any client would.
    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    api.create_repo(repo_id)
    timm_config = {"architecture": "resnet18", "num_classes": 0, "pretrained_cfg": {"input_size": [3, 32, 32]}}
    api.upload_file(path_or_fileobj=json.dumps(timm_config).encode(), path_in_repo="config.json", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"\x80\x04K\x01.", path_in_repo="pytorch_model.bin", repo_id=repo_id)
    with pytest.raises(UnsafeWeightsError, match=r"only as pickle \(pytorch_model.bin\).*safetensors"):
        hub.pull(repo_id, endpoint=hub_server.url)
    assert not _cached(hf_cache, ".bin") and zoo.list() == []


def test_open_clip_repo_with_only_a_pickle_is_refused(hub_server, hf_cache, repo_id):
    seed_repo(hub_server.root, repo_id, {"open_clip_config.json": b'{"model_cfg": {}}',
                                         "open_clip_pytorch_model.bin": b"\x80\x04K\x01."})
    with pytest.raises(UnsafeWeightsError, match=r"open_clip_pytorch_model\.bin"):
        hub.pull(repo_id, endpoint=hub_server.url)
    assert not _cached(hf_cache, ".bin")


def test_repos_sslzoo_cannot_load(hub_server, repo_id):
    seed_repo(hub_server.root, repo_id, {"README.md": b"# just words\n", "data.csv": b"a,b\n1,2\n"})
    with pytest.raises(ConfigError, match="not a model repo sslzoo can load"):
        hub.pull(repo_id, endpoint=hub_server.url)
    seed_repo(hub_server.root, repo_id, {"config.json": b'{"model_type": "bert", "architectures": ["BertModel"]}',
                                         "model.safetensors": b"\0" * 16}, message="transformers layout")
    with pytest.raises(ConfigError, match=r"transformers repo \(model_type 'bert'\).*model type ijepa only"):
        hub.pull(repo_id, endpoint=hub_server.url)
    with pytest.raises(ConfigError, match="is not a timm repo"):
        hub.pull(repo_id, endpoint=hub_server.url, format="timm")


def test_catalogue_checkpoint_in_an_unsupported_layout_is_refused_before_any_download(monkeypatch):
    from zoo.hub import catalogue

    gguf = catalogue.CatalogueEntry("llm-gguf", "acme/some-gguf", "none", "none", "mit", "gguf", notes="no converter")
    monkeypatch.setattr(catalogue, "CATALOGUE", (*catalogue.CATALOGUE, gguf))
    with pytest.raises(ConfigError, match=r"llm-gguf .*gguf checkpoint.*no converter"):
        hub.pull("llm-gguf", endpoint="http://127.0.0.1:9")  # nothing listens there: no request is made


def test_connection_dropped_mid_body_then_server_down(pushed, hub_server, hf_cache):
    repo_id, _, expected = pushed
    hub_server.faults({"model.safetensors": ["drop", "error", "error", "error"]})
    with pytest.raises(hub.HubError, match="nothing was registered"):
        hub.pull(repo_id, endpoint=hub_server.url)
    left = hub_server.pending_faults().get("model.safetensors", [])
    assert "drop" not in left and len(left) < 3  # the body was cut, then at least one resume failed
    assert zoo.list() == [e for e in zoo.list() if e.name == "tiny"]  # nothing registered from the hub
    assert not _cached(hf_cache, ".incomplete")
    assert all(b.stat().st_size < 100_000 for b in _blobs(hf_cache))  # small files only: no half weights

    hub_server.faults({})
    entry = hub.pull(repo_id, endpoint=hub_server.url)  # a clean retry
    np.testing.assert_array_equal(zoo.load(entry.ref).embed_uint8(IMAGES), expected)


def test_a_dropped_connection_is_resumed_and_the_result_verified(pushed, hub_server):
    repo_id, _, expected = pushed
    hub_server.faults({"model.safetensors": ["drop"]})  # huggingface_hub resumes with a Range request
    entry = hub.pull(repo_id, endpoint=hub_server.url)
    assert hub_server.pending_faults() == {}  # the connection really was cut once
    np.testing.assert_array_equal(zoo.load(entry.ref).embed_uint8(IMAGES), expected)


def test_a_corrupt_download_is_evicted_and_never_registered(pushed, hub_server, hf_cache):
    repo_id, commit, expected = pushed
    hub_server.faults({"model.safetensors": ["corrupt"]})  # right length, wrong bytes
    with pytest.raises(ManifestError, match=r"model\.safetensors does not match its sha256"):
        hub.pull(repo_id, endpoint=hub_server.url)
    assert [e.name for e in zoo.list()] == ["tiny"]
    snapshot = next(hf_cache.rglob(f"snapshots/{commit}"))
    assert not (snapshot / "model.safetensors").exists()
    entry = hub.pull(repo_id, endpoint=hub_server.url)
    np.testing.assert_array_equal(zoo.load(entry.ref).embed_uint8(IMAGES), expected)


def test_a_repo_edited_behind_the_manifest_is_refused(pushed, hub_server):
    repo_id, _, _ = pushed
    other = zoo.save(zoo.build_encoder("vit_nano", in_chans=1), "other")
    seed_repo(hub_server.root, repo_id, {"model.safetensors": other.path / "model.safetensors"}, message="swap")
    with pytest.raises(ManifestError, match=r"model\.safetensors does not match its sha256 in manifest\.json"):
        hub.pull(repo_id, endpoint=hub_server.url)
    assert {e.name for e in zoo.list()} == {"tiny", "other"}


OFFLINE_SCRIPT = """
import sys, numpy as np, zoo
from zoo import hub
images = np.load(sys.argv[1])
for ref, out in zip(sys.argv[2::2], sys.argv[3::2]):
    model = zoo.load(ref)
    np.save(out, model.embed_uint8(images))
    print(model.entry.ref, model.entry.read_config().hub.commit)
try:
    hub.pull("acme/never-pulled")
except hub.HubError as exc:
    print("ERROR", exc)
"""


def test_offline_from_a_filled_cache(pushed, hub_server, hf_cache, tmp_path):
    """``HF_HUB_OFFLINE`` is read at import, so the offline run is a fresh process with an empty registry."""
    repo_id, commit, expected = pushed
    hub.pull(repo_id, endpoint=hub_server.url)  # fills the huggingface_hub cache
    np.save(tmp_path / "images.npy", IMAGES)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_cache),
           "SSLZOO_HOME": str(tmp_path / "fresh-home"), "SSLZOO_HF_ENDPOINT": "http://127.0.0.1:9"}
    args = [str(tmp_path / "images.npy"), f"hf-hub:{repo_id}", str(tmp_path / "main.npy"),
            f"hf-hub:{repo_id}@{commit}", str(tmp_path / "pinned.npy")]
    out = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, *args], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    by_branch, by_commit, error = out.stdout.strip().splitlines()
    assert by_branch == by_commit == f"{hub.entry_name(repo_id)}@1 {commit}"
    assert error.startswith("ERROR offline (HF_HUB_OFFLINE=1) and acme/never-pulled@main was never pulled")
    for name in ("main", "pinned"):
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), expected)
