"""Metrics of a binary or regression model from its scores: the same numbers for every model and fold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm


def binary_metrics(y_true: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall, F1 at ``threshold``; ROC-AUC and PR-AUC over all thresholds."""
    y_true = np.asarray(y_true).astype(int)
    predicted = (np.asarray(probability) >= threshold).astype(int)
    two_classes = len(np.unique(y_true)) == 2
    return {
        "acc": float(skm.accuracy_score(y_true, predicted)),
        "precision": float(skm.precision_score(y_true, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y_true, predicted, zero_division=0)),
        "f1": float(skm.f1_score(y_true, predicted, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y_true, probability)) if two_classes else float("nan"),
        "pr_auc": float(skm.average_precision_score(y_true, probability)) if two_classes else float("nan"),
    }


def regression_metrics(y_true: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    mse = float(skm.mean_squared_error(y_true, prediction))
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(skm.mean_absolute_error(y_true, prediction)),
            "r2": float(skm.r2_score(y_true, prediction))}


def tune_threshold(y_true: np.ndarray, probability: np.ndarray, metric: str = "f1") -> tuple[float, float]:
    """The decision threshold that maximises ``metric`` on these rows, and the value it reaches.

    Candidates lie between 201 quantiles of the scores (plus 0.5), so the search costs the same for 1k or 1M rows;
    ties go to the threshold closest to 0.5, the untuned default.
    """
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=np.float64)
    levels = np.unique(np.quantile(probability, np.linspace(0, 1, 201)))
    # midway between score levels: no score sits exactly on the threshold, so float32 (ONNX) and float64
    # (Python) scores always fall on the same side of it
    candidates = np.unique(np.concatenate([(levels[:-1] + levels[1:]) / 2, [0.5]]))
    score = {"f1": lambda p: skm.f1_score(y_true, p, zero_division=0),
             "acc": lambda p: skm.accuracy_score(y_true, p),
             "precision": lambda p: skm.precision_score(y_true, p, zero_division=0),
             "recall": lambda p: skm.recall_score(y_true, p, zero_division=0),
             "balanced_acc": lambda p: skm.balanced_accuracy_score(y_true, p)}[metric]
    values = np.array([score((probability >= t).astype(int)) for t in candidates])
    best = np.flatnonzero(values >= values.max() - 1e-12)
    chosen = best[np.argmin(np.abs(candidates[best] - 0.5))]
    return float(candidates[chosen]), float(values[chosen])


def confusion(y_true: np.ndarray, probability: np.ndarray, threshold: float) -> np.ndarray:
    return skm.confusion_matrix(np.asarray(y_true).astype(int), (np.asarray(probability) >= threshold).astype(int),
                                labels=[0, 1])


def plot_roc_pr(y_true: np.ndarray, probability: np.ndarray, out_dir: Path, prefix: str = "") -> dict[str, str]:
    """roc_curve.png and pr_curve.png for these rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    fpr, tpr, _ = skm.roc_curve(y_true, probability)
    precision, recall, _ = skm.precision_recall_curve(y_true, probability)
    plots = {"roc_png": (fpr, tpr, "false positive rate", "true positive rate",
                         f"ROC (AUC {skm.roc_auc_score(y_true, probability):.3f})", [0, 1], [0, 1]),
             "pr_png": (recall, precision, "recall", "precision",
                        f"precision-recall (AP {skm.average_precision_score(y_true, probability):.3f})",
                        [0, 1], [np.mean(y_true)] * 2)}
    for key, (x, y, xlabel, ylabel, title, ref_x, ref_y) in plots.items():
        figure, axes = plt.subplots(figsize=(4.5, 4.5))
        axes.plot(x, y, linewidth=2)
        axes.plot(ref_x, ref_y, linestyle="--", color="grey", linewidth=1)
        axes.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1.02))
        figure.tight_layout()
        path = out_dir / f"{prefix}{key.replace('_png', '_curve')}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        files[f"{prefix}{key}"] = str(path)
    return files
