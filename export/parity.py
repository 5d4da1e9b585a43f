"""Parity figures between two sets of embeddings, the tolerances that gate an export, and the report.

Three figures answer three questions a user of the vectors has. *Max abs difference* (relative to the
largest reference norm, so it also means something for un-normalised ``dot`` entries): are the
numbers the same? *Min cosine*: is any single vector pointing elsewhere? *k-NN top-1 agreement* on a
labelled set: would a search or a k-NN classifier built on these vectors answer the same? The last is
what int8 is judged by, since its vectors are allowed to move a little as long as answers do not.

Only numpy: the runtime side and tests can compute and read reports without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

KNN_K = 10  # neighbours that vote, as in the k-NN evaluation of DINO (which uses 20 on ImageNet)
KNN_TEMPERATURE = 0.07  # votes weighted exp(cos / T), DINO's weighting


@dataclass(frozen=True)
class Tolerance:
    """Bounds a candidate must meet on every gated input set; ``None`` means reported, not gated."""

    max_abs_diff: float | None
    min_cosine: float | None
    knn_agreement: float
    knn_tie: float | None = None
    mean_cosine: float | None = None


#: fp32 ONNX vs PyTorch: the same arithmetic in another order, so only rounding may differ. k-NN answers
#: that are ties at 1e-5 in cosine (about 10× what fp32 rounding moves a similarity here) are left out
#: of the agreement: an untrained ResNet puts most images within 1e-3 of each other, and rounding then
#: flipped half its k-NN answers; only a tie allowance separates that from a broken graph.
FP32_TOLERANCE = Tolerance(max_abs_diff=1e-4, min_cosine=0.9999, knn_agreement=0.99, knn_tie=1e-5)
#: int8 vs the fp32 ONNX graph: vectors may move, answers may not. Judged by k-NN top-1 agreement
#: (≥ 99 % over every query, no tie allowance: an int8 graph must give the fp32 graph's answers) within
#: int8 and across precisions (int8 queries against an fp32 index: both files share one embedding space),
#: plus a mean cosine of at least 0.9 (a mean angle under 26°) that catches a broken graph, not rounding:
#: encoders fitted on digits kept every k-NN answer at mean cosines of 0.946 (ResNet-18) and 0.973 (narrow ResNet). The
#: minimum cosine is reported only: over hundreds of images it is an extreme of rounding noise (0.88
#: for that narrow ResNet).
INT8_TOLERANCE = Tolerance(max_abs_diff=None, min_cosine=None, knn_agreement=0.99, mean_cosine=0.9)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def vector_figures(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max abs difference (raw and relative to the largest reference norm), min and mean cosine."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    cosine = (_unit(ref) * _unit(cand)).sum(axis=1)
    max_abs = float(np.abs(ref - cand).max())
    scale = float(np.linalg.norm(ref, axis=1).max())
    return {"max_abs_diff": max_abs, "rel_max_abs_diff": max_abs / max(scale, 1e-12),
            "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()), "n": len(ref)}


def _knn(gallery: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Class votes ``[Q, C]`` of a cosine k-NN weighted ``exp(cos / T)``, and each row's sorted top-(k+1) sims."""
    sims = _unit(queries.astype(np.float64)) @ _unit(gallery.astype(np.float64)).T
    k = min(k, gallery.shape[0])
    order = np.argsort(-sims, axis=1, kind="stable")[:, : k + 1]
    top = order[:, :k]
    weights = np.exp(np.take_along_axis(sims, top, axis=1) / KNN_TEMPERATURE)
    votes = np.zeros((len(queries), labels.max().item() + 1))
    np.add.at(votes, (np.arange(len(queries))[:, None], labels[top]), weights)
    return votes, np.take_along_axis(sims, order, axis=1)


