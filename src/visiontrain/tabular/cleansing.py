"""Cleansing: raw values in, typed feature columns and a 0/1 (or numeric) target out, with a report.

Nothing is lost silently: every input row is either kept (possibly repaired) or listed in ``rejects.csv`` with
the source row number and every reason, and ``rows_in == rows_kept + rows_rejected`` always holds. Missing
feature values are left as NaN on purpose: the feature pipeline imputes them, fitted on training rows only, so
no statistic of validation or test rows leaks into training.
"""

from __future__ import annotations

import datetime
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visiontrain.config.choices import OUTLIER_RULES
from visiontrain.config.table_schema import ColumnSpec, TableSchema
from visiontrain.config.tabular import Cleaning
from visiontrain.core.table_values import YES_NO, YES_NO_WORDS, finite_or_nan, number_or_nan, value_text
from visiontrain.errors import ConfigError, DataError
from visiontrain.tabular.source_lineage import source_markdown

# Rules that reject, in the order their reason wins when a row breaks several.
REJECTING_RULES = ("duplicates", "target_missing", "target_unknown", "target_unparseable", "unknown_category",
                   "missing_rejected", "outliers_rejected")
REPAIRING_RULES = ("whitespace_stripped", "yes_no_normalised", "numeric_coerced", "numeric_unparseable",
                   "outliers_clipped", "outliers_flagged", "missing_imputed")
RULES = REJECTING_RULES + REPAIRING_RULES
MAX_STRAY_TARGET_FRACTION = 0.01  # more rows than this (and > 10) with a third label: not mess, a mistake
_REJECT_FIXES = {  # what to change when one rule rejects a large share of the rows
    "duplicates": "if repeated rows are real observations, data.cleaning.drop_duplicates=false",
    "target_missing": "fill in the labels in the source, or point data.target at the column to predict",
    "target_unknown": "map the labels to two values in the source, or set data.positive_label",
    "target_unparseable": "make the target a plain number in the source",
    "unknown_category": "list the values in data.columns.{column}.categories (or data.columns.{column}.type="
                        "category without a list), or data.cleaning.unknown_category=missing",
    "missing_rejected": "data.cleaning.missing_numeric=impute / missing_category=impute",
    "outliers_rejected": "widen data.columns.{column}.min / max, or data.cleaning.outliers=clip",
}


