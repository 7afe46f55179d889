"""Permutation feature importance of a fitted tabular model, on raw columns, for every kind of model alike.

Each of the schema's columns is shuffled in turn on (at most ``max_rows``) validation rows, *before* the feature
pipeline, so a category's one-hot group counts as one feature and an MLP, a linear model and boosted trees are
measured the same way. The drop of the run's monitored metric is the column's importance (scikit-learn's
``permutation_importance`` does the shuffling and repeats, with a fixed seed).
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn import metrics as skm

from visiontrain.config.choices import MINIMISED
from visiontrain.config.table_schema import TableSchema
from visiontrain.tabular.features import encode, model_inputs
from visiontrain.tabular.metrics import binary_metrics, regression_metrics
from visiontrain.tabular.models import TabularModel

MAX_ROWS = 2000  # enough rows for a stable ranking; the cost grows with rows x columns x repeats
REPEATS = 5
CSV_COLUMNS = ("feature", "importance_mean", "importance_std", "rank")
# as binary_metrics computes them (maximised)
RANKING_METRICS = {"roc_auc": skm.roc_auc_score, "pr_auc": skm.average_precision_score}


@dataclass(frozen=True)
class FeatureImportance:
    """One raw column: the mean and std over repeats of the metric's drop when it is shuffled; rank 1 = most."""

    feature: str
    importance_mean: float
    importance_std: float
    rank: int


