"""Says, before ``make serve`` starts the server, which model it will serve by default and whether it exists.

The service itself starts either way (and reports not-ready without its default model); this check
only makes the problem visible in the terminal before BentoML's own start-up lines scroll it away.
"""

from __future__ import annotations

import logging
import os

import zoo

log = logging.getLogger("sslzoo.serve")


def main() -> None:
    """Log the registry, what it holds, and whether ``$SSLZOO_DEFAULT_MODEL`` resolves."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    registry = zoo.Registry()
    entries = registry.entries()
    log.info("registry %s holds %d model version(s)", registry.home, len(entries))
    default = os.environ.get("SSLZOO_DEFAULT_MODEL") or "default"
    try:
        entry = registry.resolve(default)
    except zoo.SslzooError as exc:
        log.warning("the default model %r is not in the registry (%s): the service will start NOT READY and "
                    "answer requests without a 'model' with 404", default, exc)
        return
    config = entry.read_config()
    backend = "onnx" if (entry.path / "model.onnx").is_file() else "torch (no model.onnx yet)"
    log.info("default model %s: %s, %d-d %s embeddings, method %s, backend %s", entry.ref, config.arch,
             config.embed_dim, config.metric, config.method, backend)


if __name__ == "__main__":
    main()
