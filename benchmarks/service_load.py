"""Load benchmark of the sslzoo service against the bare runtime, measured in the same run.

What it prints (Markdown tables):

1. ``/embed`` (and ``/embed_text`` for a CLIP model): items/s, requests/s, p50 and p99 latency at
   1, 4 and 16 concurrent clients with 1 and 32 items per request, for each number of embedding
   workers asked for (``--embed-workers``), and the ratio to the bare in-process throughput of the
   same model (decode + preprocess + embed in one thread) at its *best* batch size among 1, 4, 8, 16
   and 32 (printed, with the size that gave it).
2. ``/search``: queries/s at 1, 4, 16 clients against calling FAISS directly on the same vectors
   (one query per call, as a client sends them).
3. Batching settings: ``/embed`` with 1 item per request at 16 clients for each
   ``SSLZOO_BATCH_MAX_SIZE:SSLZOO_BATCH_WAIT_MS`` pair (a server restart each), with the mean batch
   size the runtime actually formed.
4. HNSW recall@10 and queries/s against exact search on real embeddings (fashion-mnist when installed,
   else scikit-learn's digits) through the service's own index store.

The clients run in this process (asyncio + aiohttp, bodies prepared in advance) on the same machine
as the server, so on a small machine they compete with it for CPU: read the ratios as lower bounds.
Throughput is completions per second between the first and the last request that ends after the
warm-up; a row whose requests take longer than ``--duration`` (32 images at 16 clients) runs on until
it has seen a few completions, so it is not rounded down to the one or two that fit the window.

    python benchmarks/service_load.py                  # the registry's default model, full durations
    python benchmarks/service_load.py --tiny           # throwaway tiny models, short runs (a smoke test)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MIN_COMPLETIONS = 6
sys.path.insert(0, str(REPO))

import zoo  # noqa: E402


# -- server ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(home: Path, data: Path, **env: str) -> Iterator[str]:
    """``bentoml serve`` on a loopback port until the block ends; yields its URL once ready."""
    import requests

    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SSLZOO_")}
    environ.update({"SSLZOO_HOME": str(home), "SSLZOO_DATA_DIR": str(data), "BENTOML_DO_NOT_TRACK": "True",
                    "SSLZOO_MAX_ITEMS": "4096", **env})
    log = open(data / f"server-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(Path(sys.executable).with_name("bentoml")), "serve", "service:SslzooService",
                             "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, env=environ, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not become ready; see {log.name}")
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


# -- load generation -------------------------------------------------------------------------------
async def _load(url: str, bodies: list[bytes], items: int, concurrency: int, duration: float, warmup: float
                ) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    completions: list[float] = []  # when each successful request measured ended
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + duration
    give_up = stop_at + 5 * duration  # slow rows get longer, up to this, to see MIN_COMPLETIONS

    def more() -> bool:
        now = time.perf_counter()
        return now < stop_at or (len(completions) < MIN_COMPLETIONS and now < give_up)

    async def client(offset: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = offset
        while more():
            sent = time.perf_counter()
            async with session.post(url, data=bodies[i % len(bodies)],
                                    headers={"Content-Type": "application/json"}) as response:
                await response.read()
                ok = response.status == 200
            done = time.perf_counter()
            if done >= measure_from:
                if ok:
                    completions.append(done)
                    latencies.append(done - sent)
                errors += not ok
            i += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(c, session) for c in range(concurrency)))
    lat = np.asarray(latencies) * 1000
    # Completions per second between the first and the last one measured: neither the warm-up nor the
    # wait for the requests still in flight at the end counts, however long one request takes.
    ends = sorted(completions)
    span = ends[-1] - ends[0] if len(ends) > 1 else float("nan")
    req_s = (len(ends) - 1) / span if len(ends) > 1 else 0.0
    return {"req_s": req_s, "items_s": req_s * items,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"), "errors": errors}


def load(url: str, bodies: list[bytes], items: int, concurrency: int, duration: float, warmup: float
         ) -> dict[str, float]:
    """Closed-loop load: ``concurrency`` clients each sending the next body as soon as the last answered."""
    return asyncio.run(_load(url, bodies, items, concurrency, duration, warmup))


# -- inputs and bare baselines ---------------------------------------------------------------------
def png_uris(n: int, size: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return out


def sentences(n: int, seed: int = 0) -> list[str]:
    words = ["a", "the", "red", "blue", "green", "small", "large", "circle", "square", "star", "cat", "dog", "photo",
             "of", "on", "left", "right", "top"]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(n)]


def timed_rate(fn, items: int, min_seconds: float) -> float:
    """Items per second of ``fn`` (which handles ``items`` items), repeated for at least ``min_seconds``."""
    fn()  # warm-up
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds:
        fn()
        count += items
    return count / elapsed


def bare_images(model, uris: list[str], batch: int, seconds: float) -> float:
    """In-process: base64 → PIL → the model's preprocessing → embeddings, ``batch`` images per call."""
    chunk = uris[:batch]

    def run() -> None:
        images = [Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).convert("RGB") for u in chunk]
        model.embed_images(images)

    return timed_rate(run, len(chunk), seconds)


