"""A table as a run uses it: read from its source, given a schema (declared, or inferred from the training rows),
and cleansed against it, with a report that says which schema was used and why.

The schema is inferred when config asks for it (``data.columns: auto``, or a schema file with ``base: inferred``)
and when the declared columns plainly describe another table: the table holds none of them (the churn
experiment's Telco columns, with ``data.source=`` pointing at a bank's customers). A table holding some of them
is a typo to fix, not a reason to guess, and cleansing says which are missing.

Inference must see the training rows only, so the rows are split first (stratified by the raw target, with the
run's fractions and seed) and that split is the run's final split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from visiontrain.config.reading import validate
from visiontrain.config.table_schema import SchemaDeclaration, TableSchema, plain_mapping
from visiontrain.config.tabular import TableSource
from visiontrain.tabular.cleansing import CleaningResult, cleanse
from visiontrain.tabular.inference import InferredSchema, infer_schema, target_labels
from visiontrain.tabular.ingest import read_source, source_from_environment
from visiontrain.tabular.source_lineage import SourceRead
from visiontrain.tabular.splits import holdout_split

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class LoadedTable:
    """The cleansed table, the schema it was cleansed against, and (inferred schemas) each row's part."""

    cleaned: CleaningResult
    schema: TableSchema
    inferred: InferredSchema | None
    parts: np.ndarray | None  # "train" | "val" | "test" per source row (row 1 first): the final split
    source: SourceRead | None = None  # a topic or an API: where each row came from (lineage.csv)


def table_source(data: TableSource) -> str:
    """The file or URL to read; a built-in table is generated first when no source is given."""
    if data.source:
        return str(data.source)
    if data.source_env:  # a URL with a password, kept out of the config
        return source_from_environment(str(data.source_env))
    from visiontrain.tabular.builtin import materialise_builtin

    path = Path(str(data.builtin_path)).expanduser()
    return str(materialise_builtin(str(data.builtin), path))


def table_settings(data: TableSource | Mapping[str, Any]) -> TableSource:
    """``data`` as settings: a run's own (parsed once, passed on), or a plain ``data`` mapping checked as a run
    checks it (scripts, notebooks, tests)."""
    if isinstance(data, TableSource):
        return data
    return validate(TableSource, plain_mapping(data), "data")


def load_clean_table(data: TableSource | Mapping[str, Any], seed: int = 0) -> LoadedTable:
    """Read the configured source, decide its schema and cleanse it; the report's ``schema`` says how."""
    data = table_settings(data)
    declaration = data.declaration
    raw, source = read_source(table_source(data), data.format, data.table, data.query, data)
    why = inference_reason(declaration, raw)
    if why is None:
        columns = declaration.columns or {}
        schema = declaration.with_columns(columns)
        cleaned = cleanse(raw, schema, data.cleaning)
        cleaned.report["schema"] = schema_report(schema, f"Declared in {declaration.origin}")
        return LoadedTable(cleaned=cleaned, schema=schema, inferred=None, parts=None,
                           source=_with_source(cleaned, source))
    parts = provisional_parts(raw, declaration, data.val_fraction, data.test_fraction, seed)
    inferred = infer_schema(raw[parts == "train"], declaration, data.inference)
    cleaned = cleanse(raw, inferred.schema, data.cleaning)
    origin = f"Inferred from {inferred.rows} training rows: {why}"
    cleaned.report["schema"] = schema_report(inferred.schema, origin, inferred)
    return LoadedTable(cleaned=cleaned, schema=inferred.schema, inferred=inferred, parts=parts,
                       source=_with_source(cleaned, source))


def _with_source(cleaned: CleaningResult, source: SourceRead | None) -> SourceRead | None:
    """Put a remote source's lineage summary into the data report (its ``source``), beside cleansing's."""
    if source is not None:
        cleaned.report["source"] = source.report
    return source


def inference_reason(declaration: SchemaDeclaration, raw: pd.DataFrame) -> str | None:
    """Why the feature columns are inferred from ``raw``; None when the declared ones are used as they are."""
    if declaration.target not in raw.columns:
        return None  # cleansing names the missing target, with the closest column
    if declaration.columns is None:
        return "data.columns is auto"
    if declaration.base == "inferred":
        return f"the {declaration.origin} declares {len(declaration.columns)} of them (base: inferred)"
    declared = [*declaration.columns, *declaration.id_columns]
    if declaration.origin == "data.columns" and declared and not any(name in raw.columns for name in declared):
        shown = ", ".join(declared[:4]) + (", ..." if len(declared) > 4 else "")
        return (f"the table has none of the {len(declared)} columns data.columns declares ({shown}), so they "
                "describe another table (set data.columns=auto to say so, or declare this table's columns with "
                "data.schema=<file>)")
    return None


def provisional_parts(raw: pd.DataFrame, declaration: SchemaDeclaration, val_fraction: float,
                      test_fraction: float, seed: int) -> np.ndarray:
    """train/val/test for each raw row, stratified by the raw target where it allows."""
    labels = None
    if declaration.task_type == "classification":
        labels = target_labels(raw[declaration.target], declaration).fillna(0).to_numpy().astype(int)
        if np.bincount(labels, minlength=2).min() < 3:
            labels = None  # too few of a class to stratify: cleansing and the class-size check explain
    try:
        split = holdout_split(labels, len(raw), val_fraction, test_fraction, seed)
    except ValueError:  # a class too small for the stratified test or val share
        split = holdout_split(None, len(raw), val_fraction, test_fraction, seed)
    parts = np.empty(len(raw), dtype=object)
    for name, rows in zip(PARTS, (split.train, split.val, split.test)):
        parts[rows] = name
    return parts


def schema_report(schema: TableSchema, origin: str, inferred: InferredSchema | None = None) -> dict[str, Any]:
    """The schema's part of the data report: how it was decided, its columns, what was left out and why."""
    return {"origin": origin, "file": None, "id_columns": list(schema.id_columns),
            "columns": schema.as_config()["columns"],
            "left_out": {note.name: note.reason for note in (inferred.left_out if inferred else ())},
            "leaks": [leak.describe() for leak in (inferred.leaks if inferred else ())]}
