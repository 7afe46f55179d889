"""A schema inferred from a table's training rows, for tables nobody has written a schema for.

Each column's type (numeric, integer, boolean, category), its categories and a plausible range come from the
training rows only, so no statistic of a validation or test row shapes the run. Columns that cannot be
features are left out and listed with the reason: identifiers (unique per row, such as ``CustomerId`` or
``RowNumber``), free text (``Surname``: more distinct values than ``max_categories``), constant or blank
columns, dates and binary values. A column that predicts the target almost perfectly on its own (a leak, such
as a model score stored in the table) is flagged, and left out unless ``leakage: keep``.

Declared columns win: inference fills in only the columns config does not declare.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from visiontrain.config.table_schema import (
    ColumnSpec,
    SchemaDeclaration,
    TableSchema,
)
from visiontrain.config.tabular import Inference
from visiontrain.core.table_values import number_or_nan
from visiontrain.core.yes_no import YES_NO_WORDS
from visiontrain.errors import ConfigError
from visiontrain.tabular.cleansing import as_text, infer_positive_label, source_kind

NUMERIC_SHARE = 0.98   # a column is numeric when at least this share of its present values are numbers
UNIQUE_SHARE = 0.95    # ... an identifier when at least this share of its rows hold distinct values
MIN_ROWS_FOR_IDS = 20  # fewer training rows than this: uniqueness says nothing
ID_WORD = re.compile(r"(^|[_\s.-])(id|uuid|guid|key|number|num|no)$|^clientnum$", re.IGNORECASE)
ID_SUFFIX = re.compile(r"[a-z](Id|ID|Num|Number|No)$")  # CustomerId, customerID, RowNumber: camelCase only


@dataclass(frozen=True)
class LeftOut:
    """A column of the table that is not a feature, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class LeakFlag:
    """A column that predicts the target almost perfectly on its own, measured on the training rows."""

    name: str
    score: float
    measure: str  # "ROC-AUC" | "|Spearman|"
    dropped: bool

    def describe(self) -> str:
        action = "left out (data.inference.leakage=keep keeps it)" if self.dropped else "kept"
        return (f"{self.name} alone predicts the target ({self.measure} {self.score:.3f} on the training rows): "
                f"a likely leak of the target, {action}")


@dataclass(frozen=True)
class InferredSchema:
    """The schema inference chose, what it left out (and why), and the rows it looked at."""

    schema: TableSchema
    left_out: tuple[LeftOut, ...]
    leaks: tuple[LeakFlag, ...]
    rows: int


def infer_schema(train: pd.DataFrame, declaration: SchemaDeclaration, options: Inference) -> InferredSchema:
    """The schema of ``train`` (raw training rows): declared columns as declared, every other one inferred."""
    declared = dict(declaration.columns or {}) if declaration.base == "inferred" else {}
    ids = [name for name in declaration.id_columns if name in train.columns]
    left_out = [LeftOut(name, "declared in data.id_columns, but not in the table")
                for name in declaration.id_columns if name not in train.columns]
    labels = target_labels(train[declaration.target], declaration) if declaration.target in train else None
    columns: dict[str, ColumnSpec] = {}
    candidates: dict[str, pd.Series] = {}
    for name in train.columns:
        if name == declaration.target or name in ids:
            continue
        if name in declared:
            columns[name] = declared[name]
            continue
        if name in declaration.drop:
            left_out.append(LeftOut(name, "listed in the schema file's drop"))
            continue
        spec, reason, values = _infer_column(name, train[name], options)
        if spec is None:
            left_out.append(LeftOut(name, reason))
            if reason.startswith("identifier"):
                ids.append(name)
            continue
        columns[name] = spec
        candidates[name] = values
    leaks = tuple(leak_flags(candidates, labels, declaration.task_type, options.leakage_score,
                             drop=options.leakage == "drop")) if labels is not None else ()
    for leak in leaks:
        if leak.dropped:
            del columns[leak.name]
            left_out.append(LeftOut(leak.name, f"a likely target leak ({leak.measure} {leak.score:.3f} alone)"))
    missing = [name for name in declared if name not in train.columns]
    if missing:
        raise ConfigError(f"data.columns.{missing[0]}", f"is declared, but the table has no column {missing[0]!r}",
                          "fix the name, or remove it; the table's columns are "
                          f"{', '.join(map(str, train.columns))}")
    if not columns:
        reasons = "; ".join(f"{note.name}: {note.reason}" for note in left_out[:6])
        raise ConfigError("data.columns", f"inference found no usable feature column ({reasons})",
                          "declare the feature columns (data.columns or data.schema=<file>)")
    return InferredSchema(schema=declaration.with_columns(columns, tuple(ids)), left_out=tuple(left_out),
                          leaks=leaks, rows=len(train))


