"""The schema of a table: declared in config (``data.columns``, ``data.target``, ...), in a schema file
(``data.schema=path.yaml``), or left to inference (``data.columns: auto``: :mod:`visiontrain.tabular.inference`).

A declared schema is what lets cleansing say exactly what is wrong with a row; where one is given it always wins
over what inference would guess. :class:`SchemaDeclaration` is what config says; :class:`TableSchema` is the
schema a run uses, and what it writes back (``schema.yaml``) so that the next run can declare it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
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
AUTO = "auto"  # data.columns: auto -> the feature columns are inferred from the training rows
SCHEMA_BASES = ("none", "declared", "inferred")  # what a schema file's columns are added to
SCHEMA_FILE_KEYS = (*SCHEMA_KEYS, "base", "drop")


@dataclass(frozen=True)
class ColumnSpec:
    """One feature column: a number (optionally within a range) or a category (optionally from a list)."""

    name: str
    kind: str  # "numeric" | "category"   (integers are numeric)
    categories: tuple[str, ...] | None = None  # allowed values of a category column (None: any value)
    minimum: float | None = None
    maximum: float | None = None
    type: str = ""  # as declared: numeric | integer | float | category | boolean ("" : the kind)

    def as_config(self) -> dict[str, Any]:
        """The ``data.columns`` entry that declares this column again."""
        entry: dict[str, Any] = {"type": self.type or self.kind}
        if self.categories is not None and entry["type"] != "boolean":
            entry["categories"] = list(self.categories)
        entry.update({key: int(bound) if entry["type"] == "integer" and bound.is_integer() else bound
                      for key, bound in (("min", self.minimum), ("max", self.maximum)) if bound is not None})
        return entry


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
        """The declared schema of ``data`` config (a DictConfig or a plain dict); other keys are ignored."""
        declaration = SchemaDeclaration.from_config(data_cfg)
        if declaration.columns is None or declaration.base == "inferred":
            raise ConfigError("data.columns", "is auto: the columns are inferred from the table, so there is no "
                              "declared schema to read here", "declare the columns, or read the table with "
                              "visiontrain.tabular.loading.load_clean_table")
        return declaration.with_columns(declaration.columns)

    def as_config(self) -> dict[str, Any]:
        """The schema as ``data`` keys: what ``schema.yaml`` holds, and ``data.schema=schema.yaml`` reads back."""
        return {"target": self.target, "task_type": self.task_type, "positive_label": self.positive_label,
                "id_columns": list(self.id_columns),
                "columns": {name: spec.as_config() for name, spec in self.columns.items()}}

    @property
    def numeric_features(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.kind == "numeric"]

    @property
    def categorical_features(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.kind == "category"]


@dataclass(frozen=True)
class SchemaDeclaration:
    """What config says about a table's schema: the target and task always, the columns unless inferred.

    ``columns`` is None for ``data.columns: auto``. A schema file (``data.schema``) replaces the ``data`` keys it
    sets; its ``base`` says what its columns add to: ``none`` (they are all the features), ``declared`` (the
    ``data.columns`` of the config) or ``inferred`` (the columns inferred from the table; the file's win).
    ``drop`` lists columns to leave out of the base.
    """

    target: str
    task_type: str
    positive_label: str | None
    id_columns: tuple[str, ...]
    columns: dict[str, ColumnSpec] | None
    base: str = "none"
    drop: tuple[str, ...] = ()
    origin: str = "data.columns"  # where the columns were declared, for the data report

    @classmethod
    def from_config(cls, data_cfg: Mapping[str, Any]) -> "SchemaDeclaration":
        """Validate ``data`` config and the schema file it names; raises a ConfigError naming the key."""
        values = plain_mapping(data_cfg, only=(*SCHEMA_KEYS, "schema"))
        schema_file = values.pop("schema", None)
        file_values = read_schema_file(schema_file) if schema_file is not None else {}
        base, drop = file_values.pop("base", "none"), tuple(file_values.pop("drop", None) or ())
        declared_columns = values.get("columns")
        values.update(file_values)
        options = validate(_SchemaOptions, values, "data")
        positive = _positive_label(options.positive_label, options.task_type)
        columns: dict[str, ColumnSpec] | None
        if schema_file is None:
            columns = None if _is_auto(options.columns) else _columns(options.columns, options.target,
                                                                      options.id_columns)
        else:
            columns = _columns(file_values.get("columns") or {}, options.target, options.id_columns,
                               allow_empty=base != "none", prefix="data.schema: columns")
            if base == "declared" and not _is_auto(declared_columns):
                inherited = _columns(declared_columns, options.target, options.id_columns)
                columns = {**inherited, **columns}
            if base != "inferred":
                columns = {name: spec for name, spec in columns.items() if name not in drop}
        return cls(target=options.target, task_type=options.task_type, positive_label=positive,
                   id_columns=options.id_columns, columns=columns, base=base, drop=drop,
                   origin=f"schema file {schema_file}" if schema_file is not None else "data.columns")

    @property
    def infers(self) -> bool:
        """Whether some feature columns come from inference rather than from config."""
        return self.columns is None or self.base == "inferred"

    def with_columns(self, columns: dict[str, ColumnSpec], id_columns: tuple[str, ...] | None = None
                     ) -> TableSchema:
        """The schema a run uses: these feature columns, this declaration's target and task."""
        return TableSchema(columns=columns, target=self.target, task_type=self.task_type,
                           positive_label=self.positive_label,
                           id_columns=self.id_columns if id_columns is None else id_columns)


def _is_auto(columns: Any) -> bool:
    return columns is None or columns == AUTO


def read_schema_file(path: Any) -> dict[str, Any]:
    """A schema file as plain values (YAML, read as data: no tag or interpolation is ever evaluated)."""
    import yaml

    key = "data.schema"
    if not isinstance(path, str) or not path:
        raise ConfigError(key, f"must be the path of a schema YAML file, got {path!r}",
                          "data.schema=my_schema.yaml (e.g. the schema.yaml a run wrote)")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(key, f"{path} does not exist", "data.schema=<a schema YAML file>, e.g. "
                          "outputs/<run>/schema.yaml")
    try:
        values = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(key, f"{path} is not valid YAML ({str(error).splitlines()[0]})",
                          "fix the file; `visiontrain train` writes a valid one to <run dir>/schema.yaml"
                          ) from None
    if not isinstance(values, dict):
        raise ConfigError(key, f"{path} must hold a mapping (target:, columns:, ...), got "
                          f"{type(values).__name__}", "see the schema.yaml of any tabular run")
    unknown = [str(name) for name in values if name not in SCHEMA_FILE_KEYS]
    if unknown:
        raise ConfigError(f"data.schema: {unknown[0]}", f"is not a schema key of {path}; the keys are "
                          f"{', '.join(SCHEMA_FILE_KEYS)}", f"remove {unknown[0]} from {path}")
    base = values.get("base", "none")
    if base not in SCHEMA_BASES:
        raise ConfigError("data.schema: base", f"in {path} must be one of {', '.join(SCHEMA_BASES)}, got "
                          f"{base!r}", "base: none (only these columns), declared (add to data.columns) or "
                          "inferred (add to the inferred columns)")
    drop = values.get("drop")
    if drop is not None and (not isinstance(drop, list) or not all(isinstance(name, str) for name in drop)):
        raise ConfigError("data.schema: drop", f"in {path} must be a list of column names, got {drop!r}",
                          "drop: [Surname]")
    if base == "none" and not values.get("columns"):
        raise ConfigError("data.schema: columns", f"{path} declares no columns, and base: none means its columns "
                          "are all the features", "list the columns, or set base: inferred")
    return dict(values)


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


def check_option_names(values: Mapping[str, Any], names: list[str], prefix: str, what: str) -> None:
    """A key of ``values`` outside ``names`` is a ConfigError naming ``prefix.key`` and the closest option."""
    import difflib

    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            raise ConfigError(f"{prefix}.{key}", f"is not {what}; the options are {', '.join(names)}",
                              f"{prefix}.{close[0]}=..." if close else f"remove {prefix}.{key}")


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


def _columns(value: Any, target: str, ids: tuple[str, ...], allow_empty: bool = False,
             prefix: str = "data.columns") -> dict[str, ColumnSpec]:
    if not isinstance(value, Mapping) or not (value or allow_empty):
        raise ConfigError(prefix, "must map each feature column to its type, e.g. "
                          "{tenure: {type: numeric, min: 0}, gender: {type: category}}, or be auto",
                          f"{prefix}=auto (inferred from the training rows), or a schema file: "
                          "data.schema=my_schema.yaml")
    columns = {}
    for name, spec in value.items():
        name = str(name)
        if name == target:
            raise ConfigError(f"{prefix}.{name}", "is the target column; it cannot also be a feature",
                              f"remove {prefix}.{name}")
        if name in ids:
            raise ConfigError(f"{prefix}.{name}", "is listed in data.id_columns; identifiers are never "
                              "features", f"remove it from {prefix} or from data.id_columns")
        columns[name] = _column_spec(name, spec, prefix)
    return columns


def _column_spec(name: str, spec: Any, prefix: str = "data.columns") -> ColumnSpec:
    key = f"{prefix}.{name}"
    if isinstance(spec, str):  # shorthand: `tenure: numeric`
        spec = {"type": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f"must be a mapping like {{type: numeric}}, got {spec!r}",
                          f"{key}.type=numeric")
    options = validate(_ColumnOptions, {str(option): value for option, value in spec.items()}, key)
    if options.type in NUMERIC_TYPES:
        return _numeric_spec(name, options, key)
    return _category_spec(name, options, key)


def _numeric_spec(name: str, spec: _ColumnOptions, key: str) -> ColumnSpec:
    if spec.categories is not None:
        raise ConfigError(f"{key}.categories", f"is only for category columns, and {name} is {spec.type}",
                          f"remove {key}.categories, or set {key}.type=category")
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        raise ConfigError(f"{key}.min", f"{spec.min} is above max {spec.max}", f"swap {key}.min and {key}.max")
    return ColumnSpec(name, "numeric", minimum=spec.min, maximum=spec.max, type=spec.type)


def _category_spec(name: str, spec: _ColumnOptions, key: str) -> ColumnSpec:
    for option in ("min", "max"):
        if getattr(spec, option) is not None:
            raise ConfigError(f"{key}.{option}", f"is only for numeric columns, and {name} is {spec.type}",
                              f"remove {key}.{option}")
    categories = spec.categories
    if spec.type == "boolean":
        if categories is not None and {_label_text(v) for v in categories} != set(YES_NO):
            raise ConfigError(f"{key}.categories", "a boolean column has the categories No and Yes",
                              f"remove {key}.categories, or set {key}.type=category")
        return ColumnSpec(name, "category", categories=YES_NO, type="boolean")
    if categories is None:
        return ColumnSpec(name, "category", type="category")
    if isinstance(categories, (str, Mapping)) or not isinstance(categories, (list, tuple)) or not categories:
        raise ConfigError(f"{key}.categories", "must be a non-empty list of allowed values, got "
                          f"{categories!r}", f'{key}.categories=["No", "Yes"]')
    values = tuple(_label_text(v) for v in categories)
    if len(set(values)) != len(values):
        raise ConfigError(f"{key}.categories", f"lists a value twice: {list(values)}", "list each value once")
    return ColumnSpec(name, "category", categories=values, type="category")


def write_schema(schema: TableSchema, path: Path, notes: Mapping[str, Any]) -> Path:
    """``schema`` as a schema file (``data.schema=<path>`` reads it back), with how it was decided as comments."""
    import yaml

    lines = ["# The schema this run used. Edit it if need be and pass it back: data.schema=<this file>",
             f"# {notes.get('origin', '')}"]
    lines += [f"# left out: {name}: {reason}" for name, reason in notes.get("left_out", {}).items()]
    lines += [f"# possible target leak: {leak}" for leak in notes.get("leaks", [])]
    body = yaml.safe_dump({**schema.as_config(), "base": "none"}, sort_keys=False, allow_unicode=True, width=115)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + body)
    return path
