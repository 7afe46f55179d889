"""Files a run leaves behind: confusion matrix (CSV, PNG), per-class metrics, curves, summary.json."""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def per_class_metrics(confusion: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows: true, cols: predicted).

    scikit-learn computes them: each cell becomes one (true, predicted) pair weighted by its count.
    """
    from sklearn.metrics import precision_recall_fscore_support

    confusion = np.asarray(confusion, dtype=np.float64)
    true, predicted = np.indices(confusion.shape).reshape(2, -1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        true, predicted, labels=list(range(len(class_names))), sample_weight=confusion.ravel(), zero_division=0.0)
    support = confusion.sum(axis=1)
    return [{"class": name, "precision": round(float(p), 6), "recall": round(float(r), 6), "f1": round(float(f), 6),
             "support": int(s)} for name, p, r, f, s in zip(class_names, precision, recall, f1, support)]


def write_confusion(confusion: np.ndarray, class_names: Sequence[str], out_dir: Path, prefix: str = "",
                    unit: str = "images") -> dict:
    """confusion_matrix.csv/.png and per_class.csv in ``out_dir``; returns their paths and the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    confusion = np.asarray(confusion, dtype=np.int64)
    csv_path = out_dir / f"{prefix}confusion_matrix.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, confusion):
            writer.writerow([name, *row.tolist()])
    table = per_class_metrics(confusion, class_names)
    per_class_path = out_dir / f"{prefix}per_class.csv"
    with per_class_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)

    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(confusion, cmap="Blues")
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = confusion.max() / 2 if confusion.size else 0
    for (i, j), value in np.ndenumerate(confusion):
        axes.text(j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    axes.set_title(f"Confusion matrix ({int(confusion.sum())} {unit})")
    figure.tight_layout()
    png_path = out_dir / f"{prefix}confusion_matrix.png"
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return {"confusion_csv": str(csv_path), "confusion_png": str(png_path), "per_class_csv": str(per_class_path),
            "per_class": table}


def plot_curves(rows: list[dict[str, float]], path: Path, metric: str = "acc") -> Path | None:
    """Loss and ``metric`` per epoch (train and val), with the frozen stage shaded."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for axes, name in ((loss_axes, "loss"), (acc_axes, metric)):
        for split in ("train", "val"):
            key = f"{split}/{name}"
            points = [(r["epoch"], r[key]) for r in rows if key in r]
            if points:
                axes.plot(*zip(*points), marker="o", label=key)
        frozen = [r["epoch"] for r in rows if r.get("frozen_backbone")]
        if frozen:
            axes.axvspan(min(frozen) - 0.5, max(frozen) + 0.5, color="grey", alpha=0.15, label="backbone frozen")
        axes.set_xlabel("epoch")
        axes.set_title(name)
        axes.set_xticks(epochs)
        if axes.get_legend_handles_labels()[0]:  # a baseline logs no loss: nothing to name
            axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def library_versions() -> dict[str, str]:
    """Versions that decide whether a result can be reproduced."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("visiontrain", "torch", "torchvision", "lightning", "timm", "albumentations", "hydra-core",
                    "onnx", "onnxruntime", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    import torch

    versions["torch"] = torch.__version__  # the build tag (+cu130, +cpu) matters for reproduction
    versions["cuda_runtime"] = torch.version.cuda or "none"
    return versions


def to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, (np.ndarray,)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(data: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")
    return path