def bare_faiss(vectors: np.ndarray, queries: np.ndarray, k: int, seconds: float, threads: int) -> float:
    import faiss

    faiss.omp_set_num_threads(threads)  # the service's setting, so both sides use the same team

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    state = {"i": 0}

    def run() -> None:
        state["i"] += 1
        index.search(queries[state["i"] % len(queries)][None], k)

    return timed_rate(run, 1, seconds)


# -- sections --------------------------------------------------------------------------------------
def embed_rows(url: str, route: str, field: str, pool: list[str], model: str, bare: float, workers: int, args
               ) -> Iterator[str]:
    """One Markdown row per (items per request, clients), each as soon as it is measured."""
    for items in args.items:
        bodies = [json.dumps({field: [pool[(i * items + j) % len(pool)] for j in range(items)], "model": model}
                             ).encode() for i in range(16)]
        for concurrency in args.concurrency:
            r = load(url + route, bodies, items, concurrency, args.duration, args.warmup)
            yield (f"| `{route}` | {items} | {concurrency} | {workers} | {r['items_s']:.1f} | {r['req_s']:.1f} | "
                   f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['items_s'] / bare:.2f} | {r['errors']} |")


def best_rate(rates: dict[int, float]) -> tuple[int, float]:
    """The batch size with the most items/s, and that rate."""
    size = max(rates, key=lambda b: rates[b])
    return size, rates[size]


def describe_rates(rates: dict[int, float]) -> str:
    return ", ".join(f"batch {b} = {rate:.1f}" for b, rate in rates.items())


def search_rows(url: str, dim: int, args) -> list[str]:
    import requests

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.search_size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, len(vectors), 2048):
        chunk = vectors[start : start + 2048]
        response = requests.post(url + "/index/add", json={
            "index": "bench", "ids": [str(i) for i in range(start, start + len(chunk))], "vectors": chunk.tolist(),
            "embedding_space": "bench-space"}, timeout=600)
        response.raise_for_status()
    queries = vectors[rng.choice(len(vectors), 64, replace=False)]
    direct = bare_faiss(vectors, queries, 10, args.bare_seconds, args.threads)
    bodies = [json.dumps({"index": "bench", "vectors": [q.tolist()], "k": 10}).encode() for q in queries]
    rows = []
    for concurrency in args.concurrency:
        r = load(url + "/search", bodies, 1, concurrency, args.duration, args.warmup)
        rows.append(f"| {args.search_size} × {dim} | {concurrency} | {r['req_s']:.1f} | {r['p50_ms']:.1f} | "
                    f"{r['p99_ms']:.1f} | {direct:.0f} | {r['req_s'] / direct:.3f} | {r['errors']} |")
    return rows


