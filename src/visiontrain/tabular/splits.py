"""Stratified splits: one train/val/test split, or K folds whose held-out part plays the test split.

Every fit sees the same three roles: train (fits features and model), val (early stopping, best checkpoint,
decision threshold) and test (scored once, never looked at while fitting). Cross-validation repeats that with
each fold held out in turn, so fold scores are as honest as the final model's test score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split


@dataclass(frozen=True)
class Split:
    name: str                 # "final" or "fold1".."foldK"
    train: np.ndarray         # positions into the cleaned table
    val: np.ndarray
    test: np.ndarray


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
