"""Score the champion and the challenger on exactly the same held-out rows, with onnxruntime only.

Each ONNX file reads ``holdout.csv`` through the predict machinery (:mod:`visiontrain.deploy.predict`: the same
table coercion and image preprocessing as `visiontrain predict` and `serve`), so each model is scored as it would
serve. Rows either model rejects, and rows without a usable label, are left out of both models' metrics and
counted. The metrics are the training side's own (:mod:`visiontrain.tabular.metrics` for tables; accuracy and
macro-F1 as scikit-learn computes them for images), named as training names them without the ``val/`` prefix,
each model at its own decision threshold (from its metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visiontrain.core.image_decode import PixelLimit
from visiontrain.deploy.predict import decode_threads, manifest_inputs, predict_images, predict_table
from visiontrain.deploy.table_input import read_table
from visiontrain.errors import DataError
from visiontrain.inference.onnx_model import IMAGE, OnnxModel
from visiontrain.retraining.holdout import HeldOut
from visiontrain.retraining.labels import Target
from visiontrain.tabular.metrics import binary_metrics, regression_metrics

BINARY, REGRESSION, IMAGES = "binary", "regression", "images"
# what each kind of model is scored on, its monitor metric among them (training's names without ``val/``)
METRICS = {BINARY: ("roc_auc", "pr_auc", "acc", "f1", "precision", "recall", "loss"),
           REGRESSION: ("rmse", "mse", "mae", "r2"),
           IMAGES: ("acc", "f1_macro", "acc_top5", "loss")}
EXAMPLES = 5  # rejected rows listed per model in the report (all are counted)
EPSILON = 1e-7  # probabilities are clipped into [EPSILON, 1 - EPSILON] for the log loss


def kind_of(model: OnnxModel) -> str:
    """binary | regression | images: which metrics the held-out rows are scored with."""
    if model.kind == IMAGE:
        return IMAGES
    return REGRESSION if model.is_regression else BINARY


@dataclass(frozen=True)
class ModelScores:
    """One model's metrics on the compared rows, and the held-out rows it could not take."""

    label: str  # ``churn:v3``, or ``challenger`` before it is registered
    model_file: str
    metrics: dict[str, float]
    rejected: int
    rejected_examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    """Both models on the same rows: how many rows were held out, compared and left out, and why."""

    kind: str  # binary | regression | images
    held_out_rows: int
    compared_rows: int
    without_label: int  # held-out rows with no label either model's classes know (or no number): not compared
    champion: ModelScores
    challenger: ModelScores
    notes: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS[self.kind]

    def difference(self, metric: str) -> float:
        """Challenger minus champion."""
        return self.challenger.metrics[metric] - self.champion.metrics[metric]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "held_out_rows": self.held_out_rows, "compared_rows": self.compared_rows,
                "without_label": self.without_label, "notes": self.notes,
                "metrics": {name: {"champion": self.champion.metrics[name],
                                   "challenger": self.challenger.metrics[name],
                                   "difference": self.difference(name)} for name in self.metrics},
                "champion": self.champion.__dict__, "challenger": self.challenger.__dict__}


Outputs = tuple[dict[Any, dict[str, Any]], dict[Any, str]]  # predictions by row key, rejects (key -> reason)


def _table_outputs(model: OnnxModel, holdout: Path, batch_size: int) -> Outputs:
    predictions, rejects = predict_table(model, holdout, batch_size, [], progress=False)
    return ({row["row"]: row for row in predictions}, {row["row"]: row["reason"] for row in rejects})


def _image_outputs(model: OnnxModel, holdout: Path, batch_size: int, limit: PixelLimit) -> Outputs:
    inputs, skipped = manifest_inputs(holdout, None, allow_outside_root=True)
    predictions, rejects = predict_images(model, inputs, skipped, batch_size, max(1, len(model.class_names)),
                                          progress=False, threads=decode_threads("auto"), limit=limit)
    return ({row["path"]: row for row in predictions}, {row["path"]: row["reason"] for row in rejects})


def _table_truth(holdout: Path, target: Target) -> dict[int, Any]:
    """Row number (1-based, as predict numbers rows) -> label (a class name, or a number); None when unusable."""
    values = read_table(holdout)[target.name].tolist()
    if target.is_regression:
        return {i + 1: (None if np.isnan(number) else float(number))
                for i, number in enumerate(target.numbers(values))}
    return {i + 1: label for i, label in enumerate(target.labels(values))}


def _image_truth(holdout: Path, classes: list[str]) -> dict[str, str | None]:
    inputs, skipped = manifest_inputs(holdout, None, allow_outside_root=True)
    known = set(classes)
    truth: dict[str, str | None] = {str(path): (columns["label"] if columns["label"] in known else None)
                                    for path, columns in inputs}
    truth.update({row["path"]: None for row in skipped})
    return truth


