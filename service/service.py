"""The BentoML entry service: every public route, wired onto the runtime and the index service.

Nothing here computes: each endpoint hands its arguments to :class:`~service.embedding.Embedder` or
:class:`~service.index_gateway.IndexGateway`, and :func:`~service.errors.json_errors` turns failures
into JSON 4xx answers. POST endpoints are BentoML APIs (so ``bentoml.SyncHTTPClient`` and the OpenAPI
page know them); the GET endpoints live on a small FastAPI app mounted beside them, because BentoML
APIs are POST-only.

Two services, composed with ``bentoml.depends``: this one is stateless (models, embedding, zero-shot,
request parsing) and runs ``SSLZOO_EMBED_WORKERS`` processes (default: what the cores allow);
:class:`~service.index_service.IndexService` owns the indexes and label sets in one process. Each
scales on its own; ``bentoml serve`` runs both on one machine.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import bentoml
from fastapi import FastAPI
from starlette.responses import Response

from service.errors import json_errors, openai_errors
from service.http_guard import RequestGuard
from service.index_service import IndexService
from service.models import references
from service.page import install_page
from service.settings import Settings

log = logging.getLogger("sslzoo.service")
reads = FastAPI(title="sslzoo", docs_url=None, redoc_url=None, openapi_url=None)
install_page(reads)  # GET / (the page), /static/*, /page/config
Encoding = Literal["float", "base64"]
Images = list[str] | None
Texts = list[str] | None
Vecs = list[list[float]] | None
User = Annotated[str | None, bentoml.Field(
    description="OpenAI's end-user id, accepted because OpenAI clients send it when a caller sets it; "
                "ignored: nothing is recorded per user.")]
SETTINGS = Settings.from_env()


@bentoml.service(workers=SETTINGS.workers(), traffic={"timeout": 120})
@bentoml.asgi_app(reads, path="/")
class SslzooService:
    """Embeddings, k-NN search and zero-shot classification over the sslzoo registry."""

    index_service = bentoml.depends(IndexService)

    def __init__(self) -> None:
        from service.embedding import Embedder
        from service.index_gateway import IndexGateway, RemoteLabelSets
        from service.models import packed_roots
        from service.runtime import ModelRuntime
        from zoo.registry import Registry, default_readonly_roots

        logging.getLogger("sslzoo").setLevel(logging.INFO)  # BentoML's handlers print it
        self.settings = Settings.from_env()
        packed = packed_roots(SslzooService.bento, REFERENCES)  # type: ignore[attr-defined]  # a bentoml.Service
        self.runtime = ModelRuntime(self.settings, Registry(readonly_roots=(*packed, *default_readonly_roots())))
        self.embedder = Embedder(self.runtime, self.settings, RemoteLabelSets(self.index_service))
        self.indexes = IndexGateway(self.index_service, self.embedder, self.settings)
        log.info("sslzoo service: registry %s (+%d packed model(s)), data %s, default model %r, backend %s, "
                 "%d intra-op thread(s), %d embedding worker(s), API key %s", self.runtime.registry.home,
                 len(packed), self.settings.data_dir, self.settings.default_model, self.settings.backend,
                 self.settings.intra_op_threads, self.settings.workers(),
                 "required for writes" if self.settings.api_key else "off")
        self.runtime.preload(None)

    def __is_ready__(self) -> bool:
        """Ready once the default model is loaded and warmed up."""
        return self.runtime.is_loaded(None)

    @bentoml.on_shutdown
    def close(self) -> None:
        """Stop the batchers (the index service snapshots the indexes at its own shutdown)."""
        self.runtime.close()

    # -- embeddings --------------------------------------------------------------------------------
    @bentoml.api(route="/embed")
    @json_errors
    async def embed(self, images: list[str], model: str | None = None, encoding_format: Encoding = "float"
                    ) -> dict[str, Any]:
        """Images (base64 or data: URIs; multipart files) → vectors under the model's embedding contract."""
        return await self.embedder.embed(model, images, encoding_format)

    @bentoml.api(route="/embed_text")
    @json_errors
    async def embed_text(self, texts: list[str], model: str | None = None, encoding_format: Encoding = "float"
                         ) -> dict[str, Any]:
        """Texts → vectors in a CLIP model's joint space."""
        return await self.embedder.embed_text(model, texts, encoding_format)

    @bentoml.api(route="/classify")
    @json_errors
    async def classify(self, images: list[str], candidate_labels: list[str] | None = None,
                       label_set: str | None = None, hypothesis_template: str | None = None,
                       hypothesis_templates: list[str] | None = None, top_k: int = 5, model: str | None = None
                       ) -> dict[str, Any]:
        """Zero-shot labels with probabilities, from candidate labels or a registered label set."""
        labels = await self.embedder.resolve_labels(candidate_labels, label_set, hypothesis_template,
                                                    hypothesis_templates)
        return await self.embedder.classify(model, images, labels, top_k)

    @bentoml.api(route="/label_sets")
    @json_errors
    async def register_label_set(self, name: str, candidate_labels: list[str],
                                 hypothesis_templates: list[str] | None = None) -> dict[str, Any]:
        """Register (or replace) a named label set for ``/classify``."""
        labels = await self.embedder.resolve_labels(candidate_labels, None, None, hypothesis_templates)
        return await self.embedder.register_labels(name, labels)

    @bentoml.api(route="/v1/embeddings")
    @openai_errors
    async def openai_embeddings(self, input: str | list[str], model: str | None = None,
                                encoding_format: Encoding = "float", dimensions: int | None = None,
                                user: User = None) -> dict[str, Any]:
        """OpenAI-compatible embeddings: strings (CLIP text) and data: URIs (images); ``user`` is ignored."""
        return await self.embedder.openai_embeddings(input, model, encoding_format, dimensions)

    # -- index -------------------------------------------------------------------------------------
    @bentoml.api(route="/index/add")
    @json_errors
    async def index_add(self, ids: list[str], images: Images = None, texts: Texts = None, vectors: Vecs = None,
                        metadata: list[dict[str, Any]] | None = None, index: str = "default",
                        model: str | None = None, embedding_space: str | None = None,
                        kind: Literal["flat", "hnsw"] | None = None) -> dict[str, Any]:
        """Upsert items by id; the first add creates the index, bound to the vectors' embedding space."""
        return await self.indexes.add(index, ids, metadata, kind, images=images, texts=texts, vectors=vectors,
                                      model=model, embedding_space=embedding_space)

    @bentoml.api(route="/index/delete")
    @json_errors
    async def index_delete(self, ids: list[str], index: str = "default") -> dict[str, Any]:
        """Delete items by id."""
        return await self.indexes.delete(index, ids)

    @bentoml.api(route="/index/drop")
    @json_errors
    async def index_drop(self, index: str) -> dict[str, Any]:
        """Delete a whole index and its data."""
        return await self.indexes.drop(index)

    @bentoml.api(route="/index/get")
    @json_errors
    async def index_get(self, ids: list[str], index: str = "default", include_vectors: bool = False
                        ) -> dict[str, Any]:
        """Stored items (metadata, optionally vectors) by id; ``null`` for unknown ids."""
        return await self.indexes.get(index, ids, include_vectors)

    @bentoml.api(route="/search")
    @json_errors
    async def search(self, images: Images = None, texts: Texts = None, vectors: Vecs = None, index: str = "default",
                     k: int = 10, filter: dict[str, Any] | None = None, model: str | None = None,
                     embedding_space: str | None = None) -> dict[str, Any]:
        """Nearest items by image, text (CLIP) or vector, optionally among those matching a metadata filter."""
        return await self.indexes.search(index, k, filter, images=images, texts=texts, vectors=vectors,
                                         model=model, embedding_space=embedding_space)

    @bentoml.api(route="/knn_classify")
    @json_errors
    async def knn_classify(self, images: Images = None, vectors: Vecs = None, index: str = "default", k: int = 20,
                           label_field: str = "label", temperature: float = 0.07,
                           filter: dict[str, Any] | None = None, model: str | None = None,
                           embedding_space: str | None = None) -> dict[str, Any]:
        """Label images by a similarity-weighted vote of their labelled neighbours."""
        return await self.indexes.knn_classify(index, k, label_field, temperature, filter, images=images,
                                               texts=None, vectors=vectors, model=model,
                                               embedding_space=embedding_space)

    @bentoml.api(route="/index/projection")
    @json_errors
    async def index_projection(self, index: str = "default", method: str = "pca", max_points: int = 2000,
                               perplexity: float | None = None, seed: int = 0, images: Images = None,
                               texts: Texts = None, vectors: Vecs = None, model: str | None = None
                               ) -> dict[str, Any]:
        """A 2-D map of an index (PCA, or t-SNE), cached per index version, with a query's position if given."""
        return await self.indexes.project(index, method, max_points, perplexity, seed, images=images, texts=texts,
                                          vectors=vectors, model=model, embedding_space=None)

    # -- reads (GET) -------------------------------------------------------------------------------
    @reads.get("/models")
    async def models(self) -> Response:
        """Every registry entry with its contract, and which are loaded (with backend and batching)."""
        return await json_errors(self._models)()

    async def _models(self) -> dict[str, Any]:
        loaded = self.runtime.loaded()
        out = []
        for entry in self.runtime.registry.entries():
            config = entry.read_config()
            live = loaded.get(entry.ref)
            out.append({"ref": entry.ref, "aliases": list(entry.aliases), "method": config.method,
                        "arch": config.arch, "embed_dim": config.embed_dim, "metric": config.metric,
                        "normalized": config.normalize, "embedding_space": entry.embedding_space,
                        "clip": config.is_clip, "metrics": config.metrics, "loaded": live is not None,
                        "backend": live.backend if live else None,
                        "batching": live.image_batcher.stats.as_dict() if live else None,
                        "text_batching": live.text_batcher.stats.as_dict() if live and live.text_batcher else None})
        return {"default": self.settings.default_model, "default_error": self.runtime.default_error,
                "models": out}

    @reads.get("/index/stats")
    async def index_stats(self, index: str | None = None) -> Response:
        """Each index's binding (space, dim, metric, kind), size and sequence number."""
        return await json_errors(self._index_stats)(index)

    async def _index_stats(self, index: str | None) -> dict[str, Any]:
        return await self.indexes.stats(index)

    @reads.get("/label_sets")
    async def label_sets(self) -> Response:
        """Registered label sets."""
        return await json_errors(self._label_sets)()

    async def _label_sets(self) -> dict[str, Any]:
        sets = await self.embedder.label_sets.all()
        return {"label_sets": [{"name": s.name, "labels": list(s.labels), "templates": list(s.templates)}
                               for s in sets]}

    @reads.get("/v1/models")
    async def openai_models(self) -> Response:
        """The registry in the OpenAI ``/v1/models`` shape."""
        return await openai_errors(self._openai_models)()

    async def _openai_models(self) -> dict[str, Any]:
        data = [{"id": e.ref, "object": "model", "owned_by": "sslzoo", "created": 0}
                for e in self.runtime.registry.entries()]
        return {"object": "list", "data": data}


# The served entries as BentoML models: `bentoml build` packs them, `bentoml serve .` resolves them first.
REFERENCES = references(SETTINGS)
SslzooService.models.extend(REFERENCES)  # type: ignore[attr-defined]  # the Service's list, not the GET /models route
SslzooService.add_asgi_middleware(RequestGuard)  # type: ignore[attr-defined]  # a bentoml.Service, not a class