def _infer_column(name: str, raw: pd.Series, options: Inference
                  ) -> tuple[ColumnSpec | None, str, pd.Series]:
    """A column's spec, or None and why it is left out; with the values the leak check measures."""
    kind = source_kind(raw)
    if kind is not None:
        what = {"bytes": "raw bytes", "nested": "nested JSON values", "datetime": "dates or times"}[kind]
        return None, f"holds {what}, which no model takes as they are (derive a number or a category)", raw
    text = as_text(raw).str.strip()
    present = text[text.notna() & (text != "")]
    if present.empty:
        return None, "blank in every training row", raw
    distinct = present.nunique()
    if distinct == 1:
        return None, f"constant: {present.iloc[0]!r} in every training row", raw
    words = present.str.lower()
    if words.isin(YES_NO_WORDS).all():
        return ColumnSpec(name, "category", categories=("No", "Yes"), type="boolean"), "", \
            words.map(YES_NO_WORDS).reindex(raw.index)
    numbers = present.map(number_or_nan)
    is_numeric = pd.api.types.is_numeric_dtype(raw) or numbers.notna().mean() >= NUMERIC_SHARE
    unique = distinct >= UNIQUE_SHARE * len(raw) and len(raw) >= MIN_ROWS_FOR_IDS
    if is_numeric:
        valid = numbers.dropna()
        whole = bool(np.all(np.mod(valid, 1) == 0))
        if whole and (unique or (_named_like_an_id(name) and distinct >= UNIQUE_SHARE * len(present))):
            return None, f"identifier: a distinct whole number in {distinct} of {len(raw)} training rows", raw
        low, high = _plausible_range(float(valid.min()), float(valid.max()), options.range_margin)
        if whole:  # an integer column's range in whole numbers
            low, high = float(math.floor(low)), float(math.ceil(high))
        spec = ColumnSpec(name, "numeric", minimum=low, maximum=high, type="integer" if whole else "numeric")
        return spec, "", numbers.reindex(raw.index)
    if unique or (_named_like_an_id(name) and distinct >= UNIQUE_SHARE * len(present)):
        return None, f"identifier: distinct text in {distinct} of {len(raw)} training rows", raw
    if distinct > options.max_categories:
        return None, (f"free text: {distinct} distinct values, more than data.inference.max_categories="
                      f"{options.max_categories}"), raw
    categories = tuple(sorted(present.unique(), key=str))
    return ColumnSpec(name, "category", categories=categories, type="category"), "", text.reindex(raw.index)


def _named_like_an_id(name: str) -> bool:
    return bool(ID_WORD.search(name) or ID_SUFFIX.search(name))


def _plausible_range(low: float, high: float, margin: float) -> tuple[float, float]:
    """The observed range widened by ``margin`` of its span; a never-negative column stays never negative."""
    span = high - low
    lower = 0.0 if low >= 0 and margin > 0 else low - margin * span
    return _rounded(lower, math.floor), _rounded(high + margin * span, math.ceil)


def _rounded(value: float, direction: Any) -> float:
    """``value`` to 4 significant digits, rounded outward so the range never shrinks."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    scale = 10 ** (math.floor(math.log10(abs(value))) - 3)
    return float(direction(value / scale) * scale)


def target_labels(target: pd.Series, declaration: SchemaDeclaration) -> pd.Series:
    """The target as numbers (classification: 1 positive, 0 any other value, NaN missing), for measuring."""
    text = as_text(target).str.strip()
    text = text.mask(text == "")
    if declaration.task_type == "regression":
        return text.map(lambda value: number_or_nan(value) if isinstance(value, str) else np.nan)
    positive = declaration.positive_label or infer_positive_label(text, declaration.target)  # as cleansing reads it
    values = set(text.dropna().unique())
    positive_word = YES_NO_WORDS.get(positive.lower())
    if positive not in values and positive_word is not None:  # "Yes" for a 0/1 column, as cleansing reads it
        normal = text.str.lower().map(YES_NO_WORDS)
        return (normal == positive_word).astype(float).where(text.notna())
    return (text == positive).astype(float).where(text.notna())


def leak_flags(values: Mapping[str, pd.Series], labels: pd.Series, task_type: str, threshold: float,
               drop: bool) -> list[LeakFlag]:
    """Columns whose values alone score at least ``threshold`` against ``labels`` (training rows only).

    Classification: the ROC-AUC of the value (numbers as they are, categories by their rate of positives), either
    direction. Regression: the absolute Spearman correlation.
    """
    from sklearn.metrics import roc_auc_score

    flags = []
    for name, column in values.items():
        both = pd.DataFrame({"x": column, "y": labels}).dropna()
        if len(both) < MIN_ROWS_FOR_IDS or both["y"].nunique() < 2:
            continue
        x = pd.to_numeric(both["x"], errors="coerce")
        if x.isna().any():  # a category: each value stands for its rate of positives
            x = both.groupby("x")["y"].transform("mean")
        if task_type == "regression":
            score, measure = abs(float(x.corr(both["y"], method="spearman"))), "|Spearman|"
        else:
            auc = float(roc_auc_score(both["y"], x))
            score, measure = max(auc, 1 - auc), "ROC-AUC"
        if score >= threshold:
            flags.append(LeakFlag(name, round(score, 4), measure, dropped=drop))
    return flags
