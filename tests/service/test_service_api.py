"""Every endpoint of the real server over HTTP, with the API key on, and bad input answered 4xx.

One server for the whole module (a start costs seconds); the vectors it returns are compared with the
same registry entries loaded in-process.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import REPO, Server, bomb_png, data_uri, extract_examples, image_uri, png_bytes

import zoo
from zoo.zeroshot import build_classifier, softmax

KEY = "test-secret"
MAX_BODY = 4 * 1024 * 1024
MAX_ITEMS = 64


@pytest.fixture(scope="module")
def server(service_home: Path, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("service_data")
    srv = Server(service_home, data, data / "server.log", SSLZOO_API_KEY=KEY,
                 SSLZOO_MAX_REQUEST_BYTES=str(MAX_BODY), SSLZOO_MAX_ITEMS=str(MAX_ITEMS))
    try:
        yield srv.wait()
    finally:
        srv.stop()


def decode(uri: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


def test_health_readiness_and_metrics(server):
    assert server.get("/healthz").status_code == 200
    assert server.get("/readyz").status_code == 200
    metrics = server.get("/metrics")
    assert metrics.status_code == 200 and "bentoml" in metrics.text


def test_models_lists_the_registry(server, service_home):
    body = server.get("/models").json()
    refs = {m["ref"]: m for m in body["models"]}
    assert set(refs) == {"default@1", "clip@1"}
    assert refs["default@1"]["loaded"] and refs["default@1"]["backend"] == "torch"  # test entries have no ONNX
    assert refs["clip@1"]["clip"] and refs["clip@1"]["embed_dim"] == 32
    assert refs["default@1"]["embedding_space"] == zoo.Registry(service_home).resolve("default").embedding_space
    openai_ids = [m["id"] for m in server.get("/v1/models").json()["data"]]
    assert sorted(openai_ids) == ["clip@1", "default@1"]


def test_a_corrupt_registry_file_is_a_json_error_on_every_model_list(server, service_home):
    """The registry's state is the server's fault, so a 500 but one that names the file, never a bare one."""
    aliases = service_home / "models" / "default" / "aliases.json"
    assert not aliases.exists()
    aliases.write_text("{not json")
    try:
        for path, message in (("/models", lambda b: b["error"]), ("/v1/models", lambda b: b["error"]["message"])):
            answer = server.get(path)
            assert answer.status_code == 500 and answer.headers["content-type"] == "application/json", path
            assert f"{aliases} is corrupt" in message(answer.json()), path
    finally:
        aliases.unlink()
    assert server.get("/v1/models").status_code == 200


def test_embed_matches_in_process_model_for_json_base64_and_multipart(server, reference_models):
    uris = [image_uri(seed) for seed in range(3)]
    expected = reference_models["default"].embed_images([decode(u) for u in uris])
    by_uri = server.post("/embed", {"images": uris}).json()
    plain = server.post("/embed", {"images": [u.split(",", 1)[1] for u in uris], "encoding_format": "base64"}).json()
    files = [("images", (f"{i}.png", base64.b64decode(u.split(",", 1)[1]), "image/png")) for i, u in enumerate(uris)]
    multipart = server.post("/embed", files=files, data={"model": "default"}).json()
    assert by_uri["model"] == "default@1" and by_uri["dim"] == 128 and by_uri["normalized"] is True
    got = np.asarray(by_uri["embeddings"], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    b64 = np.stack([np.frombuffer(base64.b64decode(e), dtype="<f4") for e in plain["embeddings"]])
    np.testing.assert_array_equal(b64, got)
    np.testing.assert_array_equal(np.asarray(multipart["embeddings"], dtype=np.float32), got)


def test_embed_text_and_openai_endpoint(server, reference_models):
    clip = reference_models["clip"]
    texts = ["a red circle", "a dog on the left"]
    body = server.post("/embed_text", {"texts": texts, "model": "clip"}).json()
    np.testing.assert_allclose(np.asarray(body["embeddings"]), clip.embed_texts(texts), atol=1e-5)
    uri = image_uri(7)
    oa = server.post("/v1/embeddings", {"input": [texts[0], uri], "model": "clip"}).json()
    assert oa["object"] == "list" and [d["index"] for d in oa["data"]] == [0, 1]
    assert oa["usage"]["prompt_tokens"] > 0 and oa["usage"]["total_tokens"] == oa["usage"]["prompt_tokens"]
    np.testing.assert_allclose(oa["data"][0]["embedding"], clip.embed_texts(texts[:1])[0], atol=1e-5)
    np.testing.assert_allclose(oa["data"][1]["embedding"], clip.embed_images([decode(uri)])[0], atol=1e-5)
    one = server.post("/v1/embeddings", {"input": "a dog", "model": "clip", "encoding_format": "base64"}).json()
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(one["data"][0]["embedding"]), "<f4"),
                               clip.embed_texts(["a dog"])[0], atol=1e-5)
    refused = server.post("/v1/embeddings", {"input": "a dog"})  # the default model has no text tower
    assert refused.status_code == 400 and "images only" in refused.json()["error"]["message"]
    assert server.post("/v1/embeddings", {"input": "x", "model": "clip", "dimensions": 8}).status_code == 400


def test_openai_user_is_accepted_and_documented_as_ignored(server):
    assert server.post("/v1/embeddings", {"input": "a dog", "model": "clip", "user": "u-1"}).status_code == 200
    spec = server.get("/docs.json").json()
    schema = spec["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert "ignored" in schema["properties"]["user"]["description"]


def test_classify_matches_zero_shot_reference(server, reference_models):
    clip = reference_models["clip"]
    labels, template = ["circle", "square", "star"], "a drawing of a {}."
    uris = [image_uri(11), image_uri(12)]
    body = server.post("/classify", {"images": uris, "candidate_labels": labels, "hypothesis_template": template,
                                     "top_k": 3, "model": "clip"})
    assert body.status_code == 200, body.text
    classifier = build_classifier(clip.embed_texts, labels, [template])
    probs = softmax(float(clip.scale().detach()) * clip.embed_images([decode(u) for u in uris]) @ classifier)
    for row, expected in zip(body.json()["results"], probs, strict=True):
        got = {r["label"]: r["score"] for r in row}
        assert list(got) == [labels[j] for j in np.argsort(-expected, kind="stable")]
        np.testing.assert_allclose([got[lab] for lab in labels], expected, atol=1e-4)
    top1 = server.post("/classify", {"images": uris[:1], "candidate_labels": labels, "top_k": 1, "model": "clip"})
    assert len(top1.json()["results"][0]) == 1


def test_label_sets_need_the_key_and_classify_by_name(server):
    body = {"name": "shapes", "candidate_labels": ["circle", "square"], "hypothesis_templates": ["a {}"]}
    assert server.post("/label_sets", body).status_code == 401
    assert server.post("/label_sets", body, key=KEY).json() == {"name": "shapes", "labels": 2, "templates": ["a {}"]}
    assert server.get("/label_sets").json()["label_sets"][0]["name"] == "shapes"
    uri = image_uri(3)
    by_name = server.post("/classify", {"images": [uri], "label_set": "shapes", "model": "clip"}).json()
    inline = server.post("/classify", {"images": [uri], "candidate_labels": ["circle", "square"],
                                       "hypothesis_templates": ["a {}"], "model": "clip"}).json()
    assert by_name["results"] == inline["results"] and by_name["label_set"] == "shapes"
    assert server.post("/classify", {"images": [uri], "label_set": "nope", "model": "clip"}).status_code == 404


def test_index_add_search_filter_upsert_delete_get(server):
    uris = [image_uri(100 + i) for i in range(6)]
    meta = [{"label": "odd" if i % 2 else "even", "n": i, "tags": {"set": "a"}} for i in range(6)]
    ids = [f"img{i}" for i in range(6)]
    added = server.post("/index/add", {"index": "imgs", "ids": ids, "images": uris, "metadata": meta}, key=KEY)
    assert added.status_code == 200, added.text
    assert added.json()["added"] == 6 and added.json()["count"] == 6
    hits = server.post("/search", {"index": "imgs", "images": uris[:2], "k": 3}).json()["results"]
    assert [row[0]["id"] for row in hits] == ["img0", "img1"]
    assert hits[0][0]["score"] == pytest.approx(1.0, abs=1e-4) and hits[0][0]["metadata"] == meta[0]
    even = server.post("/search", {"index": "imgs", "images": uris[1:2], "k": 10, "filter": {"label": "even"}})
    assert {h["id"] for h in even.json()["results"][0]} == {"img0", "img2", "img4"}
    nested = server.post("/search", {"index": "imgs", "images": uris[:1], "filter": {"tags.set": "a", "n": 3}})
    assert [h["id"] for h in nested.json()["results"][0]] == ["img3"]
    # upsert: img0 now holds img5's picture and new metadata
    replaced = server.post("/index/add", {"index": "imgs", "ids": ["img0"], "images": [uris[5]],
                                          "metadata": [{"label": "moved"}]}, key=KEY).json()
    assert replaced["replaced"] == 1 and replaced["count"] == 6
    got = server.post("/index/get", {"index": "imgs", "ids": ["img0", "nope"], "include_vectors": True}).json()
    assert got["items"][0]["metadata"] == {"label": "moved"} and got["items"][1] is None
    assert len(got["items"][0]["vector"]) == 128
    deleted = server.post("/index/delete", {"index": "imgs", "ids": ["img1", "nope"]}, key=KEY).json()
    assert deleted == {"index": "imgs", "deleted": 1, "missing": ["nope"], "count": 5}
    after = server.post("/search", {"index": "imgs", "images": uris[1:2], "k": 10}).json()["results"][0]
    assert "img1" not in {h["id"] for h in after} and len(after) == 5
    stats = server.get("/index/stats", params={"index": "imgs"}).json()["indexes"][0]
    assert stats["count"] == 5 and stats["dim"] == 128 and stats["kind"] == "flat" and stats["model"] == "default@1"


def test_knn_classify_votes_with_labelled_neighbours(server):
    uris = [image_uri(200 + i) for i in range(4)]
    meta = [{"label": "a"}, {"label": "a"}, {"label": "b"}, {}]  # the unlabelled item never votes
    server.post("/index/add", {"index": "knn", "ids": list("wxyz"), "images": uris, "metadata": meta}, key=KEY)
    body = server.post("/knn_classify", {"index": "knn", "images": uris[:1], "k": 3}).json()
    result = body["results"][0]
    assert result["label"] == "a" and {n["id"] for n in result["neighbors"]} == {"w", "x", "y"}
    assert sum(result["votes"].values()) == pytest.approx(1.0)


def test_text_search_in_a_clip_index_and_space_binding(server, probe_index, reference_models):
    uris = [image_uri(300 + i) for i in range(3)]
    server.post("/index/add", {"index": "clip", "ids": ["p", "q", "r"], "images": uris, "model": "clip"}, key=KEY)
    clip = reference_models["clip"]
    text_vec = clip.embed_texts(["a red circle"])[0]
    expected = np.argsort(-(clip.embed_images([decode(u) for u in uris]) @ text_vec))
    hits = server.post("/search", {"index": "clip", "texts": ["a red circle"], "k": 3}).json()["results"][0]
    assert [h["id"] for h in hits] == [["p", "q", "r"][i] for i in expected]
    other_space = server.post("/index/add", {"index": "clip", "ids": ["s"], "images": uris[:1], "model": "default"},
                              key=KEY)
    assert other_space.status_code == 409 and "embedding space" in other_space.json()["error"]
    text_on_image_index = server.post("/search", {"index": "probe", "texts": ["a cat"]})
    assert text_on_image_index.status_code == 400  # the default model has no text tower


def test_raw_vectors_and_hnsw_index(server):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 16)).astype(np.float32)
    body = {"index": "raw", "ids": [f"v{i}" for i in range(50)], "vectors": vectors.tolist(), "kind": "hnsw"}
    assert server.post("/index/add", body, key=KEY).status_code == 400  # no embedding_space given
    body["embedding_space"] = "external-space"
    assert server.post("/index/add", body, key=KEY).json()["count"] == 50
    hits = server.post("/search", {"index": "raw", "vectors": vectors[:3].tolist(), "k": 1}).json()["results"]
    assert [row[0]["id"] for row in hits] == ["v0", "v1", "v2"]
    stats = server.get("/index/stats", params={"index": "raw"}).json()["indexes"][0]
    assert stats["kind"] == "hnsw" and stats["metric"] == "cosine"
    wrong_space = server.post("/index/add", {"index": "raw", "ids": ["w"], "vectors": vectors[:1].tolist(),
                                             "embedding_space": "another"}, key=KEY)
    assert wrong_space.status_code == 409
    wrong_kind = server.post("/index/add", {**body, "ids": ["w"], "vectors": vectors[:1].tolist(), "kind": "flat"},
                             key=KEY)
    assert wrong_kind.status_code == 409
    assert server.post("/index/drop", {"index": "raw"}, key=KEY).json()["dropped"] is True
    assert server.post("/search", {"index": "raw", "vectors": vectors[:1].tolist()}).status_code == 404


def test_api_key_guards_writes_only(server):
    body = {"index": "keyed", "ids": ["a"], "vectors": [[1.0, 0.0]], "embedding_space": "k"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}):
        refused = server.post("/index/add", body, headers=headers)
        assert refused.status_code == 401 and "API key" in refused.json()["error"]
        assert refused.headers["WWW-Authenticate"] == "Bearer" and refused.json()["type"] == "unauthorized"
    for path, payload in (("/index/delete", {"index": "imgs", "ids": ["img2"]}), ("/index/drop", {"index": "imgs"})):
        assert server.post(path, payload).status_code == 401
    assert server.post("/index/add", body, headers={"X-API-Key": KEY}).status_code == 200
    assert server.post("/search", {"index": "keyed", "vectors": [[1.0, 0.0]]}).status_code == 200
    assert server.get("/index/stats").status_code == 200


TRUNCATED = png_bytes(seed=1)[:80]
BAD_INPUTS = {
    "corrupt bytes": ("/embed", {"images": [data_uri(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)]}, 400),
    "not an image": ("/embed", {"images": [data_uri(b"hello world, not pixels")]}, 400),
    "truncated png": ("/embed", {"images": [data_uri(TRUNCATED)]}, 400),
    "1x1 image": ("/embed", {"images": [data_uri(png_bytes(size=(1, 1)))]}, 400),
    "20000x20000 png": ("/embed", lambda: {"images": [data_uri(bomb_png(20_000))]}, 413),
    "invalid base64": ("/embed", {"images": ["%%%not-base64%%%"]}, 400),
    "text data uri": ("/embed", {"images": ["data:text/plain;base64,aGVsbG8="]}, 400),
    "url is not fetched": ("/embed", {"images": ["http://127.0.0.1:1/cat.png"]}, 400),
    "empty list": ("/embed", {"images": []}, 400),
    "missing field": ("/embed", {"model": "default"}, 400),
    "wrong field type": ("/embed", {"images": "not-a-list"}, 400),
    "unknown model": ("/embed", {"images": [image_uri(1)], "model": "no-such-model"}, 404),
    "folder as model": ("/embed", {"images": [image_uri(1)], "model": "/etc"}, 400),
    "too many items": ("/embed", {"images": [image_uri(1)] * (MAX_ITEMS + 1)}, 413),
    "text on image model": ("/embed_text", {"texts": ["a cat"]}, 400),
    "classify without labels": ("/classify", {"images": [image_uri(1)], "model": "clip"}, 400),
    "template without slot": ("/classify", {"images": [image_uri(1)], "candidate_labels": ["a"],
                                            "hypothesis_template": "no slot", "model": "clip"}, 400),
    "classify on image model": ("/classify", {"images": [image_uri(1)], "candidate_labels": ["a", "b"]}, 400),
    "wrong vector dimension": ("/search", {"index": "probe", "vectors": [[0.1, 0.2, 0.3]]}, 400),
    "ragged vectors": ("/search", {"index": "probe", "vectors": [[0.1, 0.2], [0.3]]}, 400),
    "zero vector": ("/search", {"index": "probe", "vectors": [[0.0] * 128]}, 400),
    "unknown index": ("/search", {"index": "nope", "vectors": [[0.1] * 128]}, 404),
    "bad index name": ("/search", {"index": "../etc", "vectors": [[0.1] * 128]}, 400),
    "two query kinds": ("/search", {"index": "probe", "vectors": [[0.1] * 128], "images": [image_uri(1)]}, 400),
    "bad filter value": ("/search", {"index": "probe", "vectors": [[0.1] * 128], "filter": {"label": ["x"]}}, 400),
    "bad filter field": ("/search", {"index": "probe", "vectors": [[0.1] * 128], "filter": {"a') OR 1=1 --": 1}},
                         400),
    "k out of range": ("/search", {"index": "probe", "vectors": [[0.1] * 128], "k": 0}, 400),
    "ids and items differ": ("/index/add", {"index": "probe", "ids": ["a", "b"], "images": [image_uri(1)]}, 400),
    "repeated ids": ("/index/add", {"index": "probe", "ids": ["a", "a"], "images": [image_uri(1)] * 2}, 400),
    "metadata not an object": ("/index/add", {"index": "probe", "ids": ["a"], "images": [image_uri(1)],
                                              "metadata": ["x"]}, 400),
    "unknown kind": ("/index/add", {"index": "new", "ids": ["a"], "vectors": [[1.0]], "embedding_space": "s",
                                    "kind": "ivf"}, 400),
}


@pytest.fixture(scope="module")
def probe_index(server):
    """An index of the default model's space for the bad-input cases to aim at."""
    added = server.post("/index/add", {"index": "probe", "ids": ["p0"], "images": [image_uri(1)]}, key=KEY)
    assert added.status_code == 200, added.text


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_json_input_is_4xx_with_a_message_and_the_server_keeps_serving(server, probe_index, case):
    path, body, status = BAD_INPUTS[case]
    body = body() if callable(body) else body
    response = server.post(path, body, key=KEY)
    assert response.status_code == status, response.text
    assert response.json()["error"]  # a JSON message, not a traceback
    assert server.post("/embed", {"images": [image_uri(5)]}).status_code == 200