@dataclass
class CleaningResult:
    """Kept rows (index: 1-based source row number), rejected rows with reasons, and the report."""

    frame: pd.DataFrame
    rejects: pd.DataFrame
    report: dict[str, Any]

    def write(self, out_dir: Path) -> dict[str, str]:
        """Write rejects.csv, data_report.json and data_report.md into ``out_dir``; returns their paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"rejects": out_dir / "rejects.csv", "report_json": out_dir / "data_report.json",
                 "report_md": out_dir / "data_report.md"}
        self.rejects.to_csv(paths["rejects"], index=False)
        paths["report_json"].write_text(json.dumps(self.report, indent=2) + "\n")
        paths["report_md"].write_text(report_markdown(self.report))
        return {name: str(path) for name, path in paths.items()}


class _Ledger:
    """What each rule did to which rows: repaired masks, and reject reasons indexed by row number."""

    def __init__(self, index: pd.Index) -> None:
        self.index = index
        repairing = REPAIRING_RULES + ("unknown_category",)  # unknown_category=missing repairs
        self.repairs = {rule: pd.Series(False, index=index) for rule in repairing}
        self.reasons: list[pd.DataFrame] = []
        self.by_column: dict[tuple[str, str | None], pd.Index] = {}  # (rule, column) -> the rows it rejected

    def repaired(self, rule: str, mask: pd.Series) -> None:
        self.repairs[rule] |= mask

    def reject(self, rule: str, mask: pd.Series, reason: pd.Series | str, column: str | None = None) -> None:
        """Reject the rows in ``mask`` for a value of ``column``; ``reason``: one text, or one per row."""
        if not mask.any():
            return
        rows = self.index[mask.to_numpy()]
        known = self.by_column.get((rule, column))
        self.by_column[(rule, column)] = rows if known is None else known.union(rows)
        text = reason.reindex(rows) if isinstance(reason, pd.Series) else pd.Series(reason, index=rows)
        self.reasons.append(pd.DataFrame({"order": REJECTING_RULES.index(rule), "rule": rule,
                                          "reason": text.astype(object)}))

    def rejected(self) -> pd.DataFrame:
        """One line per rejected row: the first rule that rejected it, and all reasons joined by "; "."""
        if not self.reasons:
            return pd.DataFrame({"rule": pd.Series(dtype=object), "reason": pd.Series(dtype=object)},
                                index=pd.Index([], name="row", dtype=self.index.dtype))
        long = pd.concat(self.reasons).rename_axis("row").reset_index()
        long = long.sort_values(["row", "order"], kind="stable")
        grouped = long.groupby("row", sort=True)
        return pd.DataFrame({"rule": grouped["rule"].first(), "reason": grouped["reason"].agg("; ".join)})


def cleanse(raw: pd.DataFrame, schema: TableSchema, rules: Cleaning) -> CleaningResult:
    """Check ``raw`` against ``schema`` and apply ``rules``; raises only when the table is unusable."""
    raw = _numbered(raw, rules.strip_whitespace)
    ignored = _check_columns(raw, schema)
    _check_source_types(raw, schema)
    ledger = _Ledger(raw.index)
    if rules.drop_duplicates:
        _reject_duplicates(raw, ledger)
    columns = {}
    for name, spec in schema.columns.items():
        clean = _numeric if spec.kind == "numeric" else _category
        columns[name] = clean(raw[name], spec, rules, ledger)
    target, target_info = _target(raw[schema.target], schema, rules, ledger)
    _missing(columns, schema, rules, ledger)
    rejected = ledger.rejected()
    kept = ~raw.index.isin(rejected.index)
    frame = pd.DataFrame({**columns, schema.target: target}, index=raw.index)[kept]
    _check_usable(raw, frame, rejected, schema)
    rejects = pd.concat([rejected.reset_index()[["row", "reason", "rule"]],
                         raw.loc[rejected.index].reset_index(drop=True)], axis=1)
    report = _report(raw, frame, rejected, ledger, schema, ignored, target_info)
    report["warnings"] = reject_warnings(raw, ledger, rules.warn_reject_share)
    return CleaningResult(frame=frame, rejects=rejects, report=report)


def _numbered(raw: pd.DataFrame, strip_names: bool) -> pd.DataFrame:
    """The raw table indexed by 1-based source row number (row 1: the first data row, after any header)."""
    raw = raw.set_axis(pd.RangeIndex(1, len(raw) + 1, name="row"), axis=0)
    names = [str(name) for name in raw.columns]
    stripped = [name.strip() for name in names] if strip_names else names
    return raw.set_axis(stripped if len(set(stripped)) == len(stripped) else names, axis=1)


def _check_columns(raw: pd.DataFrame, schema: TableSchema) -> list[str]:
    """Raise if a declared column is absent; return the columns that are present but not declared."""
    needed = [*schema.id_columns, *schema.columns, schema.target]
    found = list(raw.columns)
    missing = [name for name in needed if name not in found]
    if missing:
        lines = [f"  {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                 for name in missing for close in [_closest(name, found)]]
        raise DataError(f"the table lacks {len(missing)} declared column(s):\n" + "\n".join(lines) +
                        f"\nColumns found: {', '.join(found)}.\nFix the names in data.columns / "
                        "data.target / data.id_columns, or in the file's header.")
    return [name for name in found if name not in needed]


def source_kind(values: pd.Series) -> str | None:
    """"bytes", "nested" or "datetime" for source values no feature can hold as they are; None otherwise."""
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
        return "datetime"
    if values.dtype != object:
        return None
    types = set(map(type, values.dropna()))
    if any(issubclass(kind, (bytes, bytearray, memoryview)) for kind in types):
        return "bytes"
    if any(issubclass(kind, (dict, list)) for kind in types):
        return "nested"
    if any(issubclass(kind, (datetime.date, datetime.time, datetime.timedelta)) for kind in types):
        return "datetime"
    return None


def _check_source_types(raw: pd.DataFrame, schema: TableSchema) -> None:
    """Typed sources (Parquet, SQL, JSON) can hold values that would train and then fail at export."""
    used = {**{name: f"data.columns.{name}" for name in schema.columns}, schema.target: "data.target"}
    for name, key in used.items():
        kind = source_kind(raw[name])
        numeric = name in schema.columns and schema.columns[name].kind == "numeric"
        if kind == "bytes":
            raise ConfigError(key, f"column {name!r} holds raw bytes (a binary column), which are not "
                              "numbers, categories or labels",
                              f"decode it to text in the source (e.g. CAST({name} AS TEXT)), or remove {key}")
        if kind == "nested":
            raise ConfigError(key, f"column {name!r} holds nested JSON values (objects or lists)",
                              f"flatten them into plain columns in the source, or remove {key}")
        if kind == "datetime" and numeric:
            raise ConfigError(key, f"is numeric, but column {name!r} holds dates or times "
                              f"({raw[name].dtype}), which are not numbers a model can take",
                              "derive a number in the source (e.g. days since the date) and declare that "
                              f"column, set {key}.type=category, or remove {key}")


def _check_usable(raw: pd.DataFrame, frame: pd.DataFrame, rejected: pd.DataFrame,
                  schema: TableSchema) -> None:
    """No kept row, or a feature without a value in any kept row: nothing to learn, and the export fails."""
    if frame.empty:
        raise DataError(_nothing_kept(len(raw), rejected))
    for name, spec in schema.columns.items():
        if frame[name].isna().all():
            raise ConfigError(f"data.columns.{name}", *_empty_feature(raw.loc[frame.index, name], spec))


def _nothing_kept(rows: int, rejected: pd.DataFrame) -> str:
    by_rule = ", ".join(f"{rule} {count}" for rule, count in rejected["rule"].value_counts().items())
    reasons = rejected["reason"].str.split("; ").explode().value_counts().head(3)
    top = "\n".join(f"  {count} rows: {reason}" for reason, count in reasons.items())
    return (f"no row is left to learn from: all {rows} rows were rejected ({by_rule}). The most common "
            f"reasons:\n{top}\nFix the data, or the schema (data.columns, data.target) or data.cleaning "
            "rules that reject them.")


def _empty_feature(values: pd.Series, spec: ColumnSpec) -> tuple[str, str]:
    """What is wrong with a feature that has no value in any kept row, and the fix."""
    key = f"data.columns.{spec.name}"
    text = as_text(values).str.strip()
    present = text[text.notna() & (text != "")]
    if present.empty:
        return (f"column {spec.name!r} is blank in all {len(values)} kept rows, so there is nothing to learn "
                f"from it", f"remove {key}, or fill the column in the data")
    examples = ", ".join(repr(value) for value in present.unique()[:3])
    if spec.kind == "category":
        return (f"none of the values of column {spec.name!r} is a declared category (e.g. {examples})",
                f"list its values in {key}.categories")
    if present.str.lower().isin(YES_NO_WORDS).all():
        return (f"is numeric, but column {spec.name!r} holds yes/no words (e.g. {examples})",
                f"{key}.type=boolean")
    return (f"is numeric, but none of the {len(present)} values of column {spec.name!r} is a number (e.g. "
            f"{examples})", f"{key}.type=category if it is a label, or remove {key}; amounts must be plain "
            "numbers (1234.5, without a currency sign or thousands separators)")


def _closest(name: str, found: list[str]) -> list[str]:
    same_case = [other for other in found if other.lower() == name.lower()]
    return same_case or difflib.get_close_matches(name, found, n=1, cutoff=0.6)


def _reject_duplicates(raw: pd.DataFrame, ledger: _Ledger) -> None:
    """Exact copies of an earlier row, over every column (ids included): the first copy is kept."""
    nested = [name for name in raw.columns if source_kind(raw[name]) == "nested"]  # unhashable: compare text
    raw = raw.astype(dict.fromkeys(nested, str))
    duplicate = raw.duplicated(keep="first")
    if not duplicate.any():
        return
    involved = raw[raw.duplicated(keep=False)]
    group = involved.groupby(list(involved.columns), dropna=False, sort=False).ngroup()
    first = pd.Series(involved.index, index=involved.index).groupby(group).transform("min")
    reason = "exact duplicate of row " + first.astype(str)
    ledger.reject("duplicates", duplicate, reason.reindex(raw.index))


def as_text(values: pd.Series) -> pd.Series:
    """Values as strings (missing where missing), whatever the source type: the rule of ``value_text``."""
    if isinstance(values.dtype, pd.StringDtype):
        return values
    return values.astype(object).map(value_text)


def _text(values: pd.Series, rules: Cleaning, ledger: _Ledger) -> pd.Series:
    """Text with stray whitespace stripped (counted) and blank values turned into missing ones."""
    text = as_text(values)
    stripped = text.str.strip()
    blank = stripped == ""
    if rules.strip_whitespace:
        ledger.repaired("whitespace_stripped", text.notna() & ~blank & (stripped != text))
        text = stripped
    return text.mask(blank)


def _yes_no(text: pd.Series, ledger: _Ledger) -> pd.Series:
    """yes/YES/y/true/1 -> "Yes", no/n/false/0 -> "No"; other values are left for the category check."""
    mapped = text.str.lower().map(YES_NO_WORDS)
    ledger.repaired("yes_no_normalised", mapped.notna() & (mapped != text))
    return text.where(mapped.isna(), mapped)


def _category(values: pd.Series, spec: ColumnSpec, rules: Cleaning, ledger: _Ledger) -> pd.Series:
    """A category column as Python strings (object dtype, NaN where missing)."""
    text = _text(values, rules, ledger)
    if rules.normalise_yes_no and spec.categories is not None and set(spec.categories) == set(YES_NO):
        text = _yes_no(text, ledger)
    if spec.categories is not None:
        unknown = text.notna() & ~text.isin(spec.categories)
        if rules.unknown_category == "reject":
            allowed = ", ".join(spec.categories[:12]) + (", ..." if len(spec.categories) > 12 else "")
            ledger.reject("unknown_category", unknown,
                          f"{spec.name}: '" + text[unknown] + f"' is not an allowed value ({allowed})", spec.name)
        else:
            ledger.repaired("unknown_category", unknown)
            text = text.mask(unknown)
    return text.astype(object).where(text.notna(), np.nan)


def _numeric(values: pd.Series, spec: ColumnSpec, rules: Cleaning, ledger: _Ledger) -> pd.Series:
    """A numeric column as float64 (NaN where missing or unparseable), outliers as ``rules.outliers`` says."""
    if _only_booleans(values):  # a typed source's True/False (with gaps: object dtype) are 1/0
        values = values.map({True: 1.0, False: 0.0}).astype("float64")
    if pd.api.types.is_numeric_dtype(values):
        numbers = pd.Series(finite_or_nan(values), index=values.index)
        ledger.repaired("numeric_unparseable", values.notna() & numbers.isna())  # inf: no usable number
    else:
        text = _text(values, rules, ledger)
        ledger.repaired("numeric_coerced", text.isna() & values.notna())  # blank text: now missing
        numbers = _parse_numbers(text)
        ledger.repaired("numeric_unparseable", text.notna() & numbers.isna())
    return _outliers(numbers, spec, rules, ledger)


def _only_booleans(values: pd.Series) -> bool:
    present = values.dropna()
    return values.dtype == object and len(present) > 0 and all(isinstance(value, bool) for value in present)


def _parse_numbers(text: pd.Series) -> pd.Series:
    """Each text's number, NaN where it holds none ("inf" parses, but is no more usable than "abc")."""
    return text.astype(object).map(number_or_nan).astype("float64")


