"""Parity reports as the plain-text table ``sslzoo export`` prints (and the benchmark reuses)."""

from __future__ import annotations

from collections.abc import Iterable

from export.parity import ParityReport, Tolerance

HEADER = (f"{'tower':6} {'prec':5} {'vs':10} {'inputs':20} {'n':>5} {'max|Δ|':>9} {'min cos':>10} "
          f"{'mean cos':>10} {'top-1 agree':>12}  gated")


def _tolerance_text(tol: Tolerance) -> str:
    parts = [f"max|Δ| ≤ {tol.max_abs_diff:g}"] if tol.max_abs_diff is not None else []
    parts += [f"min cos ≥ {tol.min_cosine:g}"] if tol.min_cosine is not None else []
    parts += [f"mean cos ≥ {tol.mean_cosine:g}"] if tol.mean_cosine is not None else []
    parts.append(f"top-1 agreement ≥ {tol.knn_agreement:g}")
    if tol.knn_tie is not None:
        parts.append(f"k-NN ties at {tol.knn_tie:g} cos left out")
    return ", ".join(parts)


def _row(report: ParityReport, name: str, figures: dict[str, float]) -> str:
    lead = f"{report.tower:6} {report.precision:5} {report.reference:10} {name:20} {int(figures.get('n', 0)):>5}"
    if "min_cosine" in figures:
        return (f"{lead} {figures['rel_max_abs_diff']:>9.2e} {figures['min_cosine']:>10.6f} "
                f"{figures['mean_cosine']:>10.6f} {'':>12}  {'yes' if figures.get('gated') else 'no'}")
    key = next(k for k in figures if k in ("knn_agreement", "retrieval_agreement"))
    extra = ""
    for kind in ("knn", "retrieval"):
        if f"{kind}_ties" in figures:
            extra = f" (all {figures[f'{kind}_agreement_all']:.3f}, ties {int(figures[f'{kind}_ties'])})"
    return f"{lead} {'':>9} {'':>10} {'':>10} {figures[key]:>12.4f}  yes{extra}"


def format_reports(reports: Iterable[ParityReport], written: dict[str, str]) -> str:
    """One table of every report, then per report its tolerance and verdict."""
    reports = list(reports)
    lines = [HEADER, "-" * len(HEADER)]
    for report in reports:
        lines += [_row(report, name, figures) for name, figures in report.figures.items()]
    lines.append("")
    for report in reports:
        key = f"{report.tower}_{report.precision}"
        verdict = "PASS" if report.passed else "FAIL: " + "; ".join(report.failures)
        outcome = f" -> {written[key]}" if key in written else " -> not written"
        lines.append(f"{key:11} [{_tolerance_text(report.tolerance)}] {verdict}{outcome}")
    return "\n".join(lines)
