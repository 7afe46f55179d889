"""The declared schema of a table, read from config (``data.columns``, ``data.target``, ...).

Declaring the columns up front is what lets cleansing say exactly what is wrong with a row, and lets the
exported model check its inputs: nothing about the columns is guessed from the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from visiontrain.core.table_values import YES_NO
from visiontrain.errors import ConfigError

NUMERIC_TYPES = ("numeric", "integer", "float")
CATEGORY_TYPES = ("category", "boolean")
TASK_TYPES = ("classification", "regression")
_SPEC_KEYS = ("type", "categories", "min", "max")
SCHEMA_KEYS = ("target", "task_type", "positive_label", "id_columns", "columns")  # what is read of `data`


@dataclass(frozen=True)
class ColumnSpec:
    """One feature column: a number (optionally within a range) or a category (optionally from a list)."""

    name: str
    kind: str  # "numeric" | "category"   (integers are numeric)
    categories: tuple[str, ...] | None = None  # allowed values of a category column (None: any value)
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class TableSchema:
    """The feature columns (in order), the target and the identifier columns of a table."""

    columns: dict[str, ColumnSpec]
    target: str
    task_type: str  # "classification" | "regression"
    positive_label: str | None  # classification: the raw target value that means positive ("Yes")
    id_columns: tuple[str, ...]  # identifiers: read, never used as features, dropped

    @classmethod
    def from_config(cls, data_cfg: Mapping[str, Any]) -> "TableSchema":
        """Validate ``data`` config (a DictConfig or a plain dict); other keys of ``data`` are ignored."""
        cfg = plain_mapping(data_cfg, only=SCHEMA_KEYS)
        target = _target(cfg)
        task_type = cfg.get("task_type", "classification")
        if task_type not in TASK_TYPES:
            raise ConfigError("data.task_type", f"must be one of {', '.join(TASK_TYPES)}, got {task_type!r}",
                              "data.task_type=classification")
        positive = _positive_label(cfg.get("positive_label"), task_type)
        ids = _id_columns(cfg.get("id_columns"))
        columns = _columns(cfg.get("columns"), target, ids)
        return cls(columns=columns, target=target, task_type=task_type, positive_label=positive,
                   id_columns=ids)

    @property
    def numeric_features(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.kind == "numeric"]

    @property
    def categorical_features(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.kind == "category"]


def plain_mapping(cfg: Any, key: str = "data", only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A DictConfig or a Mapping as plain Python values, so both read alike; ``only``: just these keys.

    Only the keys read are resolved: ``data`` also holds options such as ``${paths.cache_dir}/...`` that
    are none of the schema's business and must not fail here.
    """
    if cfg is None:
        return {}
    if not isinstance(cfg, (Mapping, DictConfig)):
        raise ConfigError(key, f"must be a mapping of options, got {type(cfg).__name__}", "see conf/data/")
    names = [str(name) for name in cfg.keys() if only is None or name in only]
    return {name: _plain_value(cfg[name]) for name in names}


