"""The parity gate: embed the fixed inputs with PyTorch and with onnxruntime, and fill a report.

fp32 graphs are compared with the PyTorch encoder (the thing the weights were trained as); int8
graphs with the fp32 graph they were made from, so their report measures quantisation alone. Each
backend embeds its own k-NN gallery, as a service building an index would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export.golden import ImageSets
from export.parity import ParityReport, Tolerance, knn_figures, retrieval_figures
from export.runtime import OnnxImageEncoder, SessionSettings
from zoo.config import EncoderConfig
from zoo.encoders import ImageEncoder
from zoo.text import TextEncoder

BATCH_ONE_CHECK = 4  # golden images also run one at a time: the dynamic batch axis must not change results
IMAGE_SETS = ("golden", "random", "gallery", "queries")


@dataclass
class ImageEmbeddings:
    """One backend's embeddings of every image set, keyed like :data:`IMAGE_SETS`."""

    vectors: dict[str, np.ndarray]

    @classmethod
    def from_torch(cls, encoder: ImageEncoder, sets: ImageSets) -> ImageEmbeddings:
        encoder.eval()
        return cls({name: encoder.embed_array(getattr(sets, name)) for name in IMAGE_SETS})

    @classmethod
    def from_onnx(cls, session: OnnxImageEncoder, sets: ImageSets) -> ImageEmbeddings:
        return cls({name: session.embed_array(getattr(sets, name)) for name in IMAGE_SETS})


def _settings() -> SessionSettings:
    return SessionSettings(optimization="all")


def check_image(path: Path, config: EncoderConfig, sets: ImageSets, reference: ImageEmbeddings,
                tolerance: Tolerance, precision: str, against: str) -> tuple[ParityReport, ImageEmbeddings]:
    """Compare an image graph with ``reference`` on every set; returns the report and its embeddings.

    For int8 the random-noise set is reported but not gated: int8 ranges are calibrated on images,
    and noise far outside them says nothing about the photos a service will see.
    """
    session = OnnxImageEncoder(path, config, _settings(), precision)
    candidate = ImageEmbeddings.from_onnx(session, sets)
    report = ParityReport("image", precision, against, tolerance)
    report.add_vectors("golden", reference.vectors["golden"], candidate.vectors["golden"])
    report.add_vectors("random", reference.vectors["random"], candidate.vectors["random"], gated=precision == "fp32")
    labelled_ref = np.concatenate([reference.vectors["gallery"], reference.vectors["queries"]])
    labelled_cand = np.concatenate([candidate.vectors["gallery"], candidate.vectors["queries"]])
    report.add_vectors("digits", labelled_ref, labelled_cand)
    one_by_one = session.embed_array(sets.golden[:BATCH_ONE_CHECK], batch_size=1)
    report.add_vectors("golden batch=1", reference.vectors["golden"][:BATCH_ONE_CHECK], one_by_one)
    ref_index = (reference.vectors["gallery"], reference.vectors["queries"])
    labels = (sets.gallery_labels, sets.query_labels)
    report.add_agreement("digits k-NN", knn_figures(
        ref_index, (candidate.vectors["gallery"], candidate.vectors["queries"]), *labels, tolerance.knn_tie))
    # Both files share one embedding space, so a service may search a reference-built index with these.
    report.add_agreement("digits k-NN mixed", knn_figures(
        ref_index, (reference.vectors["gallery"], candidate.vectors["queries"]), *labels, tolerance.knn_tie))
    return report, candidate


@torch.inference_mode()
def torch_text(text: TextEncoder, tokens: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """PyTorch text embeddings of each token set."""
    text.eval()
    return {name: text(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
            for name, (ids, mask) in tokens.items()}


def onnx_text(path: Path, tokens: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Onnxruntime text embeddings of each token set."""
    session = _settings().session(path)
    return {name: session.run(["embeddings"], {"ids": ids, "mask": mask})[0] for name, (ids, mask) in tokens.items()}


def check_text(path: Path, tokens: dict[str, tuple[np.ndarray, np.ndarray]], reference: dict[str, np.ndarray],
               images: tuple[np.ndarray, np.ndarray], n_captions: int, tolerance: Tolerance, precision: str,
               against: str) -> tuple[ParityReport, dict[str, np.ndarray]]:
    """Compare a text graph with ``reference``; agreement is caption → golden image retrieval.

    ``images`` are the reference and the candidate side's embeddings of the golden images that the
    first ``n_captions`` captions describe, so the agreement says whether text search returns the
    same image.
    """
    candidate = onnx_text(path, tokens)
    report = ParityReport("text", precision, against, tolerance)
    report.add_vectors("captions", reference["golden"], candidate["golden"])
    report.add_vectors("random tokens", reference["random"], candidate["random"], gated=precision == "fp32")
    report.add_agreement("caption→image top-1", retrieval_figures(
        images, (reference["golden"][:n_captions], candidate["golden"][:n_captions]), tolerance.knn_tie),
        key="retrieval_agreement")
    return report, candidate
