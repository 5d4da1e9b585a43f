"""Parity figures against plain reference computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.parity import ParityReport, Tolerance, knn_figures, knn_predict, retrieval_figures, vector_figures

TOL = Tolerance(max_abs_diff=1e-3, min_cosine=0.99, knn_agreement=0.9)


def _reference_knn(gallery, labels, queries, k, temperature=0.07):
    out = []
    for q in queries:
        sims = [float(q @ g / np.linalg.norm(q) / np.linalg.norm(g)) for g in gallery]
        order = sorted(range(len(gallery)), key=lambda i: -sims[i])[:k]
        votes: dict[int, float] = {}
        for i in order:
            votes[int(labels[i])] = votes.get(int(labels[i]), 0.0) + np.exp(sims[i] / temperature)
        out.append(max(votes, key=votes.get))
    return np.array(out)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_knn_matches_a_plain_loop(k):
    rng = np.random.default_rng(k)
    gallery, queries = rng.normal(size=(60, 8)), rng.normal(size=(25, 8))
    labels = rng.integers(0, 4, size=60)
    np.testing.assert_array_equal(knn_predict(gallery, labels, queries, k), _reference_knn(gallery, labels, queries, k))


def test_vector_figures():
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    cand = np.array([[1.0, 0.1], [0.0, 2.0]])
    figures = vector_figures(ref, cand)
    assert figures["max_abs_diff"] == pytest.approx(0.1)
    assert figures["rel_max_abs_diff"] == pytest.approx(0.05)  # relative to the largest norm, 2
    assert figures["min_cosine"] == pytest.approx(1 / np.sqrt(1.01))
    assert figures["mean_cosine"] == pytest.approx((1 / np.sqrt(1.01) + 1) / 2)


def test_ties_are_left_out_only_when_asked():
    # Query 0 sits exactly between a class-0 and a class-1 image; a 1e-9 nudge flips its answer.
    gallery = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.2]])
    labels = np.array([0, 1, 2])
    queries = np.array([[1.0, 0.0], [-1.0, 0.1]])
    nudged = queries + np.array([[0.0, -1e-9], [0.0, 0.0]])
    lifted = queries + np.array([[0.0, 1e-9], [0.0, 0.0]])
    strict = knn_figures((gallery, lifted), (gallery, nudged), labels, np.array([0, 2]), k=1)
    assert strict["knn_agreement"] == 0.5 and strict["knn_ties"] == 0
    tolerant = knn_figures((gallery, lifted), (gallery, nudged), labels, np.array([0, 2]), tie=1e-6, k=1)
    assert tolerant["knn_agreement"] == 1.0 and tolerant["knn_agreement_all"] == 0.5 and tolerant["knn_ties"] == 1
    json.dumps(tolerant)  # figures go to config.json: plain Python numbers only
    # A decisive query that changes its answer still counts against the candidate.
    moved = knn_figures((gallery, queries), (gallery, np.array([[1.0, 0.0], [1.0, 0.9]])), labels,
                        np.array([0, 2]), tie=1e-6, k=1)
    assert moved["knn_agreement"] < 1.0


def test_report_gates_and_nan_fails():
    report = ParityReport("image", "fp32", "torch", TOL)
    ref = np.eye(3)
    report.add_vectors("same", ref, ref)
    assert report.passed
    report.add_vectors("noise, reported only", ref, ref + 0.5, gated=False)
    assert report.passed
    report.add_vectors("nan", ref, ref * np.nan)
    assert report.failures == ["nan: max abs diff nan > 0.001", "nan: min cosine nan < 0.99"]
    report.add_agreement("k-NN", {"knn_agreement": 0.5, "n": 2})
    assert report.failures[-1] == "k-NN: knn agreement 0.5000 < 0.9"
    assert report.to_dict()["passed"] is False


def test_mean_cosine_gate_and_ungated_minimum():
    int8_like = Tolerance(max_abs_diff=None, min_cosine=None, knn_agreement=0.9, mean_cosine=0.95)
    report = ParityReport("image", "int8", "onnx fp32", int8_like)
    ref = np.eye(4)
    one_bad = ref.copy()
    one_bad[0] = [1.0, 1.0, 0.0, 0.0]  # cosine 0.707 for one vector, mean 0.927
    report.add_vectors("one bad of four", ref, one_bad)
    assert report.failures == ["one bad of four: mean cosine 0.926777 < 0.95"]
    many = np.eye(40)
    drifted = many.copy()
    drifted[0, 1] = 1.0  # the same bad vector among forty: mean 0.9927, minimum still 0.707
    report = ParityReport("image", "int8", "onnx fp32", int8_like)
    report.add_vectors("one bad of forty", many, drifted)
    assert report.passed and report.figures["one bad of forty"]["min_cosine"] == pytest.approx(0.5 ** 0.5)


def test_retrieval_agreement_and_ties():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]])
    moved = np.array([[1.0, 0.0], [1.0, 0.9], [1.0, 0.2]])  # query 1 now finds item 2 instead of item 1
    figures = retrieval_figures((gallery, gallery), (queries, moved))
    assert figures["retrieval_agreement"] == pytest.approx(2 / 3) and figures["retrieval_ties"] == 0
    # Query 2 is nearly equidistant from items 0 and 2 in the reference: a tie at 0.1 cosine, left out.
    tolerant = retrieval_figures((gallery, gallery), (queries, moved), tie=0.1)
    assert tolerant["retrieval_ties"] == 1 and tolerant["retrieval_agreement"] == 0.5
