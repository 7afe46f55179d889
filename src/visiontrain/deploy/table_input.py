"""Table rows in, the model's raw-column feeds out, with a reason for every row that cannot be fed.

Light cleansing as training did it (:mod:`visiontrain.tabular.cleansing`), without the schema: whitespace
stripped, blanks become missing (NaN for numbers, ``""`` for categories), numeric text coerced, yes/no
words normalised in columns the model only saw as Yes/No (known from the ``reference_stats`` metadata). A
number that does not parse rejects its row: training imputed it, but at prediction time a silent guess is
worse than a listed reject. Outliers are not clipped (the file does not record the ranges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "jsonl",
                  ".ndjson": "jsonl"}
YES_NO_WORDS = {**dict.fromkeys(("yes", "y", "true", "1", "1.0"), "Yes"),
                **dict.fromkeys(("no", "n", "false", "0", "0.0"), "No")}  # as training's cleansing maps them
FLOAT32_MAX = float(np.finfo(np.float32).max)


class ColumnsError(ValueError):
    """The rows lack columns the model needs; ``missing`` names them."""

    def __init__(self, missing: list[str], unexpected: list[str]) -> None:
        self.missing, self.unexpected = missing, unexpected
        hint = f" (unknown columns given: {', '.join(unexpected[:10])})" if unexpected else ""
        super().__init__(f"missing column(s) the model needs: {', '.join(missing)}{hint}")


@dataclass(frozen=True)
class TableSpec:
    """Which raw columns the model takes, their types, and which categories are plain Yes/No."""

    columns: dict[str, str]  # name -> "float" | "string"
    yes_no: frozenset[str]
    target: str | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], columns: Mapping[str, str]) -> TableSpec:
        reference = (metadata.get("reference_stats") or {}).get("inputs") or {}
        yes_no = frozenset(name for name, kind in columns.items() if kind == "string"
                           and reference.get(name, {}).get("kind") == "category"
                           and set(reference[name].get("proportions", {})) <= {"Yes", "No", ""})
        target = metadata.get("target")
        return cls(dict(columns), yes_no, str(target) if target else None)

    def check_columns(self, present: Iterable[str]) -> None:
        """Raise ColumnsError naming every missing column (extra columns are ignored)."""
        present = list(present)
        missing = [name for name in self.columns if name not in present]
        if missing:
            unexpected = [name for name in present if name not in self.columns and name != self.target]
            raise ColumnsError(missing, unexpected)


@dataclass
class Prepared:
    """Feeds for the rows that can be scored, their positions in the input, and the rejected positions."""

    feeds: dict[str, np.ndarray]
    kept: np.ndarray
    rejects: dict[int, str]


def read_table(path: Path) -> pd.DataFrame:
    """CSV, Parquet, JSON (records) or JSON Lines, read as training reads them (CSV as text: we coerce)."""
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind == "csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif kind in ("json", "jsonl"):
        frame = pd.read_json(path, orient="records", lines=kind == "jsonl", dtype=False, convert_dates=False)
    elif kind == "parquet":
        frame = pd.read_parquet(path)
    else:
        raise ValueError(f"{path.name}: not a table file; use one of {', '.join(sorted(TABLE_SUFFIXES))}")
    names = [str(name).strip() for name in frame.columns]  # " tenure" is tenure, as in training
    return frame.set_axis(names, axis=1) if len(set(names)) == len(names) else frame


def prepare(frame: pd.DataFrame, spec: TableSpec) -> Prepared:
    """Cleanse the model's columns of ``frame``; [N, 1] feeds for the rows without a reject reason."""
    spec.check_columns(frame.columns)
    return _prepare({name: frame[name].tolist() for name in spec.columns}, len(frame), spec)


def prepare_rows(rows: list[Mapping[str, Any]], spec: TableSpec) -> Prepared:
    """The same for JSON rows (a request body): no DataFrame, which costs more than the rows for a few."""
    for row in rows:
        spec.check_columns(row)
    return _prepare({name: [row[name] for row in rows] for name in spec.columns}, len(rows), spec)


def _prepare(columns: dict[str, list[Any]], count: int, spec: TableSpec) -> Prepared:
    """Plain Python per value: as fast as pandas for a whole file, much faster for one request's rows."""
    reasons: dict[int, list[str]] = {}
    values: dict[str, np.ndarray] = {}
    for name, kind in spec.columns.items():
        if kind == "string":
            yes_no = name in spec.yes_no
            values[name] = np.array([_category(value, yes_no) for value in columns[name]], dtype=object)
            continue
        numbers = np.empty(count, dtype=np.float32)
        for position, value in enumerate(columns[name]):
            number, problem = _number(value)
            if problem:
                reasons.setdefault(position, []).append(f"{name}: {problem}")
            numbers[position] = number
        values[name] = numbers
    kept = np.array([i for i in range(count) if i not in reasons], dtype=np.int64)
    feeds = {name: column[kept].reshape(-1, 1) for name, column in values.items()}
    return Prepared(feeds, kept, {position: "; ".join(found) for position, found in reasons.items()})


def _missing(value: Any) -> bool:
    return (value is None or value is pd.NA or value is pd.NaT
            or (isinstance(value, float) and math.isnan(value)))


def _category(value: Any, yes_no: bool) -> str:
    """Stripped text, "" when missing; yes/no words as "Yes"/"No" in Yes/No columns."""
    text = "" if _missing(value) else str(value).strip()
    return YES_NO_WORDS.get(text.lower(), text) if yes_no else text


def _number(value: Any) -> tuple[float, str | None]:
    """A float32-safe number (NaN when missing or blank), or NaN and why the value cannot be one.

    The model takes float32: a float64 like ``1e39`` would become ``inf`` there and the prediction NaN.
    """
    if _missing(value):
        return math.nan, None
    if isinstance(value, (bool, np.bool_)):
        return float(value), None
    try:
        if isinstance(value, (int, float, np.integer, np.floating)):
            number = float(value)
        else:
            text = str(value).strip()
            if not text:
                return math.nan, None
            number = float(text)
            if math.isnan(number):  # the text "nan": missing, as pandas reads it
                return math.nan, None
    except OverflowError:  # an integer beyond float64
        number = math.inf
    except ValueError:
        return math.nan, f"{shown(value)} is not a number"
    overflowed = isinstance(value, int) or (isinstance(value, str) and "inf" not in value.lower())
    if not math.isfinite(number) and not overflowed:  # inf, -inf, "Infinity"; not "1e400" or 400 digits
        return math.nan, f"{shown(value)} is not a finite number"
    if abs(number) > FLOAT32_MAX:
        return math.nan, f"{shown(value)} is outside the float32 range the model takes " \
                         f"(|x| <= {FLOAT32_MAX:.3g})"
    return number, None


def shown(value: Any, limit: int = 40) -> str:
    """A value as an error message quotes it: long ones cut, with their length (messages stay short)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * limit:
        digits = int(value.bit_length() * math.log10(2)) + 1  # str() of a huge int may raise
        return f"an integer of about {digits:,} digits"
    if not isinstance(value, str):
        return repr(value)[:limit]
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value):,} characters)"


def id_columns(frame: pd.DataFrame, spec: TableSpec, requested: list[str] | None) -> list[str]:
    """Identifier columns copied to the output: those asked for, else unused ones named like ``*id``."""
    if requested is not None:
        return [name for name in requested if name in frame.columns]
    return [str(name) for name in frame.columns if name not in spec.columns and name != spec.target
            and str(name).lower().replace("_", "").endswith("id")]