def _binary(truth: list[Any], outputs: list[dict[str, Any]], model: OnnxModel, positive: str) -> dict[str, float]:
    y = np.array([label == positive for label in truth], dtype=np.int64)
    probability = np.array([row["probability"] for row in outputs], dtype=np.float64)
    threshold = float(model.metadata.threshold if model.metadata.threshold is not None else 0.5)
    metrics = binary_metrics(y, probability, threshold)
    p = np.clip(probability, EPSILON, 1 - EPSILON)
    metrics["loss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return metrics


def _regression(truth: list[Any], outputs: list[dict[str, Any]]) -> dict[str, float]:
    return regression_metrics(np.array(truth, dtype=np.float64),
                              np.array([row["prediction"] for row in outputs], dtype=np.float64))


def _ranked(row: dict[str, Any]) -> list[tuple[str, float]]:
    """An image prediction's classes, most probable first, with their probabilities (top1, top2, ...)."""
    ranked, rank = [], 1
    while f"top{rank}" in row:
        ranked.append((row[f"top{rank}"], float(row[f"top{rank}_probability"])))
        rank += 1
    return ranked


def _images(truth: list[Any], outputs: list[dict[str, Any]], classes: list[str]) -> dict[str, float]:
    from sklearn.metrics import f1_score

    ranked = [_ranked(row) for row in outputs]
    top1 = [names[0][0] for names in ranked]
    of_truth = [dict(names).get(label, 0.0) for names, label in zip(ranked, truth)]
    return {"acc": float(np.mean([p == t for p, t in zip(top1, truth)])),
            "f1_macro": float(f1_score(truth, top1, labels=classes, average="macro", zero_division=0)),
            "acc_top5": float(np.mean([t in [name for name, _ in names[:5]] for names, t in zip(ranked, truth)])),
            "loss": float(-np.mean(np.log(np.clip(of_truth, EPSILON, 1.0))))}


def _metrics(kind: str, truth: list[Any], outputs: list[dict[str, Any]], model: OnnxModel,
             target: Target | None, classes: list[str]) -> dict[str, float]:
    if not truth:
        return {name: float("nan") for name in METRICS[kind]}
    if kind == BINARY:
        return _binary(truth, outputs, model, str(target.positive if target else ""))
    if kind == REGRESSION:
        return _regression(truth, outputs)
    return _images(truth, outputs, classes)


def _check_same_task(champion: OnnxModel, challenger: OnnxModel) -> None:
    """The challenger must answer the same question: the same kind of model, target and positive label."""
    first, second = champion.metadata, challenger.metadata
    if kind_of(champion) != kind_of(challenger) or (first.target or None) != (second.target or None) or \
            (kind_of(champion) == BINARY and str(first.positive_label) != str(second.positive_label)):
        raise DataError(f"the challenger ({kind_of(challenger)}, target {second.target!r}, positive "
                        f"{second.positive_label!r}) does not predict what the champion does ({kind_of(champion)}, "
                        f"target {first.target!r}, positive {first.positive_label!r}): an extra override changed "
                        "the task? Nothing can be compared.")


def compare_models(champion: OnnxModel, challenger: OnnxModel, held_out: HeldOut, labels: tuple[str, str],
                   batch_size: int, limit: PixelLimit) -> Comparison:
    """Both models on ``held_out.holdout_file``; ``labels``: what to call them (champion, challenger)."""
    _check_same_task(champion, challenger)
    kind = kind_of(champion)
    holdout = held_out.holdout_file
    target = Target.of(champion) if kind != IMAGES else None
    classes = list(champion.class_names)
    if kind == IMAGES:
        truth: dict[Any, Any] = _image_truth(holdout, classes)
        outputs = [_image_outputs(model, holdout, batch_size, limit) for model in (champion, challenger)]
    else:
        truth = _table_truth(holdout, target)
        outputs = [_table_outputs(model, holdout, batch_size) for model in (champion, challenger)]
    (first, first_rejects), (second, second_rejects) = outputs
    keys = [key for key, label in truth.items() if label is not None and key in first and key in second]
    without_label = sum(label is None for label in truth.values())
    notes = []
    if set(first_rejects) != set(second_rejects):
        notes.append(f"the models rejected different held-out rows (champion {len(first_rejects)}, challenger "
                     f"{len(second_rejects)}): both are scored on the {len(keys)} rows both took")
    if without_label:
        notes.append(f"{without_label} held-out rows have no label the champion's classes know (or no number): "
                     "not compared")
    where = "path" if kind == IMAGES else "row"
    scores = [ModelScores(label, str(model.path),
                          _metrics(kind, [truth[key] for key in keys], [predictions[key] for key in keys], model,
                                   target, classes),
                          len(rejects), [{where: key, "reason": reason} for key, reason in
                                         list(rejects.items())[:EXAMPLES]])
              for label, model, (predictions, rejects) in zip(labels, (champion, challenger), outputs)]
    return Comparison(kind=kind, held_out_rows=len(truth), compared_rows=len(keys), without_label=without_label,
                      champion=scores[0], challenger=scores[1], notes=notes)
