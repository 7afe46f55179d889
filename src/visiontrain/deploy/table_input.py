"""Table rows in, the model's raw-column feeds out, with a reason for every row that cannot be fed.

The rules are training's (:mod:`visiontrain.core.table_values`), without the schema: whitespace stripped,
blanks become missing (NaN for numbers, ``""`` for categories), numeric text coerced, yes/no words normalised
in columns the model only saw as Yes/No (known from the ``reference_stats`` metadata). A value that is no
usable number (``abc``, ``inf``, beyond float32) rejects its row: training imputed it, but at prediction time a
silent guess is worse than a listed reject. Outliers are not clipped (the file does not record the ranges).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from visiontrain.core.model_metadata import ModelMetadata
from visiontrain.core.table_files import file_format
from visiontrain.core.table_files import read_table as read_table_file
from visiontrain.core.table_values import ModelInputs, is_yes_no_column, model_inputs
from visiontrain.errors import ColumnsError


@dataclass(frozen=True)
class TableSpec:
    """Which raw columns the model takes, their types, and which categories are plain Yes/No."""

    columns: dict[str, str]  # name -> "float" | "string"
    yes_no: frozenset[str]
    target: str | None = None

    @classmethod
    def from_metadata(cls, metadata: ModelMetadata, columns: Mapping[str, str]) -> TableSpec:
        reference = (metadata.reference_stats or {}).get("inputs") or {}
        yes_no = frozenset(name for name, kind in columns.items() if kind == "string"
                           and reference.get(name, {}).get("kind") == "category"
                           and is_yes_no_column(reference[name].get("proportions", {})))
        return cls(dict(columns), yes_no, metadata.target or None)

    def check_columns(self, present: Iterable[str]) -> None:
        """Raise ColumnsError naming every missing column (extra columns are ignored)."""
        present = list(present)
        missing = [name for name in self.columns if name not in present]
        if missing:
            unexpected = [name for name in present if name not in self.columns and name != self.target]
            raise ColumnsError(missing, unexpected)


def is_table_file(path: Path) -> bool:
    """A file ``read_table`` reads (by its extension, compressed or not)."""
    return file_format(path) is not None


def read_table(path: Path) -> pd.DataFrame:
    """CSV (any delimiter), Parquet, JSON or JSON Lines, read as training reads them (CSV as text: we coerce)."""
    frame = read_table_file(path)
    names = [str(name).strip() for name in frame.columns]  # " tenure" is tenure, as in training
    return frame.set_axis(names, axis=1) if len(set(names)) == len(names) else frame


def prepare(frame: pd.DataFrame, spec: TableSpec) -> ModelInputs:
    """Cleanse the model's columns of ``frame``: the rows without a reject reason, and why the others fail."""
    spec.check_columns(frame.columns)
    return model_inputs({name: frame[name].tolist() for name in spec.columns}, len(frame), spec.columns,
                        spec.yes_no)


def prepare_rows(rows: list[Mapping[str, Any]], spec: TableSpec) -> ModelInputs:
    """The same for JSON rows (a request body): no DataFrame, which costs more than the rows for a few."""
    for row in rows:
        spec.check_columns(row)
    return model_inputs({name: [row[name] for row in rows] for name in spec.columns}, len(rows), spec.columns,
                        spec.yes_no)


def row_ids(row: Mapping[str, Any], spec: TableSpec) -> dict[str, Any]:
    """A JSON row's identifier fields, by :func:`id_columns`' rule (unused fields named like ``*id``)."""
    return {name: value for name, value in row.items() if _is_identifier(name, spec)}


def id_columns(frame: pd.DataFrame, spec: TableSpec, requested: list[str] | None) -> list[str]:
    """Identifier columns copied to the output: those asked for, else unused ones named like ``*id``."""
    if requested is not None:
        return [name for name in requested if name in frame.columns]
    return [str(name) for name in frame.columns if _is_identifier(name, spec)]


def _is_identifier(name: Any, spec: TableSpec) -> bool:
    return name not in spec.columns and name != spec.target and str(name).lower().replace("_", "").endswith("id")