def knn_predict(gallery: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """Top-1 class of a cosine k-NN classifier whose votes are weighted ``exp(cos / T)``."""
    return _knn(gallery, labels, queries, k)[0].argmax(axis=1)


def decisive(votes: np.ndarray, top_sims: np.ndarray, tie: float, k: int = KNN_K) -> np.ndarray:
    """Queries whose k-NN answer no change of any similarity by at most ``tie`` could alter.

    The k neighbours must be separated from the next one by more than ``2 * tie``, and the winning
    class must still win if every weight moved by a factor ``exp(±tie / T)`` against it.
    """
    stable_set = (top_sims[:, k - 1] - top_sims[:, k] > 2 * tie) if top_sims.shape[1] > k else np.ones(len(votes), bool)
    ranked = np.sort(votes, axis=1)
    runner_up = ranked[:, -2] if votes.shape[1] > 1 else np.zeros(len(votes))
    stable_vote = ranked[:, -1] * np.exp(-tie / KNN_TEMPERATURE) > runner_up * np.exp(tie / KNN_TEMPERATURE)
    return stable_set & stable_vote


def retrieval_figures(gallery: tuple[np.ndarray, np.ndarray], queries: tuple[np.ndarray, np.ndarray],
                      tie: float | None = None) -> dict[str, float]:
    """Top-1 retrieval agreement: does each query find the same gallery item on both sides?

    ``gallery`` and ``queries`` are ``(reference, candidate)`` pairs. With ``tie`` set, queries whose
    reference best match beats the runner-up by no more than ``2 * tie`` in cosine are left out, as
    in :func:`knn_figures`.
    """
    ref_sims = _unit(queries[0].astype(np.float64)) @ _unit(gallery[0].astype(np.float64)).T
    cand_sims = _unit(queries[1].astype(np.float64)) @ _unit(gallery[1].astype(np.float64)).T
    same = ref_sims.argmax(axis=1) == cand_sims.argmax(axis=1)
    counted = np.ones(len(same), bool)
    if tie is not None and ref_sims.shape[1] > 1:
        top2 = -np.sort(-ref_sims, axis=1)[:, :2]
        counted = top2[:, 0] - top2[:, 1] > 2 * tie
    return {"retrieval_agreement": float(same[counted].mean()) if counted.any() else 1.0,
            "retrieval_agreement_all": float(same.mean()), "retrieval_ties": int(np.count_nonzero(~counted)),
            "n": len(same)}


def knn_figures(reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray],
                gallery_labels: np.ndarray, query_labels: np.ndarray, tie: float | None = None,
                k: int = KNN_K) -> dict[str, float]:
    """k-NN top-1 agreement when each side embeds its own gallery and queries, as a service would.

    ``knn_agreement_all`` counts every query. ``knn_agreement`` (the gated one) leaves out, when
    ``tie`` is set, queries whose reference answer is a tie at that cosine scale: answers that
    rounding order alone decides, which differ even between two PyTorch runs at other batch sizes.
    How many were left out is reported as ``knn_ties``.
    """
    ref_votes, ref_sims = _knn(reference[0], gallery_labels, reference[1], k)
    ref_pred = ref_votes.argmax(axis=1)
    cand_pred = knn_predict(candidate[0], gallery_labels, candidate[1], k)
    same = ref_pred == cand_pred
    counted = decisive(ref_votes, ref_sims, tie, k) if tie is not None else np.ones(len(same), bool)
    return {"knn_agreement": float(same[counted].mean()) if counted.any() else 1.0,
            "knn_agreement_all": float(same.mean()), "knn_ties": int(np.count_nonzero(~counted)),
            "knn_accuracy_reference": float((ref_pred == query_labels).mean()),
            "knn_accuracy_candidate": float((cand_pred == query_labels).mean()), "n": len(query_labels)}


@dataclass
class ParityReport:
    """Figures per input set for one tower at one precision, the tolerance, and what missed it."""

    tower: str
    precision: str
    reference: str
    tolerance: Tolerance
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every gated figure is within its tolerance."""
        return not self.failures

    def add_vectors(self, name: str, reference: np.ndarray, candidate: np.ndarray, gated: bool = True) -> None:
        """Record vector figures for one input set and, if ``gated``, check them against the tolerance."""
        figures = vector_figures(reference, candidate)
        self.figures[name] = {**figures, "gated": gated}
        if not gated:
            return
        tol = self.tolerance
        if tol.max_abs_diff is not None and not figures["rel_max_abs_diff"] <= tol.max_abs_diff:
            self.failures.append(f"{name}: max abs diff {figures['rel_max_abs_diff']:.3g} > {tol.max_abs_diff:g}")
        if tol.min_cosine is not None and not figures["min_cosine"] >= tol.min_cosine:  # `not >=`: NaN fails
            self.failures.append(f"{name}: min cosine {figures['min_cosine']:.6f} < {tol.min_cosine:g}")
        if tol.mean_cosine is not None and not figures["mean_cosine"] >= tol.mean_cosine:
            self.failures.append(f"{name}: mean cosine {figures['mean_cosine']:.6f} < {tol.mean_cosine:g}")

    def add_agreement(self, name: str, figures: dict[str, float], key: str = "knn_agreement") -> None:
        """Record an agreement figure (k-NN or retrieval) and check it against ``knn_agreement``."""
        self.figures[name] = figures
        if not figures[key] >= self.tolerance.knn_agreement:
            self.failures.append(f"{name}: {key.replace('_', ' ')} {figures[key]:.4f} < "
                                 f"{self.tolerance.knn_agreement:g}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``config.json``."""
        return {"tower": self.tower, "precision": self.precision, "reference": self.reference,
                "tolerance": asdict(self.tolerance), "figures": self.figures, "passed": self.passed,
                "failures": list(self.failures)}
