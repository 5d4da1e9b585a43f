"""Two embedding workers beside one index service (``bentoml.depends``): the process layout, and one
store that every worker reads and writes."""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import Server, descendants, image_uri

KEY = "scale-key"


@pytest.fixture(scope="module")
def server(service_home: Path, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("scaleout_data")
    srv = Server(service_home, data, data / "server.log", SSLZOO_EMBED_WORKERS="2", SSLZOO_API_KEY=KEY)
    try:
        yield srv.wait()
    finally:
        srv.stop()


def service_names(pid: int) -> Counter[str]:
    """How many worker processes each BentoML service runs under the server ``pid``."""
    names: Counter[str] = Counter()
    for child in descendants(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--service-name" in argv:
            names[argv[argv.index(b"--service-name") + 1].decode()] += 1
    return names


def concurrently(calls, workers: int = 8):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_two_embedding_workers_and_one_index_service_run(server):
    assert service_names(server.proc.pid) == {"SslzooService": 2, "IndexService": 1}


def test_every_worker_sees_every_write(server):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(16, 8))
    adds = concurrently([lambda i=i: server.post("/index/add", {
        "index": "shared", "ids": [f"i{i}"], "vectors": [rows[i].tolist()], "embedding_space": "es-test"}, key=KEY)
        for i in range(16)])
    assert [r.status_code for r in adds] == [200] * 16
    counts = concurrently([lambda: server.get("/index/stats", params={"index": "shared"}) for _ in range(32)])
    assert {r.json()["indexes"][0]["count"] for r in counts} == {16}
    body = {"name": "shared-set", "candidate_labels": ["circle", "square"]}
    assert server.post("/label_sets", body, key=KEY).status_code == 200
    listed = concurrently([lambda: server.get("/label_sets") for _ in range(32)])
    assert all("shared-set" in [s["name"] for s in r.json()["label_sets"]] for r in listed)
    hits = concurrently([lambda q=q: server.post("/search", {"index": "shared", "vectors": [q.tolist()], "k": 1})
                         for q in rows])
    assert [r.json()["results"][0][0]["id"] for r in hits] == [f"i{i}" for i in range(16)]
    # Both embedding workers answered some of these requests (the log names the worker of each).
    served = set(re.findall(r"\[entry_service:SslzooService:(\d+)\][^\n]*path=/index/stats", server.tail(10**7)))
    assert served == {"1", "2"}, "one worker answered every request: the test proves nothing about sharing"


def test_both_workers_embed_alike(server):
    answers = concurrently([lambda: server.post("/embed", {"images": [image_uri(3)]}) for _ in range(16)])
    vectors = np.array([r.json()["embeddings"][0] for r in answers])
    np.testing.assert_allclose(vectors, np.repeat(vectors[:1], len(vectors), axis=0), atol=1e-6)
