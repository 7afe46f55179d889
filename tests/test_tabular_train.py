"""The churn user's story through the same runner: train, cross-validate, compare models, export one ONNX file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from conftest import TELCO, TELCO_SAMPLE, compose_train, run_cli, written_by
from visiontrain.registry import task_for_config

FAST = ["trainer.enable_progress_bar=false", "trainer.max_epochs=4", "trainer.log_every_n_steps=5"]


def run_in_process(tmp_path: Path, *overrides: str) -> dict:
    from visiontrain.commands.train import train

    run_dir = tmp_path / "run"
    cfg = compose_train("experiment=churn", f"paths.run_dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}",
                        *FAST, *overrides)
    train(cfg)
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory):
    """`visiontrain train experiment=churn` on the built-in generated table, as a user runs it, exported by the
    dynamo exporter (the `export` command below uses the default, torchscript)."""
    base = tmp_path_factory.mktemp("churn")
    run_dir = base / "run"
    result = run_cli("train", "experiment=churn", *FAST, "export.exporter=dynamo", "export.opset=18",
                     f"hydra.run.dir={run_dir}", cwd=base,
                     env={"VISIONTRAIN_CACHE_DIR": str(base / "cache")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"run_dir": run_dir, "summary": json.loads((run_dir / "summary.json").read_text()),
            "stdout": result.stdout}


def test_churn_run_accounts_for_every_row_and_writes_its_reports(churn_run):
    summary, run_dir = churn_run["summary"], churn_run["run_dir"]
    data = summary["data"]
    assert data["rows_in"] == data["rows_kept"] + data["rows_rejected"] and data["rows_rejected"] > 0
    with open(run_dir / "rejects.csv", newline="") as handle:
        rejects = list(csv.DictReader(handle))
    assert len(rejects) == data["rows_rejected"] and all(row["reason"] for row in rejects)
    assert sum(data["split_rows"].values()) == data["rows_kept"]
    for name in ("model.onnx", "data_report.json", "data_report.md", "roc_curve.png", "pr_curve.png",
                 "confusion_matrix.png", "confusion_matrix.csv", "curves.png", "history.csv", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    test = summary["evaluation"]["test"]["metrics"]
    assert {"test/acc", "test/precision", "test/recall", "test/f1", "test/roc_auc", "test/pr_auc"} <= set(test)
    assert test["test/roc_auc"] > 0.7  # the generated churn depends on contract, tenure, charges: learnable
    assert 0 < summary["evaluation"]["val"]["metrics"]["val/threshold"] < 1
    assert "rows in" in churn_run["stdout"] and "held-out test" in churn_run["stdout"]


def test_exported_onnx_takes_raw_columns_and_matches_the_model(churn_run):
    summary, run_dir = churn_run["summary"], churn_run["run_dir"]
    parity = summary["export"]["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4 and parity["labels_identical"]
    assert parity["rows"] == summary["data"]["split_rows"]["test"]

    assert written_by(run_dir / "model.onnx") == {"dynamo"}, "export.exporter=dynamo reached the file"
    session = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) if v[:1] in "[{\"0123456789" else v
            for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["positive_label"] == "Yes"
    assert meta["threshold"] == pytest.approx(summary["evaluation"]["val"]["metrics"]["val/threshold"])  # val's
    assert [o.name for o in session.get_outputs()] == ["probability", "label"]
    rows = 3
    feeds = {}
    for name, kind in meta["input_columns"].items():
        if kind == "float":
            feeds[name] = np.array([[12.0], [np.nan], [70.0]], dtype=np.float32)  # a blank charge: NaN, imputed
        else:
            feeds[name] = np.array([["Yes"], [""], ["a category never seen"]], dtype=object)
    probability, label = session.run(None, feeds)
    assert probability.shape == (rows,) and np.all((probability >= 0) & (probability <= 1))
    assert np.array_equal(label, (probability >= meta["threshold"]).astype(np.int64))


def test_feature_pipeline_is_fitted_on_training_rows_only(tmp_path):
    """Scaler, imputer and encoder statistics come from the training rows, whatever val and test hold."""
    from visiontrain.tabular.splits import Split

    cfg = compose_train("experiment=churn", f"paths.run_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path}")
    task = task_for_config(cfg)
    data = task.prepare(tmp_path / "run", True)
    table = data.table
    # the rows of two-year contracts are never in training: the encoder must not know that category
    two_year = np.flatnonzero(table["Contract"].to_numpy() == "Two year")
    others = np.setdiff1d(np.arange(len(table)), two_year)
    split = Split("manual", train=others[: len(others) // 2], val=others[len(others) // 2:], test=two_year)
    module = task.build(data, split).module
    columns = module.feature_pipeline.named_steps["columns"]
    encoder = columns.named_transformers_["category"].named_steps["onehot"]
    contract = list(encoder.categories_[data.schema.categorical_features.index("Contract")])
    assert contract == ["Month-to-month", "One year"]

    numeric = columns.named_transformers_["numeric"]
    index = data.schema.numeric_features.index("tenure")
    train_tenure = table["tenure"].to_numpy(dtype=float)[split.train]
    imputed = np.where(np.isnan(train_tenure), np.nanmedian(train_tenure), train_tenure)
    assert numeric.named_steps["impute"].statistics_[index] == pytest.approx(np.nanmedian(train_tenure))
    assert numeric.named_steps["scale"].mean_[index] == pytest.approx(imputed.mean())
    all_tenure = table["tenure"].to_numpy(dtype=float)
    assert abs(np.nanmean(all_tenure) - imputed.mean()) > 1.0  # two-year customers stay longer: it would differ


@pytest.mark.parametrize("model", ["logistic_regression", "gradient_boosting"])
def test_baselines_share_the_runner_checkpoints_and_export(tmp_path, model):
    from visiontrain.core.names import TASK_KEY
    from visiontrain.tabular.models import load_tabular_model
    from visiontrain.training.checkpoints import read_checkpoint

    summary = run_in_process(tmp_path, f"model={model}")
    assert summary["epochs_trained"] == 1 and summary["export"]["parity"]["passed"]
    assert summary["export"]["parity"]["labels_identical"]
    restored = load_tabular_model(summary["checkpoints"]["best"])  # skops bytes, trusted types only
    assert read_checkpoint(summary["checkpoints"]["best"])[TASK_KEY] == "tabular"  # what evaluate/export go by
    assert restored.threshold == pytest.approx(summary["evaluation"]["val"]["metrics"]["val/threshold"])
    assert type(restored.estimator).__name__ == {"logistic_regression": "LogisticRegression",
                                                 "gradient_boosting": "GradientBoostingClassifier"}[model]
    assert summary["evaluation"]["test"]["metrics"]["test/roc_auc"] > 0.7


def test_cross_validation_on_real_telco_rows(tmp_path):
    """3-fold stratified CV on 500 real Telco rows: mean and std of every metric, per-fold files."""
    summary = run_in_process(tmp_path, f"data.source={TELCO_SAMPLE}", "cv.folds=3", "model=logistic_regression")
    cv = summary["cross_validation"]
    assert cv["folds"] == 3 and len(cv["per_fold"]) == 3
    for name in ("acc", "precision", "recall", "f1", "roc_auc", "pr_auc"):
        assert name in cv["mean"] and name in cv["std"]
    assert cv["mean"]["roc_auc"] > 0.80  # published references: 0.83-0.85 on the full data
    held_out = sum(fold["rows"]["test"] for fold in cv["per_fold"])
    assert held_out == summary["data"]["rows_kept"]  # every kept row is held out exactly once
    assert summary["data"]["report"]["rules"]["numeric_coerced"]["repaired"] == 11  # the blank TotalCharges
    assert (tmp_path / "run" / "folds" / "fold2" / "roc_curve.png").is_file()
    assert json.loads((tmp_path / "run" / "cross_validation.json").read_text())["mean"] == cv["mean"]


def test_a_real_sqlite_database_is_a_source(tmp_path):
    import sqlalchemy

    database = tmp_path / "crm.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    pd.read_csv(TELCO_SAMPLE, dtype=str, keep_default_na=False).to_sql("customers", engine, index=False)
    engine.dispose()
    summary = run_in_process(tmp_path, f"data.source=sqlite:///{database}",
                             "data.query=SELECT * FROM customers WHERE gender IS NOT NULL",
                             "model=logistic_regression")
    assert summary["data"]["rows_in"] == 500 and summary["export"]["parity"]["passed"]


def test_regression_path_on_diabetes_with_kfold(tmp_path):
    from visiontrain.commands.train import train

    run_dir = tmp_path / "run"
    cfg = compose_train("experiment=diabetes", f"paths.run_dir={run_dir}", f"paths.cache_dir={tmp_path}",
                        "cv.folds=3", "model=logistic_regression", "trainer.enable_progress_bar=false")
    train(cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    cv = summary["cross_validation"]
    assert {"mse", "rmse"} <= set(cv["mean"]) and cv["std"]["rmse"] > 0
    assert 40 < cv["mean"]["rmse"] < 70  # ridge on diabetes: about 55; the target's own std is about 77
    assert summary["data"]["rows_in"] == 442
    session = ort.InferenceSession(summary["files"]["onnx"], providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["prediction"]
    assert summary["export"]["parity"]["passed"]


@pytest.mark.parametrize("override, key", [
    ("cv.folds=1", "cv.folds"),
    ("data.source=no_such_table.csv", "data.source"),
    ("monitor.metric=val/acc_top5", "monitor.metric"),
    ("data.columns.tenure.type=text", "data.columns.tenure.type"),
    ("data.cleaning.outliers=drop", "data.cleaning.outliers"),
    ("features.pca_components=1.5", "features.pca_components"),
])
def test_tabular_config_mistakes_fail_before_any_row_is_read(tmp_path, override, key):
    from visiontrain.commands.validation import validate_train_config
    from visiontrain.errors import ConfigError

    cfg = compose_train("experiment=churn", f"paths.run_dir={tmp_path}", override)
    with pytest.raises(ConfigError) as caught:
        validate_train_config(cfg)
    assert caught.value.key == key


@pytest.mark.slow
@pytest.mark.shared_data(TELCO)
def test_full_telco_five_fold_roc_auc_reaches_the_published_range(tmp_path):
    """The whole Telco file, 5-fold stratified CV, gradient boosting: ROC-AUC >= 0.84."""
    summary = run_in_process(tmp_path, f"data.source={TELCO}", "cv.folds=5", "model=gradient_boosting")
    assert summary["data"]["rows_in"] == 7043
    assert summary["cross_validation"]["mean"]["roc_auc"] >= 0.84


def test_evaluate_and_export_commands_work_on_a_churn_checkpoint(churn_run, tmp_path):
    """The same `evaluate` and `export` commands as for images; a new table is scored in full."""
    summary = churn_run["summary"]
    best = summary["checkpoints"]["best"]
    result = run_cli("evaluate", f"ckpt={best}", "split=test", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path,
                     env={"VISIONTRAIN_CACHE_DIR": str(churn_run["run_dir"].parent / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert evaluation["metrics"]["test/roc_auc"] == pytest.approx(
        summary["evaluation"]["test"]["metrics"]["test/roc_auc"], abs=1e-9)

    result = run_cli("evaluate", f"ckpt={best}", f"data_root={TELCO_SAMPLE}", f"hydra.run.dir={tmp_path / 'new'}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "new" / "evaluation.json").read_text())["rows"] == 500

    result = run_cli("export", f"ckpt={best}", f"output={tmp_path / 'churn.onnx'}",
                     f"hydra.run.dir={tmp_path / 'export'}", cwd=tmp_path,
                     env={"VISIONTRAIN_CACHE_DIR": str(churn_run["run_dir"].parent / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    exported = json.loads((tmp_path / "export" / "export.json").read_text())
    assert exported["parity"]["passed"] and (tmp_path / "churn.onnx").is_file()
    assert written_by(tmp_path / "churn.onnx") == {"torchscript"}, "export's own default, not the run's exporter"
