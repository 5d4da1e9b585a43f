"""``POST /index/projection``'s logic over a real FAISS + SQLite store: PCA against scikit-learn, t-SNE query
placement, the per-version cache, sampling and errors. (The endpoint itself is driven by the browser tests.)"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from sklearn.decomposition import PCA

from service.errors import BadRequest, NotFound
from service.index import IndexSpec, LocalIndexStore
from service.indexing import Indexer
from service.projection import Projector, strip_data_uris
from service.settings import Settings

DIM = 16


class NoEmbedder:
    """The projector is only given raw vectors here; touching the embedder would be a bug."""

    def __getattr__(self, name):
        raise AssertionError(f"embedder.{name} used for raw vectors")


@pytest.fixture
def store(tmp_path):
    s = LocalIndexStore(tmp_path / "indexes")
    yield s
    s.close()


@pytest.fixture
def projector(store):
    return Projector(Indexer(store, NoEmbedder(), Settings()))


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three separated clusters on the sphere, labelled a/b/c."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, DIM)) * 3
    labels = [("a", "b", "c")[i % 3] for i in range(n)]
    x = np.stack([centres["abc".index(lab)] + rng.normal(size=DIM) * 0.3 for lab in labels])
    return unit(x), labels


def make_index(store, name: str, vectors: np.ndarray, labels: list[str], prefix: str = "item"):
    index = store.create(IndexSpec(name=name, embedding_space="es-test", dim=DIM))
    metas = [{"label": lab, "thumbnail": "data:image/jpeg;base64,AAAA", "nested": {"pic": "data:image/png;base64,x",
                                                                                  "n": i}}
             for i, lab in enumerate(labels)]
    index.upsert([f"{prefix}-{i:03d}" for i in range(len(vectors))], vectors, metas)
    return index


def run(coro):
    return asyncio.run(coro)


def project(projector, name="pts", **kwargs):
    source = {"images": None, "texts": None, "vectors": None, "model": None, "embedding_space": None}
    source.update({k: kwargs.pop(k) for k in list(kwargs) if k in source})
    return run(projector.project(name, **kwargs, **source))


def aligned(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``ours`` with each axis's sign flipped to agree with ``reference`` (PCA axes have no intrinsic sign)."""
    signs = np.sign(np.sum(ours * reference, axis=0))
    return ours * signs


def test_pca_matches_scikit_learn_and_projects_a_query_the_same_way(store, projector):
    vectors, labels = clustered(60)
    make_index(store, "pts", vectors, labels)
    query = unit(np.random.default_rng(5).normal(size=(1, DIM)))
    out = project(projector, vectors=query.tolist())
    ids = out["points"]["ids"]
    assert ids == sorted(ids) and len(ids) == 60 and out["total"] == 60 and out["sampled"] is False
    order = [int(i.split("-")[1]) for i in ids]
    reference = PCA(n_components=2).fit(vectors.astype(np.float64))
    expected = reference.transform(vectors[order].astype(np.float64))
    got = np.column_stack([out["points"]["x"], out["points"]["y"]])
    signs = np.sign(np.sum(got * expected, axis=0))
    np.testing.assert_allclose(got * signs, expected, atol=1e-5)
    np.testing.assert_allclose(out["explained_variance"], reference.explained_variance_ratio_, atol=1e-6)
    q = reference.transform(query.astype(np.float64))[0] * signs
    assert out["query"]["placement"] == "projected"
    np.testing.assert_allclose([out["query"]["x"], out["query"]["y"]], q, atol=1e-5)


def test_points_carry_metadata_without_data_uris(store, projector):
    vectors, labels = clustered(6)
    make_index(store, "pts", vectors, labels)
    meta = project(projector)["points"]["metadata"]
    assert meta[0] == {"label": "a", "nested": {"n": 0}}
    assert strip_data_uris({"a": "DATA:image/png;base64,", "b": "data", "c": 1}) == {"b": "data", "c": 1}


