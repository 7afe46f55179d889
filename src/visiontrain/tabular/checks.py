"""The tabular task's config checks that need its libraries: the model's classes (scikit-learn or torch.optim),
the cleaning, inference and feature options, and where the table comes from.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from visiontrain.config.reading import value
from visiontrain.config.targets import UntrustedTarget, check_targets
from visiontrain.errors import ConfigError, DataError
from visiontrain.tabular.cleansing import CleaningRules
from visiontrain.tabular.features import FeatureOptions
from visiontrain.tabular.inference import InferenceOptions
from visiontrain.tabular.ingest import detect_format, source_from_environment
from visiontrain.training.checks import check_optimizer_class


def check_tabular_libraries(cfg: DictConfig, settings: object = None) -> None:
    """The model's classes, the cleaning and feature options, and where the table comes from (``settings``: the
    parsed config, which the image task's checks read; these still read ``cfg``)."""
    task_type = str(cfg.data.task_type)
    if cfg.model.kind == "mlp":
        check_optimizer_class(cfg)
    else:
        where = f"model.estimator.{task_type}"
        try:
            check_targets(OmegaConf.select(cfg, where), "estimator", where)
        except UntrustedTarget as error:
            fix = "a scikit-learn estimator class, e.g. sklearn.linear_model.LogisticRegression"
            raise ConfigError(f"{where}._target_", str(error), fix) from None
    CleaningRules.from_config(cfg.data.get("cleaning"))
    InferenceOptions.from_config(cfg.data.get("inference"))
    FeatureOptions.from_config(cfg.get("features"))
    source = value(cfg, "data.source")
    variable = value(cfg, "data.source_env")
    if variable:
        source = source_from_environment(str(variable))
    if source is None:
        return
    fmt = value(cfg, "data.format")
    try:
        detected = detect_format(str(source)) if fmt == "auto" else fmt
    except DataError as error:
        raise ConfigError("data.format", str(error), "data.format=csv (or json, jsonl, parquet, sql)") from None
    if detected in ("kafka", "http"):  # read at the start of the run: a broker or an API is not checked twice
        return
    if detected != "sql" and not Path(str(source)).expanduser().is_file():
        raise ConfigError("data.source", f"{source} does not exist",
                          "data.source=/path/to/table.csv (or .json, .jsonl, .parquet, .db, or a SQLAlchemy URL)")
    if detected == "sql" and not (value(cfg, "data.table") or value(cfg, "data.query")):
        raise ConfigError("data.table", "a database source needs a table or a query",
                          "data.table=customers (or data.query='SELECT * FROM customers')")
