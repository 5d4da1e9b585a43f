"""The index outlives its server: a graceful restart, a ``kill -9`` mid-stream, and a missing default model.

Three servers share one data directory, in order: the first adds items and stops gracefully (its
shutdown hook snapshots FAISS); the second finds them (loaded from the snapshot), takes writes without
an API key, and is killed with SIGKILL during a stream of adds; the third must hold every add the
second acknowledged (replayed from SQLite onto the snapshot). All three start with a default model
that is not in the registry: they must stay up but not ready, and serve requests that name a model.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from svc_helpers import Server, image_uri

DIM = 8
SPACE = "durability-test-space"
#: Raw vectors need no model, and a start without loading torch is many seconds shorter; the last
#: server also checks how a default model missing from the registry is reported.
NO_MODEL = {"SSLZOO_DEFAULT_MODEL": "not-in-registry"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("durable_data")


@pytest.fixture(scope="module")
def first_items(service_home: Path, data_dir: Path) -> dict[str, np.ndarray]:
    """Items written by a first server, which then stops gracefully."""
    server = Server(service_home, data_dir, data_dir / "first.log", **NO_MODEL).wait(ready=False)
    try:
        vectors = np.random.default_rng(1).normal(size=(20, DIM)).astype(np.float32)
        ids = [f"first{i}" for i in range(20)]
        body = {"index": "vecs", "ids": ids, "vectors": vectors.tolist(), "embedding_space": SPACE,
                "metadata": [{"n": i} for i in range(20)]}
        assert server.post("/index/add", body).status_code == 200
    finally:
        server.stop()
    assert list((data_dir / "indexes" / "vecs").glob("faiss-*.index")), "a graceful stop snapshots the index"
    return dict(zip(ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), strict=True))


def _stream_adds(server: Server, acknowledged: dict[str, list[float]], stop: threading.Event) -> None:
    """Sequential single-item adds; an id counts only once its 200 has arrived."""
    rng = np.random.default_rng(2)
    i = 0
    while not stop.is_set():
        vector = rng.normal(size=DIM).astype(np.float32)
        item_id = f"stream{i}"
        try:
            response = requests.post(server.url + "/index/add", json={
                "index": "vecs", "ids": [item_id], "vectors": [vector.tolist()], "embedding_space": SPACE}, timeout=30)
        except requests.RequestException:
            return  # the server died mid-request: this add was never acknowledged
        if response.status_code == 200:
            acknowledged[item_id] = (vector / np.linalg.norm(vector)).tolist()
        i += 1


def test_restart_keeps_items_then_kill_9_loses_no_acknowledged_add(service_home, data_dir, first_items):
    server = Server(service_home, data_dir, data_dir / "second.log", **NO_MODEL).wait(ready=False)
    try:
        # persistence across a graceful restart
        got = server.post("/index/get", {"index": "vecs", "ids": list(first_items), "include_vectors": True}).json()
        for item, (item_id, vector) in zip(got["items"], first_items.items(), strict=True):
            assert item["id"] == item_id
            np.testing.assert_allclose(item["vector"], vector, atol=1e-6)
        # no API key configured: writes need none
        assert server.post("/index/delete", {"index": "vecs", "ids": ["first0"]}).json()["deleted"] == 1
        # kill -9 during a stream of adds
        acknowledged: dict[str, list[float]] = {}
        stop = threading.Event()
        writer = threading.Thread(target=_stream_adds, args=(server, acknowledged, stop))
        writer.start()
        while len(acknowledged) < 40 and writer.is_alive():
            stop.wait(0.05)
        server.kill()
        stop.set()
        writer.join(timeout=60)
    finally:
        if server.proc.poll() is None:
            server.kill()
    assert len(acknowledged) >= 40

    third = Server(service_home, data_dir, data_dir / "third.log", **NO_MODEL)
    third.wait(ready=False)
    try:
        ids = list(acknowledged)
        got = third.post("/index/get", {"index": "vecs", "ids": ids, "include_vectors": True}).json()["items"]
        missing = [item_id for item_id, item in zip(ids, got, strict=True) if item is None]
        assert not missing, f"acknowledged adds lost after kill -9: {missing}"
        for item_id, item in zip(ids, got, strict=True):
            np.testing.assert_allclose(item["vector"], acknowledged[item_id], atol=1e-6)
        stats = third.get("/index/stats", params={"index": "vecs"}).json()["indexes"][0]
        assert stats["count"] >= 19 + len(acknowledged)  # unacknowledged but committed adds may be there too
        # FAISS was rebuilt from snapshot + replay: the streamed vectors are searchable
        query = np.asarray([acknowledged[ids[-1]]], dtype=np.float32)
        assert third.post("/search", {"index": "vecs", "vectors": query.tolist(), "k": 1}).json()[
            "results"][0][0]["id"] == ids[-1]
        assert third.post("/index/get", {"index": "vecs", "ids": ["first0"]}).json()["items"] == [None]
        deleted_vector = [first_items["first0"].tolist()]  # its tombstone was replayed onto the snapshot
        nearest = third.post("/search", {"index": "vecs", "vectors": deleted_vector, "k": 3}).json()["results"][0]
        assert "first0" not in {h["id"] for h in nearest}

        # a default model missing from the registry: up, loudly not ready, 4xx that says why
        assert third.get("/healthz").status_code == 200
        assert third.get("/readyz").status_code == 503
        refused = third.post("/embed", {"images": [image_uri(3)]})
        assert refused.status_code == 404 and "SSLZOO_DEFAULT_MODEL" in refused.json()["error"]
        assert third.post("/embed", {"images": [image_uri(3)], "model": "default"}).status_code == 200
        assert "DEFAULT MODEL NOT LOADED" in third.tail(50_000)
        assert third.get("/models").json()["default_error"]
    finally:
        third.stop()
