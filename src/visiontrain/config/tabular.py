"""Checks of a tabular config before any row is read: schema, cleaning rules, features, model, splits."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from visiontrain.config.validation import _boolean, _check_optimizer, _check_run, _check_trainer, _choice, _number, _value
from visiontrain.errors import ConfigError, DataError

CLASSIFICATION_MONITORS = ("val/roc_auc", "val/pr_auc", "val/f1", "val/acc", "val/precision", "val/recall",
                           "val/loss")
REGRESSION_MONITORS = ("val/rmse", "val/mse", "val/mae", "val/r2", "val/loss")
BUILTIN_TABLES = ("churn", "diabetes")


def _check_tabular_run(cfg: DictConfig) -> None:
    task_type = _choice(cfg, "data.task_type", ("classification", "regression"))
    _check_run(cfg, CLASSIFICATION_MONITORS if task_type == "classification" else REGRESSION_MONITORS)
    folds = _number(cfg, "cv.folds", "5", integer=True, minimum=0)
    if folds == 1:
        raise ConfigError("cv.folds", "1 fold is not cross-validation", "cv.folds=5 (or 0 for a single split)")
    from visiontrain.tabular.metrics import THRESHOLD_METRICS

    _choice(cfg, "decision.threshold_metric", THRESHOLD_METRICS)


def _check_tabular_model(cfg: DictConfig) -> None:
    if "backbone" in (OmegaConf.select(cfg, "model") or {}):
        raise ConfigError("model", "is an image backbone, but this run trains on a table",
                          "model=mlp, model=logistic_regression or model=gradient_boosting")
    if OmegaConf.select(cfg, "data.kind") != "table":
        raise ConfigError("data", "is an image dataset, but this run trains on a table",
                          "data=churn, data=diabetes, or data.source=<your table> with experiment=churn")
    kind = _choice(cfg, "model.kind", ("mlp", "estimator"))
    if kind == "mlp":
        _check_optimizer(cfg)
        hidden = _value(cfg, "model.hidden")
        if not OmegaConf.is_list(hidden) or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0
                                                    for h in hidden):
            raise ConfigError("model.hidden", f"must be a list of layer widths, got {hidden!r}", "model.hidden=[128,64]")
        _number(cfg, "model.dropout", "0.2", minimum=0, maximum=0.95)
        _boolean(cfg, "model.cosine")
        return
    task_type = str(cfg.data.task_type)
    target = OmegaConf.select(cfg, f"model.estimator.{task_type}._target_")
    if not target:
        raise ConfigError(f"model.estimator.{task_type}", f"this model has no estimator for {task_type}",
                          "model=logistic_regression or model=gradient_boosting")
    from visiontrain.config.targets import UntrustedTarget, check_targets

    try:
        check_targets(OmegaConf.select(cfg, f"model.estimator.{task_type}"), "estimator", f"model.estimator.{task_type}")
    except UntrustedTarget as error:
        raise ConfigError(f"model.estimator.{task_type}._target_", str(error),
                          "a scikit-learn estimator class, e.g. sklearn.linear_model.LogisticRegression") from None


def _check_table_data(cfg: DictConfig) -> None:
    from visiontrain.tabular.cleansing import CleaningRules
    from visiontrain.tabular.features import FeatureOptions
    from visiontrain.tabular.ingest import FORMATS, detect_format
    from visiontrain.tabular.schema import TableSchema

    _number(cfg, "data.batch_size", "256", integer=True, minimum=1)
    val = _number(cfg, "data.val_fraction", "0.2", minimum=0, exclusive=True, maximum=0.5)
    test = _number(cfg, "data.test_fraction", "0.2", minimum=0, maximum=0.5)
    if val + test >= 0.9:
        raise ConfigError("data.test_fraction", f"val ({val}) + test ({test}) leave too few training rows",
                          "data.val_fraction=0.2 data.test_fraction=0.2")
    _choice(cfg, "data.balance", ("none", "loss_weights"))
    schema = TableSchema.from_config(cfg.data)
    if schema.task_type == "classification" and not schema.positive_label:
        raise ConfigError("data.positive_label", "a classification target needs the value that means positive",
                          'data.positive_label="Yes"')
    CleaningRules.from_config(cfg.data.get("cleaning"))
    FeatureOptions.from_config(cfg.get("features"))
    source = _value(cfg, "data.source")
    variable = OmegaConf.select(cfg, "data.source_env")
    if variable and source is not None:
        raise ConfigError("data.source_env", f"and data.source are both set; the source is read from {variable}",
                          "data.source=null (or data.source_env=null)")
    if variable:
        from visiontrain.tabular.ingest import source_from_environment

        source = source_from_environment(str(variable))
    if source is None:
        _choice(cfg, "data.builtin", BUILTIN_TABLES)
        return
    fmt = _choice(cfg, "data.format", ("auto", *FORMATS))
    try:
        detected = detect_format(str(source)) if fmt == "auto" else fmt
    except DataError as error:
        raise ConfigError("data.format", str(error), "data.format=csv (or json, jsonl, parquet, sql)") from None
    if detected != "sql" and not Path(str(source)).expanduser().is_file():
        raise ConfigError("data.source", f"{source} does not exist",
                          "data.source=/path/to/table.csv (or .json, .jsonl, .parquet, .db, or a SQLAlchemy URL)")
    if detected == "sql" and not (_value(cfg, "data.table") or _value(cfg, "data.query")):
        raise ConfigError("data.table", "a database source needs a table or a query",
                          "data.table=customers (or data.query='SELECT * FROM customers')")


TABULAR_CHECKS = (_check_tabular_run, _check_tabular_model, _check_trainer, _check_table_data)
