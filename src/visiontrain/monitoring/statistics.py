"""Distribution summaries and the two drift measures (PSI, two-sample KS), in numpy only.

The inference side (``visiontrain drift``, serving) must run without torch or scipy, so the KS p-value uses the
asymptotic Kolmogorov distribution directly.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

SAMPLE_SIZE = 1000   # reference values kept per numeric feature (evenly spaced quantiles)
BINS = 10            # PSI bins: reference deciles
EPSILON = 1e-4       # PSI floor for empty bins
POINT_WIDTH = 1e-6   # half-width of a point bin, relative to the value (absolute near zero)


def numeric_reference(values: np.ndarray) -> dict[str, Any]:
    """Quantile bin edges, bin proportions and a quantile sketch of ``values`` (NaN counted apart)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"kind": "numeric", "count": int(values.size), "missing_rate": 1.0, "edges": [], "proportions": [],
                "sample": []}
    edges, points = _bin_edges(finite)
    proportions = _proportions(finite, edges)
    sample = np.quantile(finite, np.linspace(0, 1, min(SAMPLE_SIZE, finite.size)))
    return {"kind": "numeric", "count": int(values.size), "missing_rate": float(1 - finite.size / values.size),
            "edges": edges.tolist(), "points": points.tolist(), "proportions": proportions.tolist(),
            "sample": sample.tolist(), "mean": float(finite.mean()), "std": float(finite.std())}


def _bin_edges(finite: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decile edges, with a narrow bin of its own around each value that holds a tenth of the rows or more.

    Deciles alone collapse on such a value: a constant reference (every image 128 px wide) leaves one edge and
    one bin, so any current data scores PSI 0. A point bin ``[v - w, v + w)`` measures "equal to the reference
    value" against "elsewhere". The first and last edges are the range; only the inner ones cut (outer bins open).
    """
    deciles = np.quantile(finite, np.linspace(0, 1, BINS + 1))
    values, repeats = np.unique(deciles, return_counts=True)
    points = values[repeats > 1]  # two equal deciles: at least a tenth of the rows sit on that value
    if points.size == 0:
        return values, points
    width = POINT_WIDTH * np.maximum(np.abs(points), 1.0)
    inner = values[1:-1]
    cuts = np.unique(np.concatenate([inner[~np.isin(inner, points)], points - width, points + width]))
    return np.concatenate([[min(values[0], cuts[0])], cuts, [max(values[-1], cuts[-1])]]), points


def categorical_reference(values: Any) -> dict[str, Any]:
    """Share of each category (missing as ``""``), in label order.

    Counted in a dict, not with ``np.unique`` (which sorts every value as a Python object): a live drift window
    of 1,000 rows and 16 categories is compared in a few milliseconds.
    """
    counts = Counter("" if v is None or v != v else str(v) for v in values)
    total = sum(counts.values())
    return {"kind": "category", "count": int(total),
            "proportions": {label: counts[label] / total for label in sorted(counts)}}


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
    reference = _with_point_bins(reference)
    if not reference["edges"] or finite.size == 0:
        return 0.0
    return psi(reference["proportions"], _proportions(finite, np.asarray(reference["edges"])))


def _with_point_bins(reference: dict[str, Any]) -> dict[str, Any]:
    """A reference stored before point bins (no ``points``; ONNX files already exported) whose deciles merged,
    rebinned from its quantile sketch, which keeps the repeated values; any other reference as it is."""
    if "points" in reference or len(reference["edges"]) == BINS + 1 or not reference.get("sample"):
        return reference
    sample = np.asarray(reference["sample"], dtype=np.float64)
    edges, points = _bin_edges(sample)
    return {**reference, "edges": edges.tolist(), "points": points.tolist(),
            "proportions": _proportions(sample, edges).tolist()}


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