def recall_rows(model, args) -> list[str]:
    """HNSW against exact search through the service's own store, on embeddings of real images."""
    from service.index import IndexSpec, LocalIndexStore
    from zoo.data import dataset_available, load_dataset

    name = "fashion-mnist" if dataset_available("fashion-mnist") else "digits"
    images = load_dataset(name, "test").images[: args.recall_size]
    vectors = model.embed_uint8(images)
    rng = np.random.default_rng(0)
    query_rows = rng.choice(len(vectors), min(200, len(vectors) // 5), replace=False)
    base = np.setdiff1d(np.arange(len(vectors)), query_rows)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalIndexStore(Path(tmp))
        found = {}
        for kind in ("flat", "hnsw"):
            index = store.create(IndexSpec(name=kind, embedding_space="x", dim=vectors.shape[1], kind=kind))
            for s in range(0, len(base), 4096):
                part = base[s : s + 4096]
                index.upsert([str(i) for i in part], vectors[part], [{}] * len(part))
            start = time.perf_counter()
            hits = [index.search(vectors[q][None], 10)[0] for q in query_rows]
            qps = len(query_rows) / (time.perf_counter() - start)
            found[kind] = [{h.id for h in row} for row in hits]
            recall = np.mean([len(a & b) / 10 for a, b in zip(found[kind], found["flat"], strict=True)])
            rows.append(f"| {name} ({len(base)} × {vectors.shape[1]}) | {kind} | {recall:.3f} | {qps:.0f} |")
        store.close()
    return rows


def make_tiny(home: Path) -> None:
    """Throwaway models for a smoke run: ViT-nano at 28 px and a tiny CLIP."""
    import torch

    from zoo.tokenizer import train_wordpiece

    registry = zoo.Registry(home, readonly_roots=())  # home shadows the shipped names for the server too
    torch.manual_seed(0)
    zoo.save(zoo.build_encoder("vit_nano", in_chans=3, img_size=28), "default", registry=registry)
    tokenizer = train_wordpiece(sentences(200), vocab_size=200)
    zoo.save(zoo.build_clip("vit_nano", tokenizer, embed_dim=32, img_size=28,
                            text_args={"width": 64, "layers": 2, "heads": 2}).eval(), "clip", registry=registry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=None, help="registry (default: $SSLZOO_HOME)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--clip-model", default=None, help="a CLIP entry for the text rows")
    parser.add_argument("--tiny", action="store_true", help="throwaway tiny models and short runs")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--bare-seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--items", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--embed-workers", type=int, nargs="+", default=[1, 2],
                        help="embedding worker counts (SSLZOO_EMBED_WORKERS) to measure, a server each")
    parser.add_argument("--bare-batches", type=int, nargs="+", default=[1, 4, 8, 16, 32],
                        help="batch sizes of the bare in-process baseline; ratios use the fastest")
    parser.add_argument("--image-size", type=int, default=64, help="side of the PNGs clients send")
    parser.add_argument("--search-size", type=int, default=100_000)
    parser.add_argument("--recall-size", type=int, default=10_000)
    parser.add_argument("--batch-settings", nargs="+", default=["1:0", "64:0", "64:2", "64:5"],
                        help="SSLZOO_BATCH_MAX_SIZE:SSLZOO_BATCH_WAIT_MS pairs for the batching table")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sslzoo-bench-"))
    home = args.home or zoo.sslzoo_home()
    if args.tiny:
        home = work / "home"
        make_tiny(home)
        args.clip_model = args.clip_model or "clip"
        args.duration, args.warmup, args.bare_seconds = 1.5, 0.5, 1.0
        args.search_size, args.recall_size, args.batch_settings = 5000, 1797, ["1:0", "64:0"]
        args.embed_workers, args.bare_batches = args.embed_workers[:1], [1, 8]
    registry = zoo.Registry(home)
    os.environ["SSLZOO_HOME"] = str(home)
    from service.runtime import ModelRuntime
    from service.settings import Settings

    settings = Settings.from_env()
    args.threads = settings.intra_op_threads
    runtime = ModelRuntime(settings, registry)  # the server's own backend and thread choices
    loaded = runtime.get(args.model)
    model, backend = loaded.model, loaded.backend
    uris = png_uris(64, args.image_size)
    micro: list[str] = []
    texts = sentences(256)
    print(f"# sslzoo service load ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, model {registry.resolve(args.model).ref}, {backend} backend, "
          f"{args.threads} intra-op thread(s) on both sides)\n")
    bare = {b: bare_images(model, uris, b, args.bare_seconds) for b in args.bare_batches}
    best, bare_best = best_rate(bare)
    print(f"bare in-process images/s: {describe_rates(bare)} (ratios use the best: batch {best})")
    clip = runtime.get(args.clip_model).model if args.clip_model else None
    if clip is not None:
        bare_texts = {b: timed_rate(lambda b=b: clip.embed_texts(texts[:b]), b, args.bare_seconds)
                      for b in args.bare_batches}
        text_best, bare_text = best_rate(bare_texts)
        print(f"bare in-process texts/s ({args.clip_model}): {describe_rates(bare_texts)} "
              f"(ratios use the best: batch {text_best})")

    header = ("| route | items/request | clients | embedding workers | items/s | requests/s | p50 ms | p99 ms | "
              "ratio to best bare | errors |")
    print(f"\n## Embedding throughput\n\n{header}\n|---|---|---|---|---|---|---|---|---|---|")
    for workers in args.embed_workers:
        data = work / f"data-w{workers}"
        data.mkdir()
        with serve(home, data, SSLZOO_DEFAULT_MODEL=args.model, SSLZOO_EMBED_WORKERS=str(workers)) as url:
            for row in embed_rows(url, "/embed", "images", uris, args.model, bare_best, workers, args):
                print(row, flush=True)
            if clip is not None:
                for row in embed_rows(url, "/embed_text", "texts", texts, args.clip_model, bare_text, workers, args):
                    print(row, flush=True)
            micro.append(f"{workers} worker(s): {_micro_batches(url, args)}")
    print("\nmicro-batch sizes the runtime chose at warm-up: " + "; ".join(micro))

    print("\n## Search\n\n| index | clients | /search q/s | p50 ms | p99 ms | FAISS direct q/s | ratio | errors |")
    print("|---|---|---|---|---|---|---|---|")
    data = work / "data-search"
    data.mkdir()
    with serve(home, data, SSLZOO_DEFAULT_MODEL=args.model, SSLZOO_EMBED_WORKERS=str(args.embed_workers[0])) as url:
        for row in search_rows(url, loaded.dim, args):
            print(row, flush=True)

    print("\n## Batching settings (`/embed`, 1 item per request, 16 clients)\n")
    print("| max batch : wait ms | items/s | p50 ms | p99 ms | mean batch formed | errors |\n|---|---|---|---|---|---|")
    body = [json.dumps({"images": [u], "model": args.model}).encode() for u in uris[:16]]
    for setting in args.batch_settings:
        size, wait = setting.split(":")
        data = work / f"data-{size}-{wait}"
        data.mkdir()
        with serve(home, data, SSLZOO_DEFAULT_MODEL=args.model, SSLZOO_BATCH_MAX_SIZE=size,
                   SSLZOO_BATCH_WAIT_MS=wait, SSLZOO_EMBED_WORKERS="1") as url:  # /models: that worker's counts
            import requests

            before = _batching(requests.get(url + "/models", timeout=30).json(), args.model)
            r = load(url + "/embed", body, 1, 16, args.duration, args.warmup)
            after = _batching(requests.get(url + "/models", timeout=30).json(), args.model)
        formed = (after["items"] - before["items"]) / max(1, after["calls"] - before["calls"])
        print(f"| {size} : {wait} | {r['items_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {formed:.2f} | "
              f"{r['errors']} |", flush=True)

    print("\n## HNSW against exact search (service index store, real images)\n")
    print("| embeddings | kind | recall@10 | queries/s |\n|---|---|---|---|")
    for row in recall_rows(model, args):
        print(row, flush=True)
    runtime.close()


def _micro_batches(url: str, args) -> str:
    """``image 8, text 32``: what the serving worker's runtime measured (``/models``)."""
    import requests

    models = requests.get(url + "/models", timeout=30).json()
    sizes = [f"{entry['ref']} image {entry['batching'].get('micro_batch', 'none')}"
             + (f", text {entry['text_batching'].get('micro_batch')}" if entry.get("text_batching") else "")
             for entry in models["models"] if entry["loaded"]]  # .get: the committed service has no micro-batches
    return ", ".join(sizes) or "none loaded"


def _batching(models: dict, name: str) -> dict[str, float]:
    for entry in models["models"]:
        if entry["loaded"] and entry["ref"].split("@", 1)[0] == name.split("@", 1)[0]:
            return entry["batching"]
    raise RuntimeError(f"{name} is not loaded")


if __name__ == "__main__":
    main()
