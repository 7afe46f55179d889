"""The tabular task's config checks that need its libraries: the model's classes (scikit-learn or torch.optim)
and where the table comes from (the cleaning, inference and feature options are the typed config's to check:
:mod:`visiontrain.config.tabular`).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from visiontrain.config.reading import value
from visiontrain.config.targets import check_targets
from visiontrain.errors import ConfigError, DataError, UntrustedTarget
from visiontrain.tabular.ingest import detect_format, source_from_environment
from visiontrain.training.checks import check_optimizer_class


def check_tabular_libraries(cfg: DictConfig, settings: object = None) -> None:
    """The model's classes and where the table comes from (``cfg`` has passed the library-free checks;
    ``settings``, the parsed config, is what the image task's checks read)."""
    task_type = value(cfg, "data.task_type")
    if value(cfg, "model.kind") == "mlp":
        check_optimizer_class(cfg)
    else:
        where = f"model.estimator.{task_type}"
        try:
            check_targets(OmegaConf.select(cfg, where), "estimator", where)
        except UntrustedTarget as error:
            fix = "a scikit-learn estimator class, e.g. sklearn.linear_model.LogisticRegression"
            raise ConfigError(f"{where}._target_", str(error), fix) from None
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
