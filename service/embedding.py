"""Embedding, zero-shot classification and the OpenAI-compatible endpoint, over the runtime.

Each method validates its request, decodes images off the event loop, and leaves the model call to
the runtime's batchers. Results are plain dicts; :mod:`service.service` only wires them to routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from service.errors import BadRequest, NotFound, PayloadTooLarge
from service.images import ImageLimits, decode_images, is_data_uri
from service.labelsets import LabelSet, check_labels
from service.runtime import LoadedModel, ModelRuntime
from service.settings import Settings
from service.validation import check_count, encode_vectors
from zoo.zeroshot import DEFAULT_TEMPLATES, ClassifierCache, top_k

MAX_TEXT_CHARS = 20_000


class LabelSets(Protocol):
    """Where named label sets live (the index service keeps them: one copy for every worker)."""

    async def get(self, name: str) -> LabelSet | None:
        """A label set, or ``None``."""

    async def all(self) -> list[LabelSet]:
        """Every label set, by name."""

    async def put(self, label_set: LabelSet) -> None:
        """Add or replace a label set, durably."""


class Embedder:
    """Images and texts → vectors for any registry model, plus zero-shot classification."""

    def __init__(self, runtime: ModelRuntime, settings: Settings, label_sets: LabelSets) -> None:
        self.runtime = runtime
        self.settings = settings
        self.label_sets = label_sets
        self.limits = ImageLimits(settings.max_request_bytes, settings.max_image_pixels, settings.min_image_side)
        self.classifiers = ClassifierCache(settings.zeroshot_cache)

    # -- vectors -----------------------------------------------------------------------------------
    async def images(self, model_ref: str | None, items: Sequence[str], field: str = "images"
                     ) -> tuple[LoadedModel, np.ndarray]:
        """Decoded, pre-processed (in a worker thread) and embedded (batched) images."""
        check_count(items, field, self.settings.max_items)
        model = await self.runtime.aget(model_ref)

        def prepare() -> Any:
            return model.prepare_images(decode_images(items, self.limits, field))

        return model, await model.embed_prepared(await asyncio.to_thread(prepare))

    async def texts(self, model_ref: str | None, texts: Sequence[str], field: str = "texts"
                    ) -> tuple[LoadedModel, np.ndarray]:
        """Texts through a CLIP model's text tower."""
        check_count(texts, field, self.settings.max_items)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise BadRequest(f"{field}[{i}] must be a string")
            if len(text) > MAX_TEXT_CHARS:
                raise PayloadTooLarge(f"{field}[{i}] has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
        model = await self.runtime.aget(model_ref)
        if not model.is_clip:
            raise BadRequest(f"model {model.ref!r} has no text tower; embedding text needs a CLIP model")
        return model, await model.embed_texts(texts)

    async def embed(self, model_ref: str | None, images: Sequence[str], encoding_format: str) -> dict[str, Any]:
        """``POST /embed``."""
        model, vectors = await self.images(model_ref, images)
        return {**model.describe(), "embeddings": encode_vectors(vectors, encoding_format)}

    async def embed_text(self, model_ref: str | None, texts: Sequence[str], encoding_format: str) -> dict[str, Any]:
        """``POST /embed_text``."""
        model, vectors = await self.texts(model_ref, texts)
        return {**model.describe(), "embeddings": encode_vectors(vectors, encoding_format)}

    # -- zero-shot ---------------------------------------------------------------------------------
    async def resolve_labels(self, candidate_labels: list[str] | None, label_set: str | None,
                             hypothesis_template: str | None, hypothesis_templates: list[str] | None) -> LabelSet:
        """The label set a classify request means: a registered name, or labels given inline."""
        if (candidate_labels is None) == (label_set is None):
            raise BadRequest("give exactly one of 'candidate_labels' and 'label_set'")
        if hypothesis_template is not None and hypothesis_templates is not None:
            raise BadRequest("give 'hypothesis_template' or 'hypothesis_templates', not both")
        if label_set is not None:
            found = await self.label_sets.get(label_set)
            if found is None:
                known = ", ".join(s.name for s in await self.label_sets.all()) or "none registered"
                raise NotFound(f"no label set named {label_set!r} (known: {known}); register it with POST /label_sets")
            if hypothesis_template is None and hypothesis_templates is None:
                return found
            candidate_labels = list(found.labels)
        templates = [hypothesis_template] if hypothesis_template is not None else hypothesis_templates
        try:
            labels, checked = check_labels(candidate_labels, list(templates or DEFAULT_TEMPLATES))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return LabelSet(label_set or "", labels, checked)

    async def classify(self, model_ref: str | None, images: Sequence[str], labels: LabelSet, k: int) -> dict[str, Any]:
        """``POST /classify``: top-k labels per image with softmax probabilities."""
        if k < 1:
            raise BadRequest("top_k must be at least 1")
        check_count(images, "images", self.settings.max_items)
        model = await self.runtime.aget(model_ref)
        if not model.is_clip or model.logit_scale is None or model.text_batcher is None:
            raise BadRequest(f"model {model.ref!r} has no text tower; zero-shot classification needs a CLIP model")
        text_batcher = model.text_batcher
        classifier = await asyncio.to_thread(self.classifiers.get, model.embedding_space, text_batcher.run_now,
                                             labels.labels, labels.templates)
        _, vectors = await self.images(model.ref, images)
        predictions = top_k(vectors, classifier, labels.labels, k=k, scale=model.logit_scale)
        return {**model.describe(), "label_set": labels.name or None, "templates": list(labels.templates),
                "results": [[{"label": label, "score": prob} for label, prob in zip(p.labels, p.probabilities,
                                                                                       strict=True)]
                            for p in predictions]}

    async def register_labels(self, name: str, labels: LabelSet) -> dict[str, Any]:
        """``POST /label_sets``."""
        from service.index.base import NAME_RE

        if not isinstance(name, str) or not NAME_RE.match(name):
            raise BadRequest(f"invalid label set name {name!r}: letters, digits, '.', '_', '-' (max 64)")
        stored = LabelSet(name, labels.labels, labels.templates)
        await self.label_sets.put(stored)
        return {"name": name, "labels": len(stored.labels), "templates": list(stored.templates)}

    # -- OpenAI ------------------------------------------------------------------------------------
    async def openai_embeddings(self, inputs: str | list[str], model_ref: str | None, encoding_format: str,
                                dimensions: int | None) -> dict[str, Any]:
        """``POST /v1/embeddings``: strings go to the text tower, ``data:`` URIs to the image tower."""
        items = [inputs] if isinstance(inputs, str) else list(inputs)
        check_count(items, "input", self.settings.max_items)
        image_rows = [i for i, item in enumerate(items) if is_data_uri(item)]
        text_rows = [i for i, item in enumerate(items) if not is_data_uri(item)]
        model = await self.runtime.aget(model_ref)
        if dimensions is not None and dimensions != model.dim:
            raise BadRequest(f"model {model.ref!r} gives {model.dim}-dimensional vectors; "
                             "'dimensions' cannot change it")
        if text_rows and not model.is_clip:
            raise BadRequest(f"model {model.ref!r} embeds images only: send images as data: URIs "
                             "(data:image/png;base64,...), or name a CLIP model for text")
        vectors = np.zeros((len(items), model.dim), dtype=np.float32)
        tokens = 0
        if image_rows:
            _, image_vectors = await self.images(model.ref, [items[i] for i in image_rows], "input")
            vectors[image_rows] = image_vectors
        if text_rows:
            texts = [items[i] for i in text_rows]
            _, text_vectors = await self.texts(model.ref, texts, "input")
            vectors[text_rows] = text_vectors
            tokens = model.count_tokens(texts)
        encoded = encode_vectors(vectors, encoding_format)
        return {"object": "list", "model": model.ref, "embedding_space": model.embedding_space,
                "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