def test_cached_per_index_version(store, projector):
    vectors, labels = clustered(30)
    index = make_index(store, "pts", vectors, labels)
    first = project(projector)
    again = project(projector)
    assert (first["cached"], again["cached"], projector.fits) == (False, True, 1)
    assert again["points"] == first["points"] and again["version"] == first["version"]
    assert project(projector, method="tsne")["cached"] is False  # another method is another entry
    assert projector.fits == 2

    index.upsert(["item-new"], unit(np.ones((1, DIM))), [{"label": "new"}])
    after_add = project(projector)
    assert after_add["cached"] is False and after_add["total"] == 31 and "item-new" in after_add["points"]["ids"]
    assert after_add["version"]["seq"] == first["version"]["seq"] + 1
    index.delete(["item-new"])
    after_delete = project(projector)
    assert after_delete["cached"] is False and after_delete["total"] == 30
    assert project(projector)["cached"] is True
    assert projector.fits == 4


def test_a_recreated_index_with_the_same_seq_and_count_is_not_served_from_the_cache(store, projector):
    vectors, labels = clustered(20, seed=1)
    make_index(store, "pts", vectors, labels)
    before = project(projector)
    store.drop("pts")
    time.sleep(0.01)
    make_index(store, "pts", clustered(20, seed=2)[0], labels, prefix="other")
    after = project(projector)
    assert after["version"] == before["version"]  # same seq and count: only the folder tells them apart
    assert after["cached"] is False and after["points"]["ids"][0] == "other-000"


def test_tsne_places_the_query_at_its_nearest_neighbour(store, projector):
    vectors, labels = clustered(40)
    make_index(store, "pts", vectors, labels)
    target = 17
    query = unit(vectors[target : target + 1] + 0.01)
    out = project(projector, method="tsne", vectors=query.tolist())
    ids = out["points"]["ids"]
    row = ids.index(f"item-{target:03d}")
    assert out["method"] == "tsne" and out["explained_variance"] is None
    assert out["query"]["placement"] == "nearest-neighbour" and out["query"]["nearest_id"] == f"item-{target:03d}"
    assert (out["query"]["x"], out["query"]["y"]) == (out["points"]["x"][row], out["points"]["y"][row])
    # the clusters stay apart in the map: each point's map neighbour mostly shares its label
    xy = np.column_stack([out["points"]["x"], out["points"]["y"]])
    lab = np.array([labels[int(i.split("-")[1])] for i in ids])
    dist = ((xy[:, None] - xy[None]) ** 2).sum(-1) + np.eye(len(xy)) * 1e9
    assert (lab[dist.argmin(1)] == lab).mean() > 0.9


def test_large_indexes_are_sampled_the_same_way_each_time(store, projector):
    vectors, labels = clustered(50)
    make_index(store, "pts", vectors, labels)
    first = project(projector, max_points=20)
    projector._cache.clear()
    second = project(projector, max_points=20)
    assert first["sampled"] and first["total"] == 50 and len(first["points"]["ids"]) == 20
    assert second["points"]["ids"] == first["points"]["ids"] and second["cached"] is False


def test_errors_are_client_errors_with_messages(store, projector):
    with pytest.raises(NotFound, match="no index named 'pts'"):
        project(projector)
    vectors, labels = clustered(3)
    make_index(store, "pts", vectors, labels)
    with pytest.raises(BadRequest, match="method must be one of"):
        project(projector, method="umap")
    with pytest.raises(BadRequest, match="t-SNE needs at least 4 items"):
        project(projector, method="tsne")
    with pytest.raises(BadRequest, match="max_points for tsne must be between 2 and 3000"):
        project(projector, method="tsne", max_points=5000)
    with pytest.raises(BadRequest, match="16-dimensional"):
        project(projector, vectors=[[1.0, 0.0]])
    index = store.open("pts")
    index.delete(["item-000", "item-001"])
    with pytest.raises(BadRequest, match="holds 1 item"):
        project(projector)
