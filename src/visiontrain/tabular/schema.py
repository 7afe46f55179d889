"""The declared schema of a table, read from config (``data.columns``, ``data.target``, ...).

Declaring the columns up front is what lets cleansing say exactly what is wrong with a row, and lets the
exported model check its inputs: nothing about the columns is guessed from the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf
from pydantic import ConfigDict, Field, field_validator

from visiontrain.config.choices import TABLE_TASK_TYPES
from visiontrain.config.reading import Section, validate
from visiontrain.core.yes_no import YES_NO
from visiontrain.errors import ConfigError

NUMERIC_TYPES = ("numeric", "integer", "float")
CATEGORY_TYPES = ("category", "boolean")
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
        options = validate(_SchemaOptions, plain_mapping(data_cfg, only=SCHEMA_KEYS), "data")
        positive = _positive_label(options.positive_label, options.task_type)
        columns = _columns(options.columns, options.target, options.id_columns)
        return cls(columns=columns, target=options.target, task_type=options.task_type, positive_label=positive,
                   id_columns=options.id_columns)

    @property
    def numeric_features(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.kind == "numeric"]

    @property
    def categorical_features(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.kind == "category"]


class _SchemaOptions(Section):
    """What the schema reads of ``data``: the target, the task, identifiers and the declared columns."""

    target: Any = None
    task_type: Literal[TABLE_TASK_TYPES] = "classification"  # type: ignore[valid-type]
    positive_label: Any = None
    id_columns: Any = ()
    columns: Any = None

    @field_validator("target")
    @classmethod
    def _names_a_column(cls, target: Any) -> str:
        if not isinstance(target, str) or not target:
            raise ConfigError("data.target", f"must name the column to predict, got {target!r}",
                              "data.target=Churn")
        return target

    @field_validator("id_columns", mode="before")
    @classmethod
    def _column_names(cls, ids: Any) -> tuple[str, ...]:
        if ids is None:
            return ()
        if isinstance(ids, str):
            return (ids,)
        if not isinstance(ids, (list, tuple)) or not all(isinstance(name, str) for name in ids):
            raise ConfigError("data.id_columns", f"must be a list of column names, got {ids!r}",
                              "data.id_columns=[customerID]")
        return tuple(ids)


class _ColumnOptions(Section):
    """One entry of ``data.columns``: its type and, by type, allowed categories or a numeric range."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[NUMERIC_TYPES + CATEGORY_TYPES]  # type: ignore[valid-type]
    categories: Any = None
    min: float | None = Field(None, examples=["0"])
    max: float | None = Field(None, examples=["0"])


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
    options = validate(_ColumnOptions, {str(option): value for option, value in spec.items()}, key)
    if options.type in NUMERIC_TYPES:
        return _numeric_spec(name, options)
    return _category_spec(name, options)


def _numeric_spec(name: str, spec: _ColumnOptions) -> ColumnSpec:
    key = f"data.columns.{name}"
    if spec.categories is not None:
        raise ConfigError(f"{key}.categories", f"is only for category columns, and {name} is {spec.type}",
                          f"remove {key}.categories, or set {key}.type=category")
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        raise ConfigError(f"{key}.min", f"{spec.min} is above max {spec.max}", f"swap {key}.min and {key}.max")
    return ColumnSpec(name, "numeric", minimum=spec.min, maximum=spec.max)


def _category_spec(name: str, spec: _ColumnOptions) -> ColumnSpec:
    key = f"data.columns.{name}"
    for option in ("min", "max"):
        if getattr(spec, option) is not None:
            raise ConfigError(f"{key}.{option}", f"is only for numeric columns, and {name} is {spec.type}",
                              f"remove {key}.{option}")
    categories = spec.categories
    if spec.type == "boolean":
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
