"""The service's settings, read once from the environment so every limit is visible in one place.

Every knob has a default that serves a laptop; a deployment changes them with environment variables
(the names are the field names upper-cased with an ``SSLZOO_`` prefix, listed in ``docs/service.md``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from zoo import sslzoo_home

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Limits, locations and tuning of one service process.

    Attributes:
        default_model: Registry reference served when a request names no model.
        models: More registry references the service serves, comma-separated; ``bentoml build`` packs
            them beside the default (a request may name any registry entry, packed or not).
        data_dir: Where indexes and label sets live (``$SSLZOO_HOME/service`` by default).
        api_key: When set, write endpoints need it as ``Authorization: Bearer <key>`` or ``X-API-Key``.
        backend: ``auto`` (ONNX when the entry has ``model.onnx``, else torch), ``onnx`` or ``torch``.
        precision: ONNX precision, ``fp32`` or ``int8`` (used when the export wrote it, else fp32).
        max_request_bytes: Larger bodies are refused with 413 before they are parsed.
        body_timeout_s: Longest pause while a request body arrives; a body that stops short of its
            ``Content-Length`` (or of its last chunk) is answered 400 after it, and its connection closed.
        max_image_pixels: Larger images are refused with 413 from their header, before decoding.
        min_image_side: Smaller images are refused with 400 (an upscaled speck has no content).
        max_items: Most images, texts or vectors in one request.
        intra_op_threads: Threads one model call (torch) or one FAISS search may use. Half the cores by
            default: the rest decode images and serve HTTP, and an OpenMP team that shares its cores
            with busy threads waits at every barrier (6× slower measured on 2 loaded cores).
        batch_max_size: Most items the runtime puts in one model call across concurrent requests.
        batch_wait_ms: How long the runtime waits for more requests before a model call (0: never).
        micro_batch: Most items in one model call; a merged batch is cut into calls of this size.
            0 (default): each tower's fastest size per item, measured at warm-up.
        embed_workers: Processes of the (stateless) embedding service. 0 (default): what the cores
            allow, ``cores // intra_op_threads`` (each worker's model call uses that many threads).
            The index service is one more process, whatever this says.
        max_models: Loaded models kept in memory, least recently used out.
        zeroshot_cache: Zero-shot classifiers (label embeddings) kept, least recently used out.
        snapshot_every: Index changes between FAISS snapshots (start-up then replays fewer rows).
    """

    default_model: str = "default"
    models: str = ""
    data_dir: Path = Path()
    api_key: str | None = None
    backend: str = "auto"
    precision: str = "fp32"
    max_request_bytes: int = 32 * MIB
    body_timeout_s: float = 0.5
    max_image_pixels: int = 25_000_000
    min_image_side: int = 8
    max_items: int = 256
    intra_op_threads: int = max(1, (os.cpu_count() or 2) // 2)
    batch_max_size: int = 64
    batch_wait_ms: float = 0.0
    micro_batch: int = 0
    embed_workers: int = 0
    max_models: int = 4
    zeroshot_cache: int = 64
    snapshot_every: int = 10_000

    def workers(self) -> int:
        """How many embedding worker processes to run (``embed_workers``, or what the cores allow)."""
        if self.embed_workers > 0:
            return self.embed_workers
        return max(1, (os.cpu_count() or 1) // max(1, self.intra_op_threads))

    def served_refs(self) -> tuple[str, ...]:
        """The default model, then the other served references, each once."""
        extra = (ref.strip() for ref in self.models.split(","))
        return tuple(dict.fromkeys([self.default_model, *(ref for ref in extra if ref)]))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Settings from ``SSLZOO_*`` variables; a malformed number is an error that names the variable."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get(f"SSLZOO_{field.name.upper()}")
            if raw is None or raw == "":
                continue
            default = getattr(cls, field.name, None)
            try:
                if isinstance(default, bool) or not isinstance(default, (int, float, Path)):
                    values[field.name] = raw
                elif isinstance(default, Path):
                    values[field.name] = Path(raw).expanduser()
                else:
                    values[field.name] = type(default)(raw)
            except ValueError:
                name = f"SSLZOO_{field.name.upper()}"
                raise ValueError(f"{name}={raw!r} is not a valid {type(default).__name__}") from None
        if "data_dir" not in values:
            home = env.get("SSLZOO_HOME")
            values["data_dir"] = (Path(home).expanduser() if home else sslzoo_home()) / "service"
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.precision not in ("fp32", "int8"):
            raise ValueError(f"SSLZOO_PRECISION must be fp32 or int8, not {settings.precision!r}")
        if settings.backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"SSLZOO_BACKEND must be auto, onnx or torch, not {settings.backend!r}")
        return settings
