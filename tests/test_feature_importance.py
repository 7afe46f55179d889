"""Histogram gradient boosting end to end, float32-exact tree splits, and permutation importance of raw columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from conftest import TELCO_SAMPLE, compose_train

FAST = ["trainer.enable_progress_bar=false", "trainer.log_every_n_steps=5"]


@pytest.fixture(scope="module")
def hgb_run(tmp_path_factory):
    """`train experiment=churn model=hist_gradient_boosting cv.folds=2` on 500 real Telco rows, in process.

    One OpenMP thread: HistGradientBoosting's threads spin against each other on a small, shared machine (a
    20x slower fit here); the results do not depend on the thread count.
    """
    from threadpoolctl import threadpool_limits

    from visiontrain.commands.train import train

    base = tmp_path_factory.mktemp("hgb")
    run_dir = base / "run"
    cfg = compose_train("experiment=churn", f"paths.run_dir={run_dir}", f"paths.cache_dir={base / 'cache'}",
                        f"data.source={TELCO_SAMPLE}", "model=hist_gradient_boosting", "cv.folds=2", *FAST)
    with threadpool_limits(1):
        train(cfg)
    return {"run_dir": run_dir, "summary": json.loads((run_dir / "summary.json").read_text())}


def test_hist_gradient_boosting_trains_exports_and_passes_parity(hgb_run):
    from visiontrain.tabular.models import load_tabular_model

    summary = hgb_run["summary"]
    assert summary["model"]["name"] == "hist_gradient_boosting" and summary["epochs_trained"] == 1
    parity = summary["export"]["parity"]
    assert parity["passed"] and parity["labels_identical"] and parity["max_abs_diff"] <= 1e-4
    restored = load_tabular_model(summary["checkpoints"]["best"])  # skops, trusted types only
    assert type(restored.estimator).__name__ == "HistGradientBoostingClassifier"
    assert restored.estimator.n_iter_ == 200  # early stopping off: every configured tree is fitted
    assert summary["evaluation"]["test"]["metrics"]["test/roc_auc"] > 0.7


def test_the_run_writes_importance_to_csv_summary_report_and_data_report(hgb_run, capsys):
    from visiontrain.commands.train import print_report
    from visiontrain.registry import task_for_config

    run_dir, summary = hgb_run["run_dir"], hgb_run["summary"]
    importance = summary["evaluation"]["val"]["feature_importance"]
    assert importance["metric"] == "roc_auc" and importance["split"] == "val"
    assert importance["rows"] == summary["data"]["split_rows"]["val"] and importance["repeats"] == 5
    columns = summary["model"]["features_in"]
    with open(run_dir / "feature_importance.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["feature", "importance_mean", "importance_std", "rank"]
    assert len(rows) == columns == len(importance["features"])  # raw columns: one-hot groups count once
    assert [int(r["rank"]) for r in rows] == list(range(1, columns + 1))
    means = [float(r["importance_mean"]) for r in rows]
    assert means == sorted(means, reverse=True) and means[0] > 0
    assert summary["timings_seconds"]["feature_importance"] > 0
    assert "## Feature importance" in (run_dir / "data_report.md").read_text()

    print_report(summary, task_for_config(compose_train("experiment=churn")))
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("feature importance"))
    assert rows[0]["feature"] in line and "feature_importance.csv" in line


def test_cross_validation_folds_skip_importance(hgb_run):
    run_dir = hgb_run["run_dir"]
    assert hgb_run["summary"]["cross_validation"]["folds"] == 2 and (run_dir / "feature_importance.csv").is_file()
    assert list((run_dir / "folds").iterdir()) and not list((run_dir / "folds").glob("*/feature_importance.csv"))


# ----- float32-exact split thresholds -----------------------------------------------------------------------
def _rows_on_a_rounded_threshold() -> tuple[np.ndarray, np.ndarray]:
    """Two adjacent float32 values whose float64 midpoint rounds *up* to the upper one (ties to even)."""
    lower = np.nextafter(np.float32(1000.0), np.float32(2000.0))  # odd last mantissa bit
    upper = np.nextafter(lower, np.float32(2000.0))
    midpoint = (np.float64(lower) + np.float64(upper)) / 2
    if np.float32(midpoint) != upper:
        raise RuntimeError("the constructed midpoint does not round up: the test would prove nothing")
    features = np.array([[lower, 0.0]] * 150 + [[upper, 1.0]] * 150 + [[upper, 0.0]] * 100, dtype=np.float32)
    target = np.array([0] * 150 + [1] * 250)
    return features, target


def _onnx_scores(estimator, features: np.ndarray) -> np.ndarray:
    from visiontrain.tabular.onnx_graph import estimator_graph

    model = estimator_graph(estimator, features.shape[1], True, 17)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["score"], {"features": features})[0].astype(np.float64)


@pytest.mark.parametrize("name", ["HistGradientBoostingClassifier", "GradientBoostingClassifier"])
def test_tree_models_route_rows_on_a_rounded_threshold_as_onnx_does(name):
    """Fitted as a run fits (EstimatorModel's training epoch): Python and onnxruntime agree on every row."""
    from visiontrain.tabular.models import EstimatorModel

    features, target = _rows_on_a_rounded_threshold()
    settings = {"_target_": f"sklearn.ensemble.{name}", "random_state": 0,
                **({"max_iter": 20, "early_stopping": False, "min_samples_leaf": 5}
                   if name.startswith("Hist") else {"n_estimators": 20})}
    module = EstimatorModel(estimator=settings, task_type="classification", class_names=["no", "yes"],
                            feature_names=["x", "z"])
    module.training_step((torch.as_tensor(features), torch.as_tensor(target)), 0)
    module.on_train_epoch_end()
    python = module.scores(torch.as_tensor(features)).numpy()
    onnx = _onnx_scores(module.estimator, features)
    assert np.abs(python - onnx).max() < 1e-5
    assert np.array_equal(python >= 0.5, onnx >= 0.5)


def test_without_snapping_histogram_boosting_flips_the_rows_on_the_threshold():
    """The hazard the snap removes is real: a plain fit disagrees with its own ONNX export on those rows."""
    from skl2onnx.operator_converters import random_forest
    from sklearn.ensemble import HistGradientBoostingClassifier

    from visiontrain.tabular.tree_thresholds import snap_split_thresholds

    converter_helper = random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting

    features, target = _rows_on_a_rounded_threshold()
    plain = HistGradientBoostingClassifier(max_iter=20, early_stopping=False, min_samples_leaf=5,
                                           random_state=0).fit(features, target)
    before = plain.predict_proba(features)[:, 1]
    assert np.abs(before - _onnx_scores(plain, features)).max() > 0.1
    assert snap_split_thresholds(plain) > 0
    assert np.array_equal(plain.predict_proba(features)[:, 1], before)  # exactly equivalent on float32 inputs
    assert np.abs(before - _onnx_scores(plain, features)).max() < 1e-5
    assert random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting is converter_helper  # restored


def test_float32_floor_is_the_largest_float32_not_above():
    from visiontrain.tabular.tree_thresholds import float32_floor

    values = np.array([1000.0000915527344, 0.1, -0.1, 3.0, np.inf, -np.inf])
    floored = float32_floor(values)
    assert np.all(floored <= values) and np.all(floored.astype(np.float32).astype(np.float64) == floored)
    finite = np.isfinite(values)
    above = np.nextafter(floored[finite].astype(np.float32), np.float32(np.inf)).astype(np.float64)
    assert np.all(above > values[finite])
    assert floored[3] == 3.0


# ----- permutation importance on a table whose answer is known ----------------------------------------------
def _planted_table(rows: int, regression: bool) -> tuple[pd.DataFrame, object]:
    from visiontrain.config.table_schema import TableSchema

    rng = np.random.default_rng(3)
    strong, weak, noise = rng.normal(size=rows), rng.normal(size=rows), rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    signal = 3.0 * strong + 0.7 * weak + np.where(colour == "red", 0.8, 0.0)
    target = signal + rng.normal(scale=0.5, size=rows) if regression else \
        np.where(signal + rng.logistic(size=rows) > 0.3, "Yes", "No")
    table = pd.DataFrame({"strong": strong, "noise": noise, "colour": colour, "weak": weak, "label": target})
    schema = TableSchema.from_config({
        "target": "label", "task_type": "regression" if regression else "classification",
        "positive_label": None if regression else "Yes",
        "columns": {"strong": {"type": "numeric"}, "noise": {"type": "numeric"}, "weak": {"type": "numeric"},
                    "colour": {"type": "category", "categories": ["red", "green", "blue"]}}})
    return table, schema


def _fitted_linear_model(table: pd.DataFrame, schema, regression: bool):
    from visiontrain.config.tabular import Features
    from visiontrain.tabular.features import (
        build_feature_pipeline,
        feature_names,
        model_inputs,
        transform,
    )
    from visiontrain.tabular.models import EstimatorModel

    pipeline = build_feature_pipeline(schema, Features()).fit(model_inputs(table, schema))
    target = table["label"].to_numpy(dtype=float) if regression else (table["label"] == "Yes").to_numpy(int)
    estimator = {"_target_": "sklearn.linear_model.Ridge"} if regression else \
        {"_target_": "sklearn.linear_model.LogisticRegression", "max_iter": 1000}
    module = EstimatorModel(estimator=estimator, task_type="regression" if regression else "classification",
                            class_names=[] if regression else ["No", "Yes"], feature_names=feature_names(pipeline),
                            feature_pipeline=pipeline)
    features = torch.as_tensor(transform(pipeline, table, schema))
    module.training_step((features, torch.tensor(target)), 0)
    module.on_train_epoch_end()
    return module, target


@pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
def test_importance_ranks_the_planted_feature_first_and_noise_near_zero(regression):
    from visiontrain.tabular.importance import importance_metric, permutation_feature_importance

    table, schema = _planted_table(3000, regression)
    module, target = _fitted_linear_model(table.iloc[:1500], schema, regression)
    held_out = table.iloc[1500:]
    metric = importance_metric("val/rmse" if regression else "val/roc_auc", not regression)
    result = permutation_feature_importance(module, held_out, target_of(held_out, regression), schema, metric,
                                            max_rows=1000, seed=0)
    by_name = {f.feature: f for f in result.features}
    assert [f.feature for f in result.features][0] == "strong" and by_name["strong"].rank == 1
    assert set(by_name) == {"strong", "noise", "colour", "weak"}  # the colour one-hot group is one feature
    assert by_name["strong"].importance_mean > 10 * abs(by_name["noise"].importance_mean)
    assert abs(by_name["noise"].importance_mean) < 0.01 * (1 if not regression else result.baseline)
    assert by_name["weak"].importance_mean > by_name["noise"].importance_mean
    assert result.rows == 1000 and result.metric == ("rmse" if regression else "roc_auc")
    assert f"{'rise' if regression else 'drop'} of {result.metric}" in result.describe()  # rmse rises
    again = permutation_feature_importance(module, held_out, target_of(held_out, regression), schema, metric,
                                           max_rows=1000, seed=0)
    assert [f.importance_mean for f in again.features] == [f.importance_mean for f in result.features]


def target_of(rows: pd.DataFrame, regression: bool) -> np.ndarray:
    return rows["label"].to_numpy(dtype=float) if regression else (rows["label"] == "Yes").to_numpy(int)


def test_importance_metric_follows_the_monitor_where_it_can():
    from visiontrain.tabular.importance import importance_metric

    assert importance_metric("val/pr_auc", True) == "pr_auc"
    assert importance_metric("val/loss", True) == "roc_auc"
    assert importance_metric("val/loss", False) == "rmse"
    assert importance_metric("val/mae", False) == "mae"


def test_result_round_trips_through_summary_json(tmp_path: Path):
    from visiontrain.tabular.importance import FeatureImportance, ImportanceResult

    result = ImportanceResult(metric="roc_auc", split="val", rows=10, repeats=2, seed=0, baseline=0.8, seconds=0.1,
                              features=[FeatureImportance("a", 0.2, 0.01, 1), FeatureImportance("b", 0.0, 0.0, 2)])
    again = ImportanceResult.from_dict(json.loads(json.dumps({**result.as_dict(), "csv": "x.csv"})))
    assert again == result and "a +0.2000" in again.describe()
    assert result.write_csv(tmp_path / "fi.csv").read_text().splitlines()[1] == "a,0.2,0.01,1"
