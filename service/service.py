"""BentoML service over the registry (the full API grows in the service issue)."""

from __future__ import annotations

import logging
from typing import Any

import bentoml

import zoo

log = logging.getLogger(__name__)


@bentoml.service(traffic={"timeout": 60})
class SslzooService:
    """Lists the registry's models; embedding endpoints are wired onto the runtime here."""

    def __init__(self) -> None:
        self.registry = zoo.Registry()
        log.info("sslzoo service over %s", self.registry.home)

    @bentoml.api(route="/models")
    def models(self) -> list[dict[str, Any]]:
        """Every registry entry with its contract and metrics."""
        out = []
        for entry in self.registry.entries():
            config = entry.read_config()
            out.append({"ref": entry.ref, "aliases": list(entry.aliases), "method": config.method,
                        "arch": config.arch, "embed_dim": config.embed_dim, "metric": config.metric,
                        "embedding_space": entry.embedding_space, "clip": config.is_clip,
                        "metrics": config.metrics})
        return out
