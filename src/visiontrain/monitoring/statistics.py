"""Distribution summaries and the two drift measures (PSI, two-sample KS), in numpy only.

The inference side (``visiontrain drift``, serving) must run without torch or scipy, so the KS p-value uses the
asymptotic Kolmogorov distribution directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SAMPLE_SIZE = 1000   # reference values kept per numeric feature (evenly spaced quantiles)
BINS = 10            # PSI bins: reference deciles
EPSILON = 1e-4       # PSI floor for empty bins


def numeric_reference(values: np.ndarray) -> dict[str, Any]:
    """Quantile bin edges, bin proportions and a quantile sketch of ``values`` (NaN counted apart)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"kind": "numeric", "count": int(values.size), "missing_rate": 1.0, "edges": [], "proportions": [],
                "sample": []}
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)))
    proportions = _proportions(finite, edges)
    sample = np.quantile(finite, np.linspace(0, 1, min(SAMPLE_SIZE, finite.size)))
    return {"kind": "numeric", "count": int(values.size), "missing_rate": float(1 - finite.size / values.size),
            "edges": edges.tolist(), "proportions": proportions.tolist(), "sample": sample.tolist(),
            "mean": float(finite.mean()), "std": float(finite.std())}


def categorical_reference(values: Any) -> dict[str, Any]:
    """Share of each category (missing as ``""``)."""
    labels, counts = np.unique(np.asarray([("" if v is None or v != v else str(v)) for v in values], dtype=object),
                               return_counts=True)
    total = counts.sum()
    return {"kind": "category", "count": int(total),
            "proportions": {str(label): float(count / total) for label, count in zip(labels, counts)}}


def _proportions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` per bin; the outer bins are open, so values beyond the reference range count."""
    if edges.size < 2:
        return np.array([1.0])
    inner = edges[1:-1]
    index = np.searchsorted(inner, values, side="right")
    counts = np.bincount(index, minlength=edges.size - 1).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: sum((a - e) * ln(a / e)); < 0.1 stable, 0.1-0.25 moderate, > 0.25 shifted."""
    e = np.clip(np.asarray(expected, dtype=np.float64), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(reference: dict[str, Any], values: np.ndarray) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not reference["edges"] or finite.size == 0:
        return 0.0
    return psi(reference["proportions"], _proportions(finite, np.asarray(reference["edges"])))


def categorical_psi(reference: dict[str, Any], values: Any) -> float:
    current = categorical_reference(values)["proportions"]
    labels = sorted(set(reference["proportions"]) | set(current))
    return psi([reference["proportions"].get(label, 0.0) for label in labels],
               [current.get(label, 0.0) for label in labels])


def ks_two_sample(reference_sample: np.ndarray, values: np.ndarray,
                  reference_count: int | None = None) -> tuple[float, float]:
    """KS statistic and asymptotic p-value; the reference is a quantile sketch standing for ``reference_count``."""
    a = np.sort(np.asarray(reference_sample, dtype=np.float64))
    b = np.sort(np.asarray(values, dtype=np.float64))
    b = b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return 0.0, 1.0
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    n, m = float(reference_count or a.size), float(b.size)
    effective = np.sqrt(n * m / (n + m))
    return statistic, _kolmogorov_survival((effective + 0.12 + 0.11 / effective) * statistic)


def _kolmogorov_survival(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (series; Numerical Recipes' probks)."""
    if x < 1e-3:
        return 1.0
    k = np.arange(1, 101)
    terms = 2 * (-1.0) ** (k - 1) * np.exp(-2 * (k * x) ** 2)
    return float(np.clip(terms.sum(), 0.0, 1.0))