def test_bad_requests_below_json_are_4xx(server):
    cases = [
        (server.post("/embed", data=b"images=x", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415),
        (server.post("/embed", data=b"hello", headers={"Content-Type": "text/plain"}), 415),
        (server.post("/embed", data=png_bytes(), headers={"Content-Type": "image/png"}), 415),
        (server.post("/embed", data=b'{"images": [', headers={"Content-Type": "application/json"}), 400),
        (server.post("/embed", data=b"", headers={"Content-Type": "application/json"}), 400),
        (server.post("/embed", data=b"x" * (MAX_BODY + 1), headers={"Content-Type": "application/json"}), 413),
        (server.post("/embed", files=[("images", ("t.png", TRUNCATED, "image/png"))]), 400),
        (server.post("/embed", data=b"--xx\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=xx"}),
         400),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert "error" in response.json()
    assert server.post("/embed", {"images": [image_uri(5)]}).status_code == 200
    assert server.get("/readyz").status_code == 200


EXAMPLE_FILES = [REPO / "docs" / "service.md", REPO / "README.md"]
EXAMPLES = [(f"{path.name}:{i}:{lang}", lang, code) for path in EXAMPLE_FILES if path.is_file()
            for i, (lang, code) in enumerate(extract_examples(path))]


def test_docs_hold_examples_of_each_client():
    codes = " ".join(code for _, _, code in EXAMPLES)
    assert "curl" in codes and "bentoml.SyncHTTPClient" in codes and "from openai import OpenAI" in codes


@pytest.mark.parametrize(("lang", "code"), [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_docs_example_runs(server, tmp_path, lang, code):
    for name, seed in (("cat.png", 1), ("dog.png", 2)):
        (tmp_path / name).write_bytes(png_bytes(size=(48, 40), seed=seed))
    code = code.replace("http://localhost:3000", server.url)
    command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    env = {**os.environ, "SSLZOO_API_KEY": KEY}
    done = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    print(done.stdout)  # shown with pytest -s: what a reader of the docs would see
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.strip() and '"error"' not in done.stdout, done.stdout
