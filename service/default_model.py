"""Before ``make serve`` starts the server: the default model, exported to ONNX the first time, and how it is served.

The shipped ``default`` CLIP has no ONNX graphs (they do not fit the shipped-size budget), so the first
``make serve`` on a machine exports them into ``$SSLZOO_HOME`` (:func:`service.served.export_for_serving`,
a few minutes, once); the service then serves it with ONNX Runtime (``bentoml serve .`` packs the export
under the default's own name, :mod:`service.models`). If the export fails, the service serves the
torch backend, and this says so and why. The service itself starts either way (and reports not-ready
without its default model); these lines make the outcome visible before BentoML's own start-up lines
scroll it away.
"""

from __future__ import annotations

import logging

import zoo
from service.served import ServingExportError, export_for_serving
from service.settings import Settings

log = logging.getLogger("sslzoo.serve")


def main() -> None:
    """Log the registry, export ``$SSLZOO_DEFAULT_MODEL`` when it lacks ONNX graphs, and say which backend serves it."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = Settings.from_env()
    registry = zoo.Registry()
    log.info("registry %s holds %d model version(s)", registry.home, len(registry.entries()))
    try:
        entry = registry.resolve(settings.default_model)
    except zoo.SslzooError as exc:
        log.warning("the default model %r is not in the registry (%s): the service will start NOT READY and "
                    "answer requests without a 'model' with 404", settings.default_model, exc)
        return
    config = entry.read_config()
    log.info("default model %s: %s, %d-d %s embeddings, method %s", entry.ref, config.arch, config.embed_dim,
             config.metric, config.method)
    if settings.backend == "torch":
        log.info("default model %s: served by torch (SSLZOO_BACKEND=torch)", entry.ref)
        return
    try:
        served = export_for_serving(entry, registry, int8=settings.precision == "int8")
    except ServingExportError as exc:
        log.warning("default model %s: served by TORCH, not ONNX Runtime: %s", entry.ref, exc)
        return
    source = f"its export {served.files.ref}" if served.exported else "its own graphs"
    log.info("default model %s: served by ONNX Runtime from %s", entry.ref, source)


if __name__ == "__main__":
    main()
