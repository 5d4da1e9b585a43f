"""Loaded models by registry reference: backend choice, warm-up, and batched embedding.

The runtime splits each embedding into pre-processing (decode, resize, standardise: CPU, run in the
request's worker thread, in parallel) and the model core (one :class:`~service.batching.Batcher`
thread per tower, batching across requests, cut into the micro-batch size that warm-up measured
fastest for the loaded tower: :mod:`service.tuning`). ONNX is preferred when the entry has ``model.onnx``;
otherwise, or when the ONNX backend is not installed or fails to load, the torch backend serves it
and the log says which and why. Either way the model is used only through the backend contract of
:mod:`zoo.backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

import zoo
from service.batching import Batcher
from service.errors import BadRequest, NotFound
from service.settings import Settings
from service.tuning import BatchChoice, fastest_batch
from zoo.backend import ClipBackend, ImageBackend
from zoo.preprocess import preprocess_batch
from zoo.refs import parse_ref

log = logging.getLogger("sslzoo.service")
RESOLVE_TTL_S = 1.0


@dataclass
class LoadedModel:
    """One registry entry, loaded and warmed up, with its batchers."""

    ref: str
    entry: zoo.Entry
    model: ImageBackend
    backend: str
    config: zoo.EncoderConfig
    embedding_space: str
    image_batcher: Batcher[np.ndarray]
    text_batcher: Batcher[np.ndarray] | None = None
    logit_scale: float | None = None
    tokenizer: Any = None
    load_seconds: float = 0.0

    @property
    def is_clip(self) -> bool:
        """Whether texts can be embedded (a text tower in the same space)."""
        return self.text_batcher is not None

    @property
    def dim(self) -> int:
        """Width of the vectors."""
        return int(self.config.embed_dim)

    def describe(self) -> dict[str, Any]:
        """What a client needs to use the vectors (returned with every embedding)."""
        return {"model": self.ref, "embedding_space": self.embedding_space, "dim": self.dim,
                "metric": self.config.metric, "normalized": bool(self.config.normalize)}

    def prepare_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """CPU pre-processing in the caller's thread: standardised pixels for the batched core."""
        return preprocess_batch(images, self.config.preprocess)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens after truncation to the context, for the OpenAI endpoint's ``usage``."""
        if self.tokenizer is None:
            return 0
        return sum(len(encoding.ids) for encoding in self.tokenizer.encode_batch(list(texts)))

    async def embed_prepared(self, prepared: np.ndarray) -> np.ndarray:
        """Run pre-processed images through the batched image tower."""
        return await self.image_batcher.submit(prepared)

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Run texts through the batched text tower."""
        if self.text_batcher is None:
            raise BadRequest(f"model {self.ref!r} has no text tower; text needs a CLIP model")
        return await self.text_batcher.submit(list(texts))

    def close(self) -> None:
        """Stop the batcher threads."""
        self.image_batcher.close()
        if self.text_batcher is not None:
            self.text_batcher.close()


class ModelRuntime:
    """A cache of loaded models keyed by resolved reference (``name@version``), least recently used out."""

    def __init__(self, settings: Settings, registry: zoo.Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or zoo.Registry()
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._resolved: dict[str | None, tuple[float, zoo.Entry]] = {}
        self.default_error: str | None = None

    # -- references --------------------------------------------------------------------------------
    def resolve(self, ref: str | None) -> zoo.Entry:
        """The registry entry a request names (the default model when it names none).

        Answers are kept for :data:`RESOLVE_TTL_S`: every request resolves its model, and reading the
        registry's folders each time is most of a small request's own work; a newly saved version is
        still served within the second.
        """
        now = time.monotonic()
        cached = self._resolved.get(ref)
        if cached is not None and now - cached[0] < RESOLVE_TTL_S:
            return cached[1]
        entry = self._resolve(ref)
        if len(self._resolved) > 1024:  # names a client made up: no unbounded growth
            self._resolved.clear()
        self._resolved[ref] = (now, entry)
        return entry

    def _resolve(self, ref: str | None) -> zoo.Entry:
        is_default = ref is None or ref == ""
        name = self.settings.default_model if is_default else str(ref)
        try:
            parsed = parse_ref(name)
        except zoo.RefError as exc:
            raise BadRequest(str(exc)) from None
        if parsed.kind != "name":
            raise BadRequest(f"model {name!r}: the service serves registry names ('name', 'name@version', "
                             "'name@alias') only, not folders or Hub repositories")
        try:
            return self.registry.resolve(parsed)
        except zoo.RefError as exc:
            if is_default:
                raise NotFound(
                    f"the default model {name!r} is not in the registry ({self.registry.home}); save a model "
                    f"under that name, set SSLZOO_DEFAULT_MODEL, or name a model in the request ({exc})"
                ) from None
            raise NotFound(str(exc)) from None

    # -- loading -----------------------------------------------------------------------------------
    def get(self, ref: str | None) -> LoadedModel:
        """The loaded model for a reference, loading (and warming up) on first use."""
        entry = self.resolve(ref)
        key = entry.ref
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:  # one load per entry, however many requests ask at once
            with self._lock:
                if key in self._models:
                    return self._models[key]
            loaded = self._load(entry)
            with self._lock:
                self._models[key] = loaded
                self._evict()
        return loaded

    async def aget(self, ref: str | None) -> LoadedModel:
        """:meth:`get` without blocking the event loop when a load is needed."""
        entry = self.resolve(ref)
        with self._lock:
            cached = self._models.get(entry.ref)
            if cached is not None:
                self._models.move_to_end(entry.ref)
                return cached
        return await asyncio.to_thread(self.get, ref)

    def _evict(self) -> None:
        default = None
        with contextlib.suppress(zoo.SslzooError):
            default = self.registry.resolve(self.settings.default_model).ref
        while len(self._models) > max(1, self.settings.max_models):
            victim = next((k for k in self._models if k != default), None)
            if victim is None:
                return
            log.info("unloading %s (more than %d models loaded)", victim, self.settings.max_models)
            self._models.pop(victim).close()

    def _load_backend(self, entry: zoo.Entry) -> tuple[ImageBackend, str]:
        """ONNX when wanted and exported (the settings' precision, then fp32), else torch; logged either way."""
        settings = self.settings
        wanted = settings.backend
        if wanted == "onnx" or (wanted == "auto" and (entry.path / "model.onnx").is_file()):
            # No spinning: idle onnxruntime threads would take the cores that decode images and serve HTTP.
            options: dict[str, Any] = {"intra_op_threads": settings.intra_op_threads, "spin": False}
            failure: Exception | None = None
            for precision in dict.fromkeys([settings.precision, "fp32"]):
                try:
                    model = zoo.load(entry.ref, backend="onnx", registry=self.registry, precision=precision, **options)
                    return model, f"onnx-{precision}"
                except (ImportError, zoo.SslzooError, RuntimeError) as exc:
                    failure = exc
                    log.warning("%s: the ONNX backend (%s) failed: %s: %s", entry.ref, precision,
                                type(exc).__name__, exc)
            if wanted == "onnx" and failure is not None:
                raise failure
            log.warning("%s: serving it with torch instead of ONNX", entry.ref)
        elif wanted == "auto":
            log.info("%s has no model.onnx (run `sslzoo export %s`); serving it with torch", entry.ref, entry.ref)
        return zoo.load(entry.ref, backend="torch", registry=self.registry), "torch"

    def _load(self, entry: zoo.Entry) -> LoadedModel:
        start = time.perf_counter()
        model, backend = self._load_backend(entry)
        config = model.config
        settings = self.settings
        image_fn = lambda payloads: model.embed_array(_joined(payloads))  # noqa: E731
        batch: dict[str, Any] = {"max_batch_size": settings.batch_max_size, "max_wait_ms": settings.batch_wait_ms,
                                 "thread_init": _thread_limiter(backend, settings.intra_op_threads)}
        loaded = LoadedModel(entry.ref, entry, model, backend, config, entry.embedding_space,
                             Batcher(_as_float32(image_fn), name=f"{entry.ref}:image", **batch))
        if isinstance(model, ClipBackend):
            clip = model
            text_fn = lambda payloads: clip.embed_texts([t for p in payloads for t in p])  # noqa: E731
            loaded.text_batcher = Batcher(_as_float32(text_fn), name=f"{entry.ref}:text", **batch)
            loaded.logit_scale = clip.similarity_scale()
            loaded.tokenizer = _counting_tokenizer(entry, config)
        self._warm_up(loaded)
        loaded.load_seconds = time.perf_counter() - start
        log.info("loaded %s (%s, %s backend, %d-d %s space %s%s) in %.1f s", entry.ref, config.arch, backend,
                 config.embed_dim, config.metric, loaded.embedding_space[:12], ", CLIP" if loaded.is_clip else "",
                 loaded.load_seconds)
        return loaded

    def _warm_up(self, loaded: LoadedModel) -> None:
        """One image (and one text) through each tower, then each tower's micro-batch size chosen.

        First-call costs are paid before serving, and the batch sizes are timed on this machine with
        this backend (``SSLZOO_MICRO_BATCH`` fixes the size instead).
        """
        channels, height, width = loaded.config.preprocess.input_size
        blank = Image.new("L" if channels == 1 else "RGB", (width, height), 128)
        prepared = loaded.prepare_images([blank])
        vectors = loaded.image_batcher.run_now(prepared)
        if vectors.shape != (1, loaded.dim):
            raise zoo.ConfigError(f"{loaded.ref}: image tower returned {vectors.shape}, expected (1, {loaded.dim})")
        tiled = np.repeat(prepared, self.settings.batch_max_size, axis=0)
        # Timing calls go straight to the batch function, in this (loading) thread, whose torch thread
        # count _thread_limiter set: they are not traffic, so the batchers' counters do not see them.
        image_fn = loaded.image_batcher.fn
        self._choose(loaded.image_batcher, lambda size: image_fn([tiled[:size]]))
        if loaded.text_batcher is not None:
            text_batcher = loaded.text_batcher
            text_batcher.run_now(["warm-up"])
            self._choose(text_batcher, lambda size: text_batcher.fn([["a photo of a small thing"] * size]))

    def _choose(self, batcher: Batcher[np.ndarray], run: Callable[[int], object]) -> None:
        fixed = self.settings.micro_batch
        if fixed > 0:
            batcher.micro_batch = min(fixed, self.settings.batch_max_size)
            return
        choice: BatchChoice = fastest_batch(run, self.settings.batch_max_size)
        batcher.micro_batch = choice.size
        log.info("%s: micro-batch %s", batcher.name, choice.describe())

    def preload(self, ref: str | None) -> threading.Thread:
        """Load the default model in the background; failures are logged loudly and kept for readiness."""

        def run() -> None:
            try:
                self.get(ref)
                self.default_error = None
            except Exception as exc:  # the service stays up and reports not-ready
                self.default_error = str(exc)
                log.error("=" * 100)
                log.error("DEFAULT MODEL NOT LOADED: %s", exc)
                log.error("the service is up but NOT READY (/readyz answers 503); requests that name another "
                          "model still work")
                log.error("=" * 100)

        thread = threading.Thread(target=run, name="sslzoo-preload", daemon=True)
        thread.start()
        return thread

    def is_loaded(self, ref: str | None) -> bool:
        """Whether a reference's entry is loaded (false when it does not resolve)."""
        try:
            key = self.resolve(ref).ref
        except (NotFound, BadRequest):
            return False
        with self._lock:
            return key in self._models

    def loaded(self) -> dict[str, LoadedModel]:
        """The loaded models by reference."""
        with self._lock:
            return dict(self._models)

    def close(self) -> None:
        """Stop every batcher."""
        with self._lock:
            for model in self._models.values():
                model.close()
            self._models.clear()


def _thread_limiter(backend: str, threads: int) -> Callable[[], None] | None:
    """Cap torch's intra-op team, process-wide and in the calling (batcher) thread."""
    if backend != "torch":
        return None  # onnxruntime sizes its pool per session (``intra_op_threads`` at load)
    import torch

    def limit() -> None:
        torch.set_num_threads(threads)

    limit()
    return limit


def _joined(payloads: list[np.ndarray]) -> np.ndarray:
    """One array of pixels: a lone payload as it is (no copy), several concatenated."""
    return payloads[0] if len(payloads) == 1 else np.concatenate(payloads)


def _as_float32(fn: Callable[[list[Any]], Any]) -> Callable[[list[Any]], np.ndarray]:
    def run(payloads: list[Any]) -> np.ndarray:
        return np.ascontiguousarray(fn(payloads), dtype=np.float32)  # no copy when it already is

    return run


def _counting_tokenizer(entry: zoo.Entry, config: zoo.EncoderConfig) -> Any:
    """A private tokenizer instance (truncation is per-instance state) for counting usage tokens."""
    from tokenizers import Tokenizer

    assert config.text is not None
    tokenizer = Tokenizer.from_file(str(entry.path / config.text.tokenizer_file))
    tokenizer.enable_truncation(max_length=config.text.context_length)
    tokenizer.no_padding()
    return tokenizer
