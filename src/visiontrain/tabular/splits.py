"""Stratified splits: one train/val/test split, or K folds whose held-out part plays the test split.

Every fit sees the same three roles: train (fits features and model), val (early stopping, best checkpoint,
decision threshold) and test (scored once, never looked at while fitting). Cross-validation repeats that with
each fold held out in turn, so fold scores are as honest as the final model's test score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from visiontrain.errors import DataError
from visiontrain.training.task import Split

__all__ = ["Split", "check_class_sizes", "holdout_split", "kfold_splits", "split_from_parts"]


def check_class_sizes(labels: np.ndarray, class_names: Sequence[str], target: str, val_fraction: float,
                      test_fraction: float, folds: int = 0) -> None:
    """Every class must reach every part of every split (train, val, test, each fold), or scores mean nothing.

    Checked before any split, so that a rare class is a clear error naming the class and the fix, not
    scikit-learn's "least populated class" from deep inside a split (or a fold that never sees the class).
    """
    shares = {"val part": val_fraction, "test part": test_fraction}
    needed = {part: _rows_for_one(share) for part, share in shares.items() if share > 0}
    if folds >= 2:
        needed[f"each of the {folds} folds"] = folds
        needed["val part of each fold"] = _rows_for_one(val_fraction * (folds - 1) / folds)
    part, need = max(needed.items(), key=lambda item: item[1], default=("train part", 3))
    need = max(need, 3)  # one row each for train, val and test at the very least
    counts = np.bincount(labels.astype(np.int64), minlength=len(class_names))
    for name, count in zip(class_names, counts):
        if count == 0:
            other = next(other for other in class_names if other != name)
            raise DataError(f"every kept row of the target {target!r} is of class {other!r}: a "
                            "classifier needs rows of both classes. Add rows of the other class, or point "
                            "data.target at the column to predict.")
        if count < need:
            share = f" ({shares[part]:.0%} of the rows)" if part in shares else ""
            fewer = "; or use fewer folds (cv.folds=3, or cv.folds=0 for none)" if folds >= 2 else ""
            raise DataError(f"the target {target!r} has {count} kept row(s) of class {name!r}, too few to "
                            f"split: the {part}{share} needs at least {need} rows of each class to hold one. "
                            f"Add rows of {name!r} (or stop rejecting them: see rejects.csv), raise "
                            f"data.val_fraction / data.test_fraction{fewer}.")


def _rows_for_one(share: float) -> int:
    """The fewest rows of a class for ``share`` of them to be at least one row."""
    return math.ceil(1 / share - 1e-9)


def _stratify(labels: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if labels is None else labels[rows]


def holdout_split(labels: np.ndarray | None, rows: int, val_fraction: float, test_fraction: float,
                  seed: int) -> Split:
    """Train/val/test by position, stratified by ``labels`` (None for regression)."""
    everything = np.arange(rows)
    development, test = (everything, everything[:0]) if test_fraction == 0 else train_test_split(
        everything, test_size=test_fraction, random_state=seed, stratify=_stratify(labels, everything))
    train, val = _split_off_val(labels, development, val_fraction / (1 - test_fraction), seed)
    return Split("final", np.sort(train), np.sort(val), np.sort(test))


def split_from_parts(parts: np.ndarray) -> Split:
    """The split that ``parts`` ("train" / "val" / "test" per row, by position) already decided."""
    return Split("final", *(np.flatnonzero(parts == name) for name in ("train", "val", "test")))


def kfold_splits(labels: np.ndarray | None, rows: int, folds: int, val_fraction: float, seed: int) -> list[Split]:
    """K splits: fold k is the test part; the rest is split again into train and val."""
    everything = np.arange(rows)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed) if labels is not None else \
        KFold(folds, shuffle=True, random_state=seed)
    result = []
    for index, (development, test) in enumerate(splitter.split(everything, labels), start=1):
        train, val = _split_off_val(labels, development, val_fraction, seed + index)
        result.append(Split(f"fold{index}", np.sort(train), np.sort(val), np.sort(test)))
    return result


def _split_off_val(labels: np.ndarray | None, rows: np.ndarray, fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    train, val = train_test_split(rows, test_size=fraction, random_state=seed, stratify=_stratify(labels, rows))
    return train, val
