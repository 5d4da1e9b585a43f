"""The service's parts without a server: image limits, batching, the index store, filters, the HTTP guard."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import bomb_png, data_uri, png_bytes

from service.batching import Batcher
from service.errors import BadRequest, PayloadTooLarge
from service.http_guard import RequestGuard
from service.images import ImageLimits, decode_payload, open_image
from service.index import IndexSpec, LocalIndexStore, parse_filter
from service.settings import Settings

LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=1_000_000, min_side=8)


# -- images ----------------------------------------------------------------------------------------
def test_payloads_decode_from_data_uris_and_plain_or_wrapped_base64():
    raw = png_bytes()
    b64 = base64.b64encode(raw).decode()
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    assert decode_payload(data_uri(raw), "x") == decode_payload(b64, "x") == decode_payload(wrapped, "x") == raw


@pytest.mark.parametrize(("item", "message"), [
    ("https://example.com/cat.png", "does not fetch URLs"),
    ("data:text/html;base64,PGI+", r"an image/\* type"),
    ("data:image/png,rawbytes", "only base64"),
    ("!!!", "not valid base64"),
])
def test_bad_payloads_name_the_problem(item, message):
    with pytest.raises(BadRequest, match=message):
        decode_payload(item, "images[0]")


def test_pixel_bomb_is_refused_from_its_header_before_decoding():
    data = bomb_png(20_000)
    assert len(data) < 200_000  # 400 million pixels in a few tens of kilobytes
    with pytest.raises(PayloadTooLarge, match="400000000 pixels"):
        open_image(data, LIMITS, "images[0]")


@pytest.mark.parametrize(("data", "message"), [
    (png_bytes(size=(1, 1)), "too small"),
    (png_bytes(seed=0)[:100], "corrupt or truncated"),
    (b"GIF89a" + b"\x00" * 30, "corrupt|not a recognised"),
    (b"plain text", "not a recognised image"),
    (b"", "empty"),
])
def test_broken_images_are_bad_requests(data, message):
    with pytest.raises(BadRequest, match=message):
        open_image(data, LIMITS, "images[0]")


def test_a_good_image_decodes_fully():
    image = open_image(png_bytes(size=(40, 30)), LIMITS, "x")
    assert image.size == (40, 30) and image.getpixel((0, 0)) == (200, 30, 30)


# -- batching --------------------------------------------------------------------------------------
def test_batcher_merges_waiting_requests_and_returns_each_its_rows():
    gate, calls = threading.Event(), []

    def model(payloads):
        calls.append([len(p) for p in payloads])
        gate.wait(5)
        return np.concatenate([np.asarray(p, dtype=np.float32)[:, None] * [1, 2] for p in payloads])

    batcher = Batcher(model, name="test", max_batch_size=6)

    async def main():
        first = asyncio.ensure_future(batcher.submit([0.0]))
        await asyncio.sleep(0.05)  # the worker is now inside the first call, blocked on the gate
        rest = [asyncio.ensure_future(batcher.submit([float(i), float(i)])) for i in range(1, 5)]
        await asyncio.sleep(0.05)
        gate.set()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(main())
    batcher.close()
    assert calls == [[1], [2, 2, 2], [2]]  # 3 waiting requests fit in 6 items; the 4th starts the next batch
    np.testing.assert_array_equal(first, [[0, 0]])
    for i, rows in enumerate(rest, start=1):
        np.testing.assert_array_equal(rows, [[i, 2 * i], [i, 2 * i]])
        assert not rows.flags.writeable
    assert batcher.stats.calls == 3 and batcher.stats.items == 9


def test_batcher_failure_reaches_every_request_and_the_worker_survives():
    def model(payloads):
        if any("boom" in p for p in payloads):
            raise RuntimeError("boom")
        return np.zeros((sum(len(p) for p in payloads), 2), dtype=np.float32)

    batcher = Batcher(model, name="test")
    with pytest.raises(RuntimeError, match="boom"):
        batcher.run_now(["boom"])
    assert batcher.run_now(["fine", "fine"]).shape == (2, 2)
    batcher.close()


# -- index store -----------------------------------------------------------------------------------
def unit(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(vectors: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[str]:
    ids = list(vectors)
    scores = np.stack([vectors[i] for i in ids]) @ query
    return [ids[j] for j in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_store_upsert_delete_search_agree_with_brute_force_and_survive_reopening(tmp_path: Path, kind):
    store = LocalIndexStore(tmp_path, snapshot_every=7)
    index = store.create(IndexSpec(name="t", embedding_space="s", dim=8, kind=kind))
    vectors = dict(zip([f"i{i}" for i in range(30)], unit(30), strict=True))
    index.upsert(list(vectors), np.stack(list(vectors.values())), [{"n": i} for i in range(30)])
    new = unit(3, seed=1)
    result = index.upsert(["i0", "i1", "new"], new, [{"n": -1}] * 3)
    assert (result.added, result.replaced) == (1, 2)
    vectors.update({"i0": new[0], "i1": new[1], "new": new[2]})
    assert index.delete(["i2", "i3", "absent"]) == ["i2", "i3"]
    del vectors["i2"], vectors["i3"]
    queries = unit(5, seed=2)

    def check(ix):
        assert ix.count() == len(vectors) == 29
        for query, hits in zip(queries, ix.search(queries, 5), strict=True):
            assert [h.id for h in hits] == exact_top(vectors, query, 5)  # tiny graphs: HNSW is exact here
            np.testing.assert_allclose([h.score for h in hits], sorted((vectors[h.id] @ query for h in hits),
                                                                     reverse=True), atol=1e-5)

    check(index)
    store.close()  # snapshot
    reopened = LocalIndexStore(tmp_path, snapshot_every=7)
    check(reopened.open("t"))
    item = reopened.open("t").get(["i0", "i2"], with_vectors=True)
    assert item[1] is None and item[0].metadata == {"n": -1}
    np.testing.assert_array_equal(item[0].vector, new[0])


def test_store_replays_rows_written_after_the_snapshot_without_a_clean_close(tmp_path: Path):
    store = LocalIndexStore(tmp_path, snapshot_every=4)
    index = store.create(IndexSpec(name="t", embedding_space="s", dim=8))
    vectors = unit(10)
    for i in range(10):  # snapshots at 4 and 8 changes; rows 9 and 10 only in SQLite
        index.upsert([f"i{i}"], vectors[i : i + 1], [{}])
    index.delete(["i4"])
    assert [p.name for p in (tmp_path / "t").glob("faiss-*.index")] == ["faiss-8.index"]
    crashed = LocalIndexStore(tmp_path)  # the first store is never closed: as after kill -9
    again = crashed.open("t")
    assert again.count() == 9
    top = [row[0].id for row in again.search(vectors, 1)]
    assert [t for i, t in enumerate(top) if i != 4] == [f"i{i}" for i in range(10) if i != 4]
    assert "i4" not in {h.id for h in again.search(vectors[4:5], 9)[0]}


def test_hnsw_masks_replaced_labels_then_rebuilds(tmp_path: Path):
    store = LocalIndexStore(tmp_path)
    index = store.create(IndexSpec(name="h", embedding_space="s", dim=8, kind="hnsw"))
    index.upsert(["a", "b"], unit(2), [{}, {}])
    for seed in range(150):  # every rewrite leaves a dead label behind until the rebuild
        index.upsert(["a"], unit(1, seed=seed + 10), [{}])
    stats = index.stats()
    assert stats["count"] == 2 and stats["dead_labels"] < 102 and stats["faiss_total"] < 104
    assert {h.id for h in index.search(unit(1, seed=999), 5)[0]} == {"a", "b"}


def test_filters_match_equality_by_json_type_and_refuse_unsafe_fields(tmp_path: Path):
    index = LocalIndexStore(tmp_path).create(IndexSpec(name="f", embedding_space="s", dim=8))
    metas = [{"label": "1"}, {"label": 1}, {"label": 1.0}, {"label": True}, {"label": None}, {"x": {"y": "z"}}, {}]
    index.upsert([str(i) for i in range(len(metas))], unit(len(metas)), metas)

    def ids(where, exists=()):
        return sorted(h.id for h in index.search(unit(1), 10, parse_filter(where, exists))[0])

    assert ids({"label": "1"}) == ["0"]
    assert ids({"label": 1}) == ["1", "2"]  # 1 == 1.0, but not "1" or true
    assert ids({"label": True}) == ["3"]
    assert ids({"label": None}) == ["4"]
    assert ids({"x.y": "z"}) == ["5"]
    assert ids({}, exists=("label",)) == ["0", "1", "2", "3"]
    for bad in ({"a'b": 1}, {"a": [1]}, {"a": {"b": 1}}, {"": 1}):
        with pytest.raises(ValueError):
            parse_filter(bad)


# -- HTTP guard --------------------------------------------------------------------------------------
def run_guard(settings: Settings, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """Send one request through the guard to an app that echoes the body it receives."""
    sent: list[dict] = []

    async def echo(scope, receive, send):
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"]})

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(RequestGuard(echo, settings)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_guard_turns_multipart_into_json_with_data_uris():
    boundary = "XyZ"
    image = png_bytes()
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode() + image + b"\r\n",
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="b.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode() + image + b"\r\n",
        f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n5\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ndefault\r\n'.encode(),
        f"--{boundary}--\r\n".encode(),
    ]
    status, body = run_guard(Settings(), "/search", {"content-type": f"multipart/form-data; boundary={boundary}"},
                             b"".join(parts))
    assert status == 200
    assert json.loads(body) == {"images": [data_uri(image)] * 2, "k": 5, "model": "default"}


def test_guard_limits_size_media_type_and_writes_without_the_key():
    settings = Settings(api_key="k", max_request_bytes=100)
    json_type = {"content-type": "application/json"}
    assert run_guard(settings, "/embed", json_type, b"{}")[0] == 200
    assert run_guard(settings, "/embed", json_type, b"x" * 101)[0] == 413
    assert run_guard(settings, "/embed", {"content-type": "text/plain"}, b"x")[0] == 415
    assert run_guard(settings, "/index/add", json_type, b"{}")[0] == 401
    assert run_guard(settings, "/index/add", {**json_type, "authorization": "Bearer nope"}, b"{}")[0] == 401
    assert run_guard(settings, "/index/add", {**json_type, "authorization": "Bearer k"}, b"{}")[0] == 200
    assert run_guard(settings, "/index/add", {**json_type, "x-api-key": "k"}, b"{}")[0] == 200


def test_settings_come_from_the_environment(tmp_path: Path):
    settings = Settings.from_env({"SSLZOO_HOME": str(tmp_path), "SSLZOO_MAX_ITEMS": "7",
                                  "SSLZOO_BATCH_WAIT_MS": "2.5", "SSLZOO_API_KEY": "s"})
    assert (settings.max_items, settings.batch_wait_ms, settings.api_key) == (7, 2.5, "s")
    assert settings.data_dir == tmp_path / "service"
    with pytest.raises(ValueError, match="SSLZOO_MAX_ITEMS"):
        Settings.from_env({"SSLZOO_MAX_ITEMS": "many"})


# -- runtime ---------------------------------------------------------------------------------------
def test_runtime_falls_back_to_torch_without_onnx_and_forced_onnx_says_how_to_export(service_home, caplog):
    import logging

    import zoo
    from service.runtime import ModelRuntime

    registry = zoo.Registry(service_home)
    with caplog.at_level(logging.INFO, logger="sslzoo.service"):
        loaded = ModelRuntime(Settings(backend="auto"), registry).get(None)
    assert loaded.backend == "torch" and "no model.onnx" in caplog.text
    assert loaded.ref == "default@1" and loaded.image_batcher.stats.calls == 1  # the warm-up call
    with pytest.raises(zoo.SslzooError, match="sslzoo export"):
        ModelRuntime(Settings(backend="onnx"), registry).get("default")
