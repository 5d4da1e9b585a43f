"""Every built-in entry, uploaded as a plain Hub repo the way any user or CI would, loads with ``zoo.load``.

No sslzoo push is involved: the entry's version folder goes up as it is, with the Hub's own CLI
(``hf upload org/name FOLDER``) or as one git commit of the folder (what ``git push`` of it leaves on
the server: weights in LFS, the rest as git blobs), and comes back through olah with
``zoo.load("hf-hub:org/name")``. The pulled entry must be the built-in one: the same embedding space,
the same bytes in every file but ``config.json`` (which gains the Hub provenance and nothing else),
and the same embeddings on every backend the entry offers. Parametrised over whatever
``zoo/builtin`` holds, so a newly shipped model is covered without touching this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hubserver import seed_repo

import zoo
from release.shipcheck import GOLDEN
from release.zoo_table import builtin_entries
from zoo import hub
from zoo.errors import ManifestError, UnsafeWeightsError
from zoo.manifest import MANIFEST, build_manifest
from zoo.registry import CONFIG, Entry

BUILTIN = builtin_entries()
TEXTS = ["a red circle", "a smiling face", "a blue square on white", "a cat"]
pytestmark = pytest.mark.skipif(not BUILTIN, reason="zoo/builtin is empty: nothing has been shipped (run `make zoo`)")


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def hf_upload(folder: Path, repo_id: str, server, home: Path) -> None:
    """``hf upload repo_id folder .``, the Hub's own CLI, run as a user runs it (its own process and home)."""
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": server.token, "HF_HOME": str(home),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run([sys.executable, "-m", "huggingface_hub.cli.hf", "upload", repo_id, str(folder), "."],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def git_push(folder: Path, repo_id: str, server, home: Path) -> None:
    """One commit of the folder's files, as ``git push`` of it leaves the server's repository."""
    seed_repo(server.root, repo_id, dict(_files(folder)), message="add the entry's folder")


PUBLISH = {"hf upload": hf_upload, "git push": git_push}


def _inputs(entry: Entry) -> np.ndarray:
    """A few random uint8 images at the entry's own input size (channels last)."""
    channels, height, width = entry.read_config().preprocess.input_size
    return np.random.default_rng(0).integers(0, 256, (3, height, width, channels), dtype=np.uint8)


def _embeddings(model, images: np.ndarray) -> dict[str, np.ndarray]:
    out = {"image": np.asarray(model.embed_uint8(images))}
    if model.config.text is not None:
        out["text"] = np.asarray(model.embed_texts(TEXTS))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("how", PUBLISH)
@pytest.mark.parametrize("entry", BUILTIN, ids=lambda e: e.name)
def test_a_builtin_entry_uploaded_as_a_plain_repo_loads_with_the_same_embeddings(
        entry, how, hub_server, olah_server, monkeypatch, repo_id, tmp_path):
    PUBLISH[how](entry.path, repo_id, hub_server, tmp_path / "hf-home")
    monkeypatch.setenv("SSLZOO_HF_ENDPOINT", olah_server.url)  # pulled through the independent server

    pulled = zoo.load(f"hf-hub:{repo_id}").entry
    assert pulled.embedding_space == entry.embedding_space and not pulled.path.is_relative_to(entry.path.parent)
    shipped, got = _files(entry.path), _files(pulled.path)
    assert set(got) == set(shipped)
    assert [n for n in shipped if n not in (CONFIG, MANIFEST) and got[n].read_bytes() != shipped[n].read_bytes()] == []
    config = pulled.read_config()
    assert config.hub.format == "sslzoo"
    assert config.replace(hub=None) == entry.read_config()

    images = _inputs(entry)
    backends = ["torch", *(["onnx"] if "model.onnx" in shipped else [])]
    for backend in backends:
        expected = _embeddings(zoo.load(entry.path, backend=backend), images)
        actual = _embeddings(zoo.load(f"hf-hub:{repo_id}", backend=backend), images)
        for tower, vectors in expected.items():
            delta = float(np.abs(actual[tower].astype(np.float64) - vectors).max())
            print(f"\nplain repo | {entry.name} | {how} | {backend} | {tower} {vectors.shape} | max |Δ| = {delta:.3g}")
            assert actual[tower].shape == vectors.shape and delta <= 1e-6, (backend, tower, delta)


def _small_builtin() -> Entry:
    return min((e for e in BUILTIN if (e.path / GOLDEN).is_file()),
               key=lambda e: sum(p.stat().st_size for p in e.path.iterdir()))


def _republished(tmp_path: Path, change) -> Path:
    """A copy of a small built-in entry's folder, changed by ``change(folder)``."""
    folder = tmp_path / "entry"
    shutil.copytree(_small_builtin().path, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    change(folder)
    return folder


def test_an_npz_that_needs_unpickling_is_refused_and_nothing_is_registered(hub_server, repo_id, tmp_path):
    def object_array(folder: Path) -> None:  # the publisher rebuilt the manifest: every hash is right
        np.savez(folder / GOLDEN, image=np.array([{"runs": "code when unpickled"}], dtype=object))
        (folder / MANIFEST).write_text(json.dumps(build_manifest(folder), indent=2))

    git_push(_republished(tmp_path, object_array), repo_id, hub_server, tmp_path)
    with pytest.raises(UnsafeWeightsError, match=r"golden\.npz .*without unpickling"):
        hub.pull(repo_id, endpoint=hub_server.url)
    assert not [e for e in zoo.list() if e.name == hub.entry_name(repo_id)]


def test_a_file_changed_after_the_manifest_was_written_is_refused(hub_server, olah_server, repo_id, tmp_path):
    def edit_card(folder: Path) -> None:  # an edit in the Hub's web editor after the upload, say; same size
        card = folder / "README.md"
        card.write_text(card.read_text().replace("---", "+++", 1))

    git_push(_republished(tmp_path, edit_card), repo_id, hub_server, tmp_path)
    with pytest.raises(ManifestError, match=r"README\.md does not match its sha256"):
        hub.pull(repo_id, endpoint=olah_server.url)
    assert not [e for e in zoo.list() if e.name == hub.entry_name(repo_id)]