def _plain_value(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _label_text(value: Any) -> str:
    """A label or category as text. YAML reads unquoted Yes/No as booleans; they mean "Yes"/"No" here."""
    if isinstance(value, bool):
        return YES_NO[int(value)]
    return str(value)


def _target(cfg: Mapping[str, Any]) -> str:
    target = cfg.get("target")
    if not isinstance(target, str) or not target:
        raise ConfigError("data.target", f"must name the column to predict, got {target!r}",
                          "data.target=Churn")
    return target


def _positive_label(value: Any, task_type: str) -> str | None:
    if value is None:
        return None
    if task_type == "regression":
        raise ConfigError("data.positive_label", "is only meaningful for classification",
                          "remove data.positive_label, or set data.task_type=classification")
    if isinstance(value, (list, tuple, dict)):
        raise ConfigError("data.positive_label", f"must be one target value, got {value!r}",
                          'data.positive_label="Yes"')
    return _label_text(value)


def _id_columns(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
        raise ConfigError("data.id_columns", f"must be a list of column names, got {value!r}",
                          "data.id_columns=[customerID]")
    return tuple(value)


def _columns(value: Any, target: str, ids: tuple[str, ...]) -> dict[str, ColumnSpec]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError("data.columns", "must map each feature column to its type, e.g. "
                          "{tenure: {type: numeric, min: 0}, gender: {type: category}}",
                          "declare the feature columns in your conf/data/<name>.yaml")
    columns = {}
    for name, spec in value.items():
        name = str(name)
        if name == target:
            raise ConfigError(f"data.columns.{name}", "is the target column; it cannot also be a feature",
                              f"remove data.columns.{name}")
        if name in ids:
            raise ConfigError(f"data.columns.{name}", "is listed in data.id_columns; identifiers are never "
                              "features", "remove it from data.columns or from data.id_columns")
        columns[name] = _column_spec(name, spec)
    return columns


def _column_spec(name: str, spec: Any) -> ColumnSpec:
    key = f"data.columns.{name}"
    if isinstance(spec, str):  # shorthand: `tenure: numeric`
        spec = {"type": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f"must be a mapping like {{type: numeric}}, got {spec!r}",
                          f"{key}.type=numeric")
    unknown = sorted(set(map(str, spec)) - set(_SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "is not a column option; the options are "
                          f"{', '.join(_SPEC_KEYS)}", f"remove {key}.{unknown[0]} or fix its spelling")
    kind = spec.get("type")
    if kind in NUMERIC_TYPES:
        return _numeric_spec(name, spec)
    if kind in CATEGORY_TYPES:
        return _category_spec(name, spec)
    kinds = ", ".join(NUMERIC_TYPES + CATEGORY_TYPES)
    raise ConfigError(f"{key}.type", f"must be one of {kinds}, got {kind!r}", f"{key}.type=numeric")


def _numeric_spec(name: str, spec: Mapping[str, Any]) -> ColumnSpec:
    key = f"data.columns.{name}"
    if spec.get("categories") is not None:
        raise ConfigError(f"{key}.categories", f"is only for category columns, and {name} is {spec['type']}",
                          f"remove {key}.categories, or set {key}.type=category")
    bounds = {}
    for option in ("min", "max"):
        bound = spec.get(option)
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))):
            raise ConfigError(f"{key}.{option}", f"must be a number, got {bound!r}", f"{key}.{option}=0")
        bounds[option] = None if bound is None else float(bound)
    if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
        raise ConfigError(f"{key}.min", f"{bounds['min']} is above max {bounds['max']}",
                          f"swap {key}.min and {key}.max")
    return ColumnSpec(name, "numeric", minimum=bounds["min"], maximum=bounds["max"])


def _category_spec(name: str, spec: Mapping[str, Any]) -> ColumnSpec:
    key = f"data.columns.{name}"
    for option in ("min", "max"):
        if spec.get(option) is not None:
            raise ConfigError(f"{key}.{option}", f"is only for numeric columns, and {name} is {spec['type']}",
                              f"remove {key}.{option}")
    categories = spec.get("categories")
    if spec["type"] == "boolean":
        if categories is not None and {_label_text(v) for v in categories} != set(YES_NO):
            raise ConfigError(f"{key}.categories", "a boolean column has the categories No and Yes",
                              f"remove {key}.categories, or set {key}.type=category")
        return ColumnSpec(name, "category", categories=YES_NO)
    if categories is None:
        return ColumnSpec(name, "category")
    if isinstance(categories, (str, Mapping)) or not isinstance(categories, (list, tuple)) or not categories:
        raise ConfigError(f"{key}.categories", "must be a non-empty list of allowed values, got "
                          f"{categories!r}", f'{key}.categories=["No", "Yes"]')
    values = tuple(_label_text(v) for v in categories)
    if len(set(values)) != len(values):
        raise ConfigError(f"{key}.categories", f"lists a value twice: {list(values)}", "list each value once")
    return ColumnSpec(name, "category", categories=values)
