"""Split thresholds of fitted tree ensembles made exact in float32, so ONNX and scikit-learn route every row alike.

scikit-learn compares a feature with a float64 threshold (a midpoint between two training values); an ONNX tree
ensemble compares a float32 input with a float32 threshold, the float64 one rounded to nearest. Where that rounding
goes *up* onto a float32 value ``v``, a row holding exactly ``v`` goes right in Python (``v > t``) and left in ONNX
(``v <= float32(t) == v``), and its score differs by a whole leaf. Our features reach the model as float32, and for
any float32 ``x`` and float64 ``t``, ``x <= t`` holds exactly when ``x <= f``, ``f`` being the largest float32 not
above ``t``: replacing ``t`` by ``f`` after fitting changes no prediction on float32 inputs, and ``f`` survives the
float32 conversion unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def float32_floor(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 value <= each threshold, as float64 (infinities and NaN are kept)."""
    values = np.asarray(thresholds, dtype=np.float64)
    rounded = values.astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded.astype(np.float64)


def snap_split_thresholds(estimator: Any) -> int:
    """Snap, in place, the split thresholds of a fitted tree ensemble to :func:`float32_floor`; returns how many
    changed. Estimators without trees (linear models) are left alone and give 0.

    Covers scikit-learn's ``GradientBoosting*`` (``estimators_``: decision trees) and ``HistGradientBoosting*``
    (``_predictors``: one node table per tree and class).
    """
    changed = 0
    for values, is_split in _threshold_tables(estimator):
        before = values[is_split].copy()
        values[is_split] = float32_floor(before)
        changed += int(np.sum(values[is_split] != before))
    return changed


def _threshold_tables(estimator: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Writable views of each tree's thresholds, with the mask of split (non-leaf) nodes."""
    tables = []
    for tree in np.ravel(getattr(estimator, "estimators_", [])):
        structure = getattr(tree, "tree_", None)
        if structure is not None:  # Tree.threshold is a view of the node array: writing it changes the tree
            tables.append((structure.threshold, structure.children_left != -1))
    for per_class in getattr(estimator, "_predictors", []):
        for predictor in per_class:
            nodes = predictor.nodes
            tables.append((nodes["num_threshold"], nodes["is_leaf"] == 0))
    for values, _ in tables:
        if not values.flags.writeable:
            raise ValueError(f"{type(estimator).__name__}: its split thresholds are read-only; scikit-learn "
                             "changed how trees are stored, and float32-exact export cannot be guaranteed")
    return tables
