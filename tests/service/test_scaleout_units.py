"""The parts that let the service scale, without a server: micro-batches, the batch-size probe,
searches merged across requests, and the index service's answers crossing back to the entry."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from service.batching import Batcher, micro_batches
from service.errors import NotFound, classify_exception
from service.index import IndexSpec, LocalIndexStore, parse_filter
from service.index.batched import SearchBatchers
from service.index_gateway import RemoteError, unwrap
from service.index_service import answered
from service.indexing import RawVectors, Vectors, query_from_wire, query_to_wire
from service.tuning import candidate_sizes, fastest_batch


# -- micro-batches ---------------------------------------------------------------------------------
def test_micro_batches_cut_large_payloads_and_join_small_ones_in_order():
    payloads = [np.arange(10), np.arange(10, 11), np.arange(11, 14)]
    groups = micro_batches(payloads, 4)
    assert [[len(p) for p in g] for g in groups] == [[4], [4], [2, 1, 1], [2]]
    np.testing.assert_array_equal(np.concatenate([p for g in groups for p in g]), np.arange(14))
    assert np.shares_memory(groups[0][0], payloads[0])  # slices are views, not copies
    assert micro_batches(payloads, None) == [payloads]
    assert micro_batches([["a"], ["b", "c"]], 8) == [[["a"], ["b", "c"]]]


def test_batcher_runs_a_merged_batch_as_micro_batches_and_returns_each_request_its_rows():
    gate, calls = threading.Event(), []

    def model(payloads):
        calls.append([len(p) for p in payloads])
        gate.wait(5)
        return np.concatenate([np.asarray(p, dtype=np.float32)[:, None] * [1, -1] for p in payloads])

    batcher = Batcher(model, name="test", max_batch_size=16, micro_batch=4)

    async def main():
        first = asyncio.ensure_future(batcher.submit([0.0]))
        await asyncio.sleep(0.05)  # the worker is inside the first call
        big = asyncio.ensure_future(batcher.submit([float(i) for i in range(1, 11)]))
        small = [asyncio.ensure_future(batcher.submit([float(i)])) for i in (11, 12)]
        await asyncio.sleep(0.05)
        gate.set()
        return await first, await big, await asyncio.gather(*small)

    _, big, small = asyncio.run(main())
    batcher.close()
    assert calls == [[1], [4], [4], [2, 1, 1]]  # 12 merged items cut into calls of at most 4
    np.testing.assert_array_equal(big, [[i, -i] for i in range(1, 11)])
    np.testing.assert_array_equal(np.concatenate(small), [[11, -11], [12, -12]])
    assert not big.flags.writeable
    stats = batcher.stats.as_dict()
    assert (stats["calls"], stats["model_calls"], stats["micro_batch"]) == (2, 4, 4)


# -- the batch-size probe --------------------------------------------------------------------------
def test_fastest_batch_picks_the_best_size_per_item_and_stops_once_larger_is_clearly_slower():
    tried = []

    def run(size: int) -> None:  # per call: a fixed cost, then items cheap up to 8 and dear beyond
        tried.append(size)
        time.sleep(0.004 + (0.0005 * size if size <= 8 else 0.004 * size))

    choice = fastest_batch(run, 64)
    assert choice.size == 8, choice.describe()
    assert set(tried) == {1, 2, 4, 8, 16}  # 16 is far slower per item: 32 and 64 never run
    assert candidate_sizes(48) == [1, 2, 4, 8, 16, 32, 48] and candidate_sizes(1) == [1]


# -- searches merged across requests ---------------------------------------------------------------
def test_concurrent_searches_with_their_own_k_get_what_a_lone_search_gets(tmp_path: Path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = LocalIndexStore(tmp_path)
    index = store.create(IndexSpec(name="s", embedding_space="x", dim=16))
    index.upsert([f"i{i}" for i in range(500)], vectors, [{"n": i} for i in range(500)])
    searches = SearchBatchers(max_queries=64)
    queries = [vectors[i : i + 1 + i % 3] + 0.01 for i in range(12)]  # 1 to 3 rows each
    ks = [1 + i % 5 for i in range(12)]

    async def main():
        return await asyncio.gather(*(searches.search(index, q, k) for q, k in zip(queries, ks, strict=True)))

    merged = asyncio.run(main())
    for q, k, got in zip(queries, ks, merged, strict=True):
        alone = index.search(q, k)
        assert [[h.id for h in row] for row in got] == [[h.id for h in row] for row in alone]
        assert [[h.metadata for h in row] for row in got] == [[h.metadata for h in row] for row in alone]
    stats = searches._batcher(index).stats
    assert stats.items == sum(len(q) for q in queries) and stats.calls < len(queries)  # some ran together
    searches.close()
    flt = parse_filter({"n": 3})
    assert [h.id for h in index.search(vectors[:1], 5, flt)[0]] == ["i3"]
    store.close()


def test_merged_exact_searches_take_the_matrix_product_and_find_what_one_by_one_finds(tmp_path: Path):
    import faiss

    from service.index.faiss_sqlite import BLAS_FROM_QUERIES

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    store = LocalIndexStore(tmp_path)
    index = store.create(IndexSpec(name="b", embedding_space="x", dim=32))
    index.upsert([f"i{i}" for i in range(3000)], vectors, [{}] * 3000)
    queries = vectors[:16] + 0.05
    one_by_one = [index.search(q[None], 10)[0] for q in queries]
    together = index.search(queries, 10)
    # FAISS compares queries x width with its threshold: a merged batch of BLAS_FROM_QUERIES takes the product.
    assert BLAS_FROM_QUERIES * 32 >= faiss.cvar.distance_compute_blas_threshold > (BLAS_FROM_QUERIES - 1) * 32
    assert [[h.id for h in row] for row in together] == [[h.id for h in row] for row in one_by_one]
    np.testing.assert_allclose([[h.score for h in row] for row in together],
                               [[h.score for h in row] for row in one_by_one], rtol=1e-5, atol=1e-5)
    store.close()


# -- calls to the index service merged across requests --------------------------------------------
def test_concurrent_calls_of_one_key_go_as_one_call_and_each_caller_gets_its_own_answer():
    from service.merged_calls import MergedCalls

    sent: list[tuple[str, list[int]]] = []

    async def many(key: str, arguments: list[int]) -> list[object]:
        sent.append((key, list(arguments)))
        await asyncio.sleep(0.01)
        if -1 in arguments:
            raise ConnectionError("index service unreachable")
        return [f"{key}:{a * 10}" for a in arguments]

    async def main():
        calls = MergedCalls(many, max_calls=4, in_flight=1)
        first = await calls.call("a", 0)  # alone: sent at once, by itself
        together = await asyncio.gather(*(calls.call("a" if i % 3 else "b", i) for i in range(1, 10)))
        failed = await asyncio.gather(calls.call("a", -1), calls.call("a", 5), return_exceptions=True)
        return first, together, failed, await calls.call("a", 6)

    first, together, failed, after = asyncio.run(main())
    assert first == "a:0" and sent[0] == ("a", [0])
    assert together == [f"{'a' if i % 3 else 'b'}:{i * 10}" for i in range(1, 10)]
    merged = sent[1:-2]
    assert len(merged) < 9 and all(len(args) <= 4 for _, args in merged)  # some went together, none over 4
    assert sorted(a for _, args in merged for a in args) == list(range(1, 10))
    assert all(isinstance(f, ConnectionError) for f in failed) and after == "a:60"  # one failure, then served


def test_up_to_in_flight_calls_of_one_key_are_under_way_at_once_and_the_rest_wait_merged():
    from service.merged_calls import MergedCalls

    sent: list[list[int]] = []
    busy = [0, 0]  # calls under way now, the most at once

    async def many(key: str, arguments: list[int]) -> list[int]:
        sent.append(list(arguments))
        busy[0] += 1
        busy[1] = max(busy)
        await asyncio.sleep(0.02)
        busy[0] -= 1
        return [a + 1 for a in arguments]

    async def later(calls: MergedCalls, i: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return await calls.call("k", i)

    async def main():
        calls = MergedCalls(many, in_flight=2)  # 0 leaves, 1 leaves while 0 is under way, 2..7 wait for one of them
        return await asyncio.gather(*(later(calls, i, 0.0 if i == 0 else 0.005 if i == 1 else 0.01) for i in range(8)))

    assert asyncio.run(main()) == list(range(1, 9))
    assert busy[1] == 2  # two at once, never more
    assert sent == [[0], [1], [2, 3, 4, 5, 6, 7]]


# -- answers crossing from the index service to the entry ------------------------------------------
def test_an_index_service_error_reaches_the_entry_with_its_status_kind_and_message():
    @answered
    async def missing(name: str) -> None:
        raise NotFound(f"no index named {name!r}")

    @answered
    async def fine(name: str) -> dict:
        return {"index": name}

    assert unwrap(asyncio.run(fine("a"))) == {"index": "a"}
    envelope = asyncio.run(missing("b"))
    with pytest.raises(RemoteError) as raised:
        unwrap(envelope)
    assert classify_exception(raised.value) == (404, "not_found", "no index named 'b'")


def test_queries_cross_as_plain_dicts_and_come_back_the_same():
    values = np.ones((2, 3), dtype=np.float32)
    for query in (Vectors(values, "space", "cosine", "m@1"), RawVectors(values, "space", None),
                  RawVectors(values, None, "dot")):
        wire = query_to_wire(query)
        assert isinstance(wire, dict) and wire["values"] is values
        back = query_from_wire(wire)
        assert type(back) is type(query) and back == query