def _outliers(numbers: pd.Series, spec: ColumnSpec, rules: Cleaning, ledger: _Ledger) -> pd.Series:
    low = numbers < spec.minimum if spec.minimum is not None else pd.Series(False, index=numbers.index)
    high = numbers > spec.maximum if spec.maximum is not None else pd.Series(False, index=numbers.index)
    outside = low | high
    if rules.outliers == "clip":
        ledger.repaired("outliers_clipped", outside)
        return numbers.clip(spec.minimum, spec.maximum)
    if rules.outliers == "flag":
        ledger.repaired("outliers_flagged", outside)
        return numbers
    if rules.outliers != "reject":  # the config check refuses anything else: never a silent choice here
        raise ValueError(f"data.cleaning.outliers must be one of {', '.join(OUTLIER_RULES)}; got {rules.outliers!r}")
    if not outside.any():
        return numbers
    value = numbers[outside].map("{:g}".format)
    side = low[outside].map({True: f"below the minimum {_bound(spec.minimum)}",
                             False: f"above the maximum {_bound(spec.maximum)}"})
    ledger.reject("outliers_rejected", outside, f"{spec.name}: " + value + " is " + side, spec.name)
    return numbers


def _bound(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _target(values: pd.Series, schema: TableSchema, rules: Cleaning,
            ledger: _Ledger) -> tuple[pd.Series, dict[str, Any]]:
    text = _text(values, rules, ledger)
    if text.isna().all():
        raise ConfigError("data.target", f"the target column {schema.target!r} is blank in all {len(text)} "
                          "rows", "point data.target at the column to predict, or fill in its values")
    ledger.reject("target_missing", text.isna(), f"{schema.target}: missing (a row without a label cannot be "
                                                  "learned from)", schema.target)
    if schema.task_type == "regression":
        return _regression_target(values, text, schema.target, ledger)
    return _classification_target(text, schema, rules, ledger)


def _regression_target(values: pd.Series, text: pd.Series, name: str,
                       ledger: _Ledger) -> tuple[pd.Series, dict[str, Any]]:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = pd.Series(finite_or_nan(values), index=values.index)
    else:
        numbers = _parse_numbers(text)
    unparseable = text.notna() & numbers.isna()
    ledger.reject("target_unparseable", unparseable, f"{name}: '" + text[unparseable] + "' is not a number",
                  name)
    return numbers, {"name": name}


def _classification_target(text: pd.Series, schema: TableSchema, rules: Cleaning,
                           ledger: _Ledger) -> tuple[pd.Series, dict[str, Any]]:
    """0/1 labels: the positive label is 1, exactly one other value is 0, any third value is rejected."""
    name, positive = schema.target, schema.positive_label
    if positive is None:
        positive = infer_positive_label(text, name)
    if rules.normalise_yes_no and _is_yes_no_word(positive):
        text = _yes_no(text, ledger)
        positive = YES_NO_WORDS[positive.strip().lower()]
    counts = text.value_counts()
    if positive not in counts.index and len(counts) == 1:
        raise ConfigError("data.target", f"every labelled row of the target column {name!r} is "
                          f"{counts.index[0]!r}, and the positive label {positive!r} never occurs: a "
                          "classifier needs rows of both classes",
                          f"add rows labelled {positive!r}, or point data.target at the column to predict")
    if positive not in counts.index:
        found = ", ".join(repr(value) for value in counts.index[:8])
        fix = f"data.positive_label={counts.index[0]!r}" if len(counts) else "check data.target"
        raise ConfigError("data.positive_label", f"{positive!r} never occurs in the target column {name!r}; "
                          f"its values are {found}", fix)
    others = counts.drop(positive)
    others = others.iloc[np.lexsort((others.index.astype(str), -others.to_numpy()))]  # most frequent first
    negative = others.index[0] if len(others) else None
    unknown = text.notna() & (text != positive) & (text != negative)
    _check_strays(int(unknown.sum()), int(text.notna().sum()), name, positive, negative, others)
    ledger.reject("target_unknown", unknown, f"{name}: '" + text[unknown] + "' is neither the positive label "
                  f"{positive!r} nor the negative label {negative!r}", name)
    return (text == positive).astype("int64"), {"name": name, "positive_label": positive,
                                                "negative_label": negative}


def _is_yes_no_word(label: str) -> bool:
    """"yes", "True", "n"...: a label to normalise with the data. Digits are not: 0/1 labels stay 0/1."""
    word = label.strip().lower()
    return word in YES_NO_WORDS and not word[:1].isdigit()


def infer_positive_label(text: pd.Series, name: str) -> str:
    """Without data.positive_label, only labels whose meaning is unambiguous are accepted: 0/1 or No/Yes."""
    values = set(text.dropna().unique())
    if values <= {"0", "1"}:
        return "1"
    if values and {YES_NO_WORDS.get(value.lower()) for value in values} <= set(YES_NO):
        return "Yes"
    shown = ", ".join(sorted(map(repr, values))[:8])
    raise ConfigError("data.positive_label", f"is not set, and the values of {name!r} ({shown}) do not say "
                      "which one is positive", f"data.positive_label={sorted(values)[0]!r}" if values else
                      "check data.target")


def _check_strays(strays: int, labelled: int, name: str, positive: str, negative: str | None,
                  others: pd.Series) -> None:
    """A few stray labels are mess; many are a third class, which a binary task must not drop silently."""
    if strays > max(10, MAX_STRAY_TARGET_FRACTION * labelled):
        values = ", ".join(f"{value!r} ({count})" for value, count in others.items())
        raise DataError(f"{name}: a binary task needs two target values, but besides the positive label "
                        f"{positive!r} there are {values}; {strays} of {labelled} rows have neither "
                        f"{positive!r} nor {negative!r}. Map the labels to two values in the data, or choose "
                        "data.target.")


def _missing(columns: dict[str, pd.Series], schema: TableSchema, rules: Cleaning,
             ledger: _Ledger) -> None:
    """Missing feature values: rejected, or left as NaN for the imputer (and counted)."""
    imputed = pd.Series(False, index=ledger.index)
    for name, values in columns.items():
        kind = schema.columns[name].kind
        missing = values.isna()
        if (rules.missing_numeric if kind == "numeric" else rules.missing_category) == "reject":
            ledger.reject("missing_rejected", missing, f"{name}: missing", name)
        else:
            imputed |= missing
    ledger.repaired("missing_imputed", imputed)


def _report(raw: pd.DataFrame, frame: pd.DataFrame, rejected: pd.DataFrame, ledger: _Ledger,
            schema: TableSchema, ignored: list[str], target_info: dict[str, Any]) -> dict[str, Any]:
    kept = raw.index.isin(frame.index)
    by_rule = rejected["rule"].value_counts()
    rules = {rule: {"repaired": int((ledger.repairs[rule] & kept).sum()) if rule in ledger.repairs else 0,
                    "rejected": int(by_rule.get(rule, 0))} for rule in RULES}
    report = {"rows_in": len(raw), "rows_kept": len(frame), "rows_rejected": len(rejected), "rules": rules,
              "missing_by_column": {name: int(frame[name].isna().sum()) for name in schema.columns},
              "ignored_columns": ignored, "target": _target_report(frame[schema.target], schema, target_info),
              "columns": {name: spec.kind for name, spec in schema.columns.items()}}
    _check_accounted(report)
    return report


def reject_warnings(raw: pd.DataFrame, ledger: _Ledger, share: float) -> list[dict[str, Any]]:
    """Each rule (and column) that rejected more than ``share`` of the rows, with its most common values.

    One category missing from a declared list can reject a quarter of a table; a count in a report is easy to
    miss, so these are logged as warnings and printed at the end of the run.
    """
    found = []
    for (rule, column), rows in ledger.by_column.items():
        if len(rows) <= share * len(raw):
            continue
        values = as_text(raw.loc[rows, column]).fillna("(missing)") if column in raw else None
        top = [] if values is None else \
            [[str(value), int(count)] for value, count in values.value_counts().head(3).items()]
        found.append({"rule": rule, "column": column, "rows": len(rows), "share": round(len(rows) / len(raw), 4),
                      "limit": share, "top_values": top,
                      "fix": _REJECT_FIXES.get(rule, "see rejects.csv").format(column=column)})
    return sorted(found, key=lambda warning: -warning["rows"])


def describe_reject_warning(warning: dict[str, Any], rows_in: int) -> str:
    """One line for the log and the end-of-run report."""
    where = f" on {warning['column']}" if warning["column"] else ""
    top = ", ".join(f"{value!r} ({count})" for value, count in warning["top_values"])
    return (f"{warning['rule']}{where} rejected {warning['rows']} of {rows_in} rows ({warning['share']:.1%}, "
            "above "
            f"data.cleaning.warn_reject_share={warning['limit']:g})" + (f"; top values: {top}" if top else "")
            + f". Fix: {warning['fix']}")


def _check_accounted(report: dict[str, Any]) -> None:
    """Every row is kept or rejected, and every rejected row is counted under exactly one rule."""
    rows_in, kept, rejected = report["rows_in"], report["rows_kept"], report["rows_rejected"]
    if rows_in != kept + rejected:
        raise RuntimeError(f"cleansing lost rows: {rows_in} rows in, but {kept} kept + {rejected} rejected "
                           f"= {kept + rejected}")
    by_rule = {rule: counts["rejected"] for rule, counts in report["rules"].items() if counts["rejected"]}
    if sum(by_rule.values()) != rejected:
        raise RuntimeError(f"cleansing miscounted rejects: {rejected} rows rejected, but the rules count "
                           f"{sum(by_rule.values())} ({by_rule})")


def _target_report(target: pd.Series, schema: TableSchema, info: dict[str, Any]) -> dict[str, Any]:
    if schema.task_type == "regression":
        return {"name": info["name"], "mean": _number(target.mean()), "std": _number(target.std())}
    positives = int(target.sum())
    return {**info, "positives": positives, "negatives": len(target) - positives,
            "positive_rate": round(positives / len(target), 4) if len(target) else None}


def _number(value: float) -> float | None:
    return None if pd.isna(value) else round(float(value), 6)


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a short Markdown page for people."""
    lines = ["# Data report", "",
             f"{report['rows_in']} rows in, {report['rows_kept']} kept, {report['rows_rejected']} rejected "
             "(rejects.csv lists each rejected row with its reasons; row 1 is the first data row).", ""]
    warnings = report.get("warnings") or []
    if warnings:
        lines += ["## Warnings", "", *[f"- **{describe_reject_warning(w, report['rows_in'])}**" for w in warnings],
                  ""]
    lines += ["| rule | rows repaired (kept) | rows rejected |", "| --- | ---: | ---: |"]
    lines += [f"| {rule} | {counts['repaired']} | {counts['rejected']} |"
              for rule, counts in report["rules"].items() if counts["repaired"] or counts["rejected"]]
    lines += ["", "Repaired: kept rows the rule changed (missing_imputed: left for the imputer, fitted on "
              "training rows only; outliers_flagged: kept as they are). Rejected: rows counted under the "
              "first rule that rejected them."]
    missing = {name: count for name, count in report["missing_by_column"].items() if count}
    lines += ["", "Missing values left for the imputer (kept rows): " +
              (", ".join(f"{name} {count}" for name, count in missing.items()) or "none") + "."]
    if report["ignored_columns"]:
        lines.append(f"Columns not in the schema, ignored: {', '.join(report['ignored_columns'])}.")
    target = report["target"]
    if "positives" in target:
        rate = "n/a" if target["positive_rate"] is None else f"{target['positive_rate']:.1%}"
        lines.append(f"Target {target['name']}: {target['positives']} positive ({target['positive_label']}, "
                     f"{rate}), {target['negatives']} negative ({target['negative_label']}).")
    else:
        lines.append(f"Target {target['name']}: mean {target['mean']}, std {target['std']}.")
    if report.get("source"):
        lines += source_markdown(report["source"])
    if report.get("schema"):
        lines += _schema_markdown(report["schema"])
    return "\n".join(lines) + "\n"


def _schema_markdown(schema: dict[str, Any]) -> list[str]:
    """How the schema was decided, its columns, and what was left out (with why)."""
    lines = ["", "## Schema", "", f"{schema['origin']}." + (f" Written to {schema['file']}: edit it and pass it "
                                                            f"back with data.schema={schema['file']}."
                                                            if schema.get("file") else "")]
    if schema.get("leaks"):
        lines += ["", *[f"- **Possible target leak: {leak}**" for leak in schema["leaks"]]]
    lines += ["", "| column | type | categories or range |", "| --- | --- | --- |"]
    for name, entry in schema["columns"].items():
        if "categories" in entry:
            categories = list(map(str, entry["categories"]))
            shown = ", ".join(categories[:8]) + (", ..." if len(categories) > 8 else "")
        else:
            shown = f"{entry.get('min', '')} .. {entry.get('max', '')}" if "min" in entry or "max" in entry else ""
        lines.append(f"| {name} | {entry['type']} | {shown} |")
    if schema.get("left_out"):
        lines += ["", "Left out of the features:", "",
                  *[f"- {name}: {reason}" for name, reason in schema["left_out"].items()]]
    return lines