@dataclass(frozen=True)
class ImportanceResult:
    """Every feature, most important first, and how the numbers were measured."""

    metric: str          # e.g. roc_auc; for a minimised metric (rmse) importance is how much it *rises*
    split: str
    rows: int
    repeats: int
    seed: int
    baseline: float      # the metric on the unshuffled rows
    seconds: float
    features: list[FeatureImportance]

    def top(self, count: int = 5) -> list[FeatureImportance]:
        return self.features[:count]

    @property
    def effect(self) -> str:
        """What shuffling an important column does to the metric: a maximised one drops, a minimised one rises."""
        return "rise" if f"val/{self.metric}" in MINIMISED else "drop"

    def describe(self, count: int = 5) -> str:
        """One line for the end-of-run report."""
        cells = ", ".join(f"{f.feature} {f.importance_mean:+.4f}" for f in self.top(count))
        return (f"feature importance ({self.effect} of {self.metric} when shuffled, {self.rows} {self.split} rows x "
                f"{self.repeats}): {cells}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> "ImportanceResult":
        """The result back from :meth:`as_dict` (as summary.json holds it); extra keys are ignored."""
        fields = {key: entry[key] for key in cls.__dataclass_fields__ if key != "features"}
        return cls(**fields, features=[FeatureImportance(**feature) for feature in entry["features"]])

    def write_csv(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            writer.writerows([f.feature, f"{f.importance_mean:.6g}", f"{f.importance_std:.6g}", f.rank]
                             for f in self.features)
        return path

    def markdown(self) -> str:
        """A section for data_report.md."""
        lines = ["## Feature importance", "",
                 f"{self.effect.capitalize()} of {self.metric} (baseline {self.baseline:.4f}) when one raw column is shuffled, on "
                 f"{self.rows} {self.split} rows, mean +- std of {self.repeats} repeats (seed {self.seed}).", "",
                 "| rank | feature | importance | std |", "|---|---|---|---|"]
        lines += [f"| {f.rank} | {f.feature} | {f.importance_mean:.4f} | {f.importance_std:.4f} |"
                  for f in self.features]
        return "\n".join(lines) + "\n"


class RawColumnScorer:
    """What ``permutation_importance`` calls: raw schema columns in, the fitted model's scores out.

    The frame holds :func:`~visiontrain.tabular.features.model_inputs` columns; the feature pipeline runs on every
    call, so a shuffled column is encoded as the model would see it.
    """

    def __init__(self, module: TabularModel) -> None:
        self.module = module

    def fit(self, frame: pd.DataFrame, target: np.ndarray) -> None:
        """scikit-learn's estimator check asks for ``fit``; the model is already fitted and must stay so."""
        raise TypeError("RawColumnScorer scores a fitted model; it never fits one")

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        features = torch.as_tensor(encode(self.module.feature_pipeline, frame))
        with torch.no_grad():
            return self.module.eval().scores(features).double().numpy()


def importance_metric(monitor: str, classifier: bool) -> str:
    """The monitored metric (``val/roc_auc`` -> ``roc_auc``) where it is computable from scores, else roc_auc /
    rmse (a monitored loss has no value on shuffled rows)."""
    name = monitor.removeprefix("val/")
    computable = ("acc", "precision", "recall", "f1", "roc_auc", "pr_auc") if classifier else \
        ("mse", "rmse", "mae", "r2")
    return name if name in computable else ("roc_auc" if classifier else "rmse")


def permutation_feature_importance(module: TabularModel, rows: pd.DataFrame, target: np.ndarray,
                                   schema: TableSchema, metric: str, split: str = "val", repeats: int = REPEATS,
                                   max_rows: int = MAX_ROWS, seed: int = 0) -> ImportanceResult:
    """Shuffle each raw column of ``rows`` ``repeats`` times and measure how much ``metric`` gets worse.

    At most ``max_rows`` rows are used (a fixed-seed sample); ``metric`` is a key of
    :func:`~visiontrain.tabular.metrics.binary_metrics` or :func:`~visiontrain.tabular.metrics.regression_metrics`.
    """
    from sklearn.inspection import permutation_importance
    from threadpoolctl import threadpool_limits

    if len(rows) != len(target):
        raise ValueError(f"{len(rows)} rows but {len(target)} targets")
    if len(rows) == 0:
        raise ValueError("permutation importance needs at least one row")
    if module.is_classifier and len(np.unique(target)) < 2:
        raise ValueError("permutation importance of a classifier needs rows of both classes")
    started = time.perf_counter()
    if len(rows) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_rows, replace=False))
        rows, target = rows.iloc[keep], target[keep]
    frame = model_inputs(rows, schema).reset_index(drop=True)
    sign = -1.0 if f"val/{metric}" in MINIMISED else 1.0  # higher is better for permutation_importance

    def score(scorer: RawColumnScorer, shuffled: pd.DataFrame, truth: np.ndarray) -> float:
        values = scorer.scores(shuffled)
        if metric in RANKING_METRICS:  # the one metric alone: all of binary_metrics costs 5x more per call
            return sign * float(RANKING_METRICS[metric](truth, values))
        computed = binary_metrics(truth, values, module.threshold) if module.is_classifier else \
            regression_metrics(truth, values)
        return sign * float(computed[metric])

    scorer = RawColumnScorer(module)
    # inputs and settings were validated when the pipeline and model were fitted; skipping scikit-learn's
    # per-call re-validation (finiteness, parameters) halves the cost of each of the ~100 scorings. One OpenMP
    # thread: each scoring is small, and HistGradientBoosting's threads spinning on a busy machine made one
    # run's importance 40x slower (167 s instead of 4 s on Telco)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True), threadpool_limits(1):
        result = permutation_importance(scorer, frame, np.asarray(target), scoring=score, n_repeats=repeats,
                                        random_state=seed)
    means, stds = result.importances_mean, result.importances_std  # baseline - shuffled, both sign * metric
    order = np.argsort(-means, kind="stable")
    features = [FeatureImportance(str(frame.columns[i]), float(means[i]), float(stds[i]), rank)
                for rank, i in enumerate(order, start=1)]
    return ImportanceResult(metric=metric, split=split, rows=len(frame), repeats=repeats, seed=seed,
                            baseline=sign * score(scorer, frame, np.asarray(target)),
                            seconds=round(time.perf_counter() - started, 3), features=features)
