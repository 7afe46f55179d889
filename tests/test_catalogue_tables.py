"""A catalogue of bad tables, each a real file: every row is kept or rejected with its reason, or the table is
refused before training with an error that names the column (or config key) and the fix.

Each case writes its own file in tmp_path (CSV, JSON, JSON Lines, Parquet, SQLite) and goes through the same
entry points as `visiontrain train`: ``load_clean_table`` (read + cleanse) and, for the split checks,
``TabularTask.prepare``. The few cases about training run the real thing: a tiny fit, export and ONNX parity.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import sqlalchemy
from omegaconf import open_dict

from conftest import compose_train
from visiontrain.errors import ConfigError, DataError
from visiontrain.registry import task_for_config
from visiontrain.tabular.loading import load_clean_table

SCHEMA = {"target": "churn", "task_type": "classification", "positive_label": "Yes", "id_columns": ["id"],
          "columns": {"plan": {"type": "category", "categories": ["Basic", "Pro"]},
                      "tenure": {"type": "integer", "min": 0, "max": 100},
                      "charges": {"type": "numeric", "min": 0}}}
HEADER = "id,plan,tenure,charges,churn"


def good_rows(count: int = 12) -> pd.DataFrame:
    """A clean table: both plans, both labels (alternating), plain numbers."""
    index = np.arange(count)
    return pd.DataFrame({"id": [f"c{i}" for i in index], "plan": np.where(index % 3, "Basic", "Pro"),
                         "tenure": index * 2, "charges": 10.5 + index,
                         "churn": np.where(index % 2, "Yes", "No")})


def csv_text(count: int = 12) -> str:
    return good_rows(count).to_csv(index=False)


@dataclass(frozen=True)
class Rows:
    """The table is used: exactly these rows are rejected (reason -> count) and repaired (rule -> count)."""

    rows_in: int
    rejected: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    logged: str | None = None  # a line the user sees about how the file was read


@dataclass(frozen=True)
class Refused:
    """The table is refused before training: this error, naming ``key`` (a ConfigError), saying ``says``."""

    error: type[Exception]
    says: tuple[str, ...]
    key: str | None = None


@dataclass(frozen=True)
class Case:
    write: Callable[[Path], Path]  # writes the real file into tmp_path, returns its path
    expected: Rows | Refused
    data: dict[str, Any] = field(default_factory=dict)  # data options besides SCHEMA (cleaning, table, ...)
    prepare: bool = False  # through TabularTask.prepare (the split checks), not only read + cleanse


def text_file(name: str, text: str, encoding: str = "utf-8",
              newline: str | None = None) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        with open(path, "w", encoding=encoding, newline=newline) as handle:
            handle.write(text)
        return path
    return write


def csv_with(*rows: str, count: int = 12, header: str = HEADER) -> Callable[[Path], Path]:
    """The clean table plus the given raw lines (row numbers 13, 14, ... when count is 12)."""
    body = csv_text(count).split("\n", 1)[1]
    return text_file("customers.csv", header + "\n" + body + "".join(line + "\n" for line in rows))


def parquet_with(**columns: Any) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "customers.parquet"
        good_rows().assign(**columns).to_parquet(path, index=False)
        return path
    return write


def sqlite_db(folder: Path, table: pd.DataFrame | None = None) -> Path:
    path = folder / "crm.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    (good_rows() if table is None else table).to_sql("customers", engine, index=False)
    engine.dispose()
    return path


def sqlite_with_blobs(folder: Path) -> Path:
    """A real BLOB column, as a database that stores files or hashes has."""
    path = folder / "crm.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE customers (id TEXT, plan BLOB, tenure INTEGER, "
                                   "charges REAL, churn TEXT)")
        for row in good_rows().itertuples(index=False):
            connection.exec_driver_sql("INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
                                       (row.id, row.plan.encode(), int(row.tenure), row.charges, row.churn))
    engine.dispose()
    return path


def sqlite_text_with_binary(folder: Path) -> Path:
    """pandas stores bytes in a TEXT column: not UTF-8 ones make reading the table fail in pandas."""
    return sqlite_db(folder, good_rows().assign(plan=[b"\x89PNG", b"Pro"] * 6))


def gzipped_tsv(folder: Path) -> Path:
    path = folder / "customers.csv.gz"
    good_rows().to_csv(path, index=False, sep="\t")  # gzip from the suffix
    return path


def labels(*values: str) -> Callable[[Path], Path]:
    """The clean table's first len(values) rows with these churn labels (other rows dropped)."""
    table = good_rows(len(values)).assign(churn=list(values))
    return text_file("customers.csv", table.to_csv(index=False))


CASES = {
    # ---- rows kept or rejected, each with its reason -------------------------------------------------------
    "unknown_category_value": Case(csv_with("c12,Gold,3,5,No", "c13,Premium,3,5,Yes"), Rows(
        14, rejected={"plan: 'Gold' is not an allowed value (Basic, Pro)": 1,
                      "plan: 'Premium' is not an allowed value (Basic, Pro)": 1})),
    "out_of_range_numbers_rejected": Case(csv_with("c12,Basic,200,5,No", "c13,Pro,-4,5,Yes"), Rows(
        14, rejected={"tenure: 200 is above the maximum 100": 1, "tenure: -4 is below the minimum 0": 1}),
        data={"cleaning": {"outliers": "reject"}}),
    "out_of_range_numbers_clipped": Case(csv_with("c12,Basic,200,5,No", "c13,Pro,-4,5,Yes"), Rows(
        14, repaired={"outliers_clipped": 2})),
    "nan_and_inf_strings": Case(csv_with("c12,Basic,3,nan,No", "c13,Pro,3,inf,Yes", "c14,Pro,3,-Infinity,No",
                                         "c15,Pro,3,NaN,Yes"),
                                Rows(16, repaired={"numeric_unparseable": 4, "missing_imputed": 4})),
    "whitespace_only_cells": Case(csv_with("c12,   ,3,5,No", "c13,Pro,3,  ,Yes", "c14, Pro ,3,5,No"), Rows(
        15, repaired={"whitespace_stripped": 1, "numeric_coerced": 1, "missing_imputed": 2})),
    "whitespace_only_cells_rejected": Case(csv_with("c12,   ,3,5,No", "c13,Pro,3,  ,Yes"), Rows(
        14, rejected={"plan: missing": 1, "charges: missing": 1}),
        data={"cleaning": {"missing_numeric": "reject", "missing_category": "reject"}}),
    "thousands_separator_and_currency_sign": Case(csv_with('c12,Basic,3,"1,234.50",No', "c13,Pro,3,$12,Yes"),
                                                  Rows(14, repaired={"numeric_unparseable": 2,
                                                                     "missing_imputed": 2})),
    "exact_duplicate_rows": Case(csv_with("c1,Basic,2,11.5,Yes", "c1,Basic,2,11.5,Yes"), Rows(
        14, rejected={"exact duplicate of row 2": 2})),
    "ragged_row_too_few_fields": Case(csv_with("c12,Basic,3"), Rows(
        13, rejected={"churn: missing (a row without a label cannot be learned from)": 1})),
    "missing_and_stray_labels": Case(csv_with("c12,Basic,3,5,", "c13,Basic,3,5,Maybe"), Rows(
        14, rejected={"churn: missing (a row without a label cannot be learned from)": 1,
                      "churn: 'Maybe' is neither the positive label 'Yes' nor the negative label 'No'": 1})),
    "bom_and_crlf_line_ends": Case(text_file("customers.csv", "\ufeff" + csv_text(), newline="\r\n"),
                                   Rows(12)),
    "semicolon_delimited": Case(text_file("customers.csv", good_rows().to_csv(index=False, sep=";")), Rows(
        12, logged="read as semicolon-separated values")),
    "tab_delimited_gzipped": Case(gzipped_tsv, Rows(12, logged="read as tab-separated values")),
    "json_object_wrapping_the_rows": Case(text_file("customers.json", json.dumps(
        {"exported": "2026-01-01", "data": good_rows().to_dict("records")})), Rows(
        12, logged="the rows are the list under the key 'data'")),
    "json_mixed_types_in_a_numeric_column": Case(text_file("customers.json", json.dumps(
        good_rows().assign(charges=[12, "12.5", "n/a", None] * 3).to_dict("records"))), Rows(
        12, repaired={"numeric_unparseable": 3, "missing_imputed": 6})),
    "json_nested_values_in_an_ignored_column": Case(text_file("customers.json", json.dumps(
        good_rows().assign(meta=[{"source": "crm", "tags": ["a"]}] * 12).to_dict("records"))), Rows(12)),
    "parquet_bool_with_gaps_as_numeric_and_boolean": Case(parquet_with(
        charges=pd.array([True, False, None] * 4, dtype=object), plan=[True, False, None] * 4), Rows(
        12, repaired={"yes_no_normalised": 8, "missing_imputed": 4}),
        data={"columns": {**SCHEMA["columns"], "plan": {"type": "boolean"}}}),
    # ---- refused: what is wrong, where, and the fix -------------------------------------------------------
    "missing_target_column": Case(csv_with(header="id,plan,tenure,charges,Churned"), Refused(
        DataError, ("'churn' (did you mean 'Churned'?)", "Fix the names in data.columns / data.target"))),
    "duplicated_header": Case(csv_with(header="id,plan,tenure, plan ,churn"), Refused(
        DataError, ("the column name 'plan' appears more than once (columns 2 and 4)",))),
    "sqlite_query_with_a_column_twice": Case(sqlite_db, Refused(
        DataError, ("the column name 'plan' appears more than once (columns 2 and 5)",)),
        data={"query": "SELECT id, plan, tenure, charges, plan, churn FROM customers"}),
    "ragged_row_too_many_fields": Case(csv_with("c12,Basic,3,5,No,extra"), Refused(
        DataError, ("Expected 5 fields in line 14, saw 6", "cannot be read as csv"))),
    "latin1_encoded_file": Case(text_file("customers.csv", csv_text().replace("Basic", "Básico"), "latin-1"),
                                Refused(DataError, ("not UTF-8 text", "re-save the file as UTF-8",
                                                    "iconv -f latin1 -t utf-8 customers.csv"))),
    "empty_file": Case(text_file("customers.csv", ""), Refused(DataError, ("the file is empty",))),
    "header_only": Case(text_file("customers.csv", HEADER + "\n"), Refused(
        DataError, ("the table has no rows (columns: id, plan, tenure, charges, churn)",))),
    "all_blank_target": Case(parquet_with(churn=[None] * 12), Refused(
        ConfigError, ("the target column 'churn' is blank in all 12 rows", "point data.target at the column"),
        key="data.target")),
    "single_class_target_without_the_positive_label": Case(labels(*["No"] * 12), Refused(
        ConfigError, ("every labelled row of the target column 'churn' is 'No'", "add rows labelled 'Yes'"),
        key="data.target")),
    "single_class_target_after_cleansing": Case(labels(*["Yes"] * 12), Refused(
        DataError, ("every kept row of the target 'churn' is of class 'Yes'", "Add rows of the other class")),
        prepare=True),
    "all_blank_numeric_column": Case(parquet_with(charges=[None] * 12), Refused(
        ConfigError, ("column 'charges' is blank in all 12 kept rows", "remove data.columns.charges"),
        key="data.columns.charges")),
    "all_text_numeric_column": Case(parquet_with(charges=["gold", "silver", "n/a"] * 4), Refused(
        ConfigError, ("none of the 12 values of column 'charges' is a number (e.g. 'gold', 'silver', 'n/a')",
                      "data.columns.charges.type=category"), key="data.columns.charges")),
    "currency_amounts_in_a_numeric_column": Case(parquet_with(charges=["$1,234.50", "$12"] * 6), Refused(
        ConfigError, ("'$1,234.50'", "without a currency sign or thousands separators"),
        key="data.columns.charges")),
    "semicolon_file_with_decimal_commas": Case(text_file("customers.csv", good_rows().to_csv(
        index=False, sep=";", decimal=",")), Refused(ConfigError, (
            "none of the 12 values of column 'charges' is a number (e.g. '10,5', '11,5', '12,5')",
            "plain numbers (1234.5"), key="data.columns.charges")),
    "yes_no_words_in_a_numeric_column": Case(parquet_with(charges=["yes", "no"] * 6), Refused(
        ConfigError, ("holds yes/no words", "data.columns.charges.type=boolean"),
        key="data.columns.charges")),
    "parquet_datetime_as_numeric": Case(parquet_with(tenure=pd.date_range("2025-01-01", periods=12)), Refused(
        ConfigError, ("column 'tenure' holds dates or times (datetime64", "days since the date"),
        key="data.columns.tenure")),
    "parquet_bytes_column": Case(parquet_with(plan=[b"\x00\x01", b"Pro"] * 6), Refused(
        ConfigError, ("column 'plan' holds raw bytes", "decode it to text", "remove data.columns.plan"),
        key="data.columns.plan")),
    "sqlite_blob_column": Case(sqlite_with_blobs, Refused(
        ConfigError, ("column 'plan' holds raw bytes", "CAST(plan AS TEXT)"), key="data.columns.plan"),
        data={"table": "customers"}),
    "sqlite_text_column_with_non_utf8_bytes": Case(sqlite_text_with_binary, Refused(
        DataError, ("a text column of table 'customers' holds bytes that are not UTF-8 text", "data.query")),
        data={"table": "customers"}),
    "json_nested_values_in_a_feature": Case(text_file("customers.json", json.dumps(
        good_rows().assign(plan=[{"name": "Basic"}] * 12).to_dict("records"))), Refused(
        ConfigError, ("column 'plan' holds nested JSON values", "flatten them"), key="data.columns.plan")),
    "json_object_with_two_lists_of_rows": Case(text_file("customers.json", json.dumps(
        {"train": good_rows().to_dict("records"), "test": good_rows().to_dict("records")})), Refused(
        DataError, ("several lists of rows, under 'train', 'test'", "save the rows as a JSON array"))),
    "json_lines_in_a_json_file": Case(
        text_file("customers.json", good_rows().to_json(orient="records", lines=True)),
        Refused(DataError, ("cannot be read as json", "use the .jsonl extension"))),
    "broken_json_lines_line": Case(text_file("customers.jsonl", "\n".join(
        [json.dumps(row) for row in good_rows(4).to_dict("records")][:2] + ['{"id": "c2", "plan": "Pro",',
                                                                             '{"id": "c3"}'])),
        Refused(DataError, ("line 3: Expecting property name enclosed in double quotes at column 28",
                            "Fix or remove that line"))),
    "json_lines_line_that_is_not_an_object": Case(text_file("customers.jsonl", "\n".join(
        [json.dumps(row) for row in good_rows(3).to_dict("records")] + ['["c3", "Pro", 4, 13.5, "No"]'])),
        Refused(DataError, ("line 4: a JSON list, not an object of column values",))),
    "zero_kept_rows": Case(parquet_with(plan=["Gold", "Gold", "Silver"] * 4), Refused(
        DataError, ("all 12 rows were rejected (unknown_category 12)",
                    "8 rows: plan: 'Gold' is not an allowed value", "4 rows: plan: 'Silver'"))),
    "sqlite_table_missing": Case(sqlite_db, Refused(
        DataError, ("no table 'customer'; the tables are: customers", "Fix data.table")),
        data={"table": "customer"}),
    "sqlite_query_error": Case(sqlite_db, Refused(
        DataError, ("no such column: churned", "the database could not be read", "data.query")),
        data={"query": "SELECT id, churned FROM customers"}),
    "class_too_small_for_the_split": Case(labels(*["No"] * 10, "Yes", "Yes"), Refused(
        DataError, ("the target 'churn' has 2 kept row(s) of class 'Yes'", "at least 5 rows of each class",
                    "Add rows of 'Yes'")), prepare=True),
    "class_too_small_for_the_folds": Case(labels(*["No"] * 20, *["Yes"] * 6), Refused(
        DataError, ("has 6 kept row(s) of class 'Yes'", "the val part of each fold", "at least 7 rows",
                    "cv.folds=3")), data={"val_fraction": 0.2, "cv_folds": 5}, prepare=True),
}


def data_config(path: Path, case: Case) -> dict[str, Any]:
    options = {key: value for key, value in case.data.items() if key != "cv_folds"}
    return {**SCHEMA, "source": str(path), **options}


def run_case(case: Case, tmp_path: Path) -> dict[str, Any]:
    """The case's file through read + cleanse (or the whole data preparation): its cleansing report."""
    path = case.write(tmp_path)
    if not case.prepare:
        cleaned = load_clean_table(data_config(path, case)).cleaned
        return {"report": cleaned.report, "rejects": cleaned.rejects}
    cfg = compose_train("experiment=churn", f"paths.run_dir={tmp_path / 'run'}", "model=logistic_regression",
                        f"cv.folds={case.data.get('cv_folds', 0)}")
    with open_dict(cfg):
        cfg.data.update(data_config(path, case))
    task = task_for_config(cfg)
    data = task.prepare(tmp_path / "run", True).summary
    return {"report": data["report"], "rejects": pd.read_csv(data["rejects_csv"])}


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if isinstance(case.expected, Rows)])
def test_bad_rows_are_kept_or_rejected_with_their_reason(name, tmp_path, caplog):
    case, expected = CASES[name], CASES[name].expected
    with caplog.at_level(logging.INFO, logger="visiontrain"):
        result = run_case(case, tmp_path)
    report, rejects = result["report"], result["rejects"]

    assert report["rows_in"] == expected.rows_in
    assert report["rows_in"] == report["rows_kept"] + report["rows_rejected"]
    assert report["rows_rejected"] == len(rejects) == sum(expected.rejected.values())
    assert Counter(rejects["reason"]) == Counter(expected.rejected)
    repaired = {rule: counts["repaired"] for rule, counts in report["rules"].items() if counts["repaired"]}
    assert repaired == {rule: count for rule, count in expected.repaired.items() if count}
    if expected.logged:
        assert expected.logged in caplog.text


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if isinstance(case.expected, Refused)])
def test_unusable_table_is_refused_naming_the_column_and_the_fix(name, tmp_path):
    case, expected = CASES[name], CASES[name].expected
    with pytest.raises(expected.error) as caught:
        run_case(case, tmp_path)
    message = str(caught.value)
    for words in expected.says:
        assert words in message, message
    if expected.key is not None:
        assert caught.value.key == expected.key


# ---- training: what used to train and then crash at export ------------------------------------------------

def churn_config(tmp_path: Path, source: Path, columns: dict[str, Any]):
    cfg = compose_train("experiment=churn", f"paths.run_dir={tmp_path / 'run'}",
                        f"paths.cache_dir={tmp_path}", "model=logistic_regression",
                        "trainer.enable_progress_bar=false")
    with open_dict(cfg):
        cfg.data.update({**SCHEMA, "source": str(source), "columns": columns})
    return cfg


def test_typed_parquet_columns_train_and_export_a_matching_onnx_file(tmp_path):
    """Booleans with gaps (as a number and as yes/no), and a number present in only two rows: all export."""
    from visiontrain.commands.train import train

    table = good_rows(80).assign(
        autopay=pd.array([True, False, None, True] * 20, dtype=object), paperless=[True, False] * 40,
        discount=[None] * 78 + [5.0, 7.5])
    table.to_parquet(tmp_path / "customers.parquet", index=False)
    columns = {**SCHEMA["columns"], "autopay": {"type": "numeric"}, "paperless": {"type": "boolean"},
               "discount": {"type": "numeric"}}
    train(churn_config(tmp_path, tmp_path / "customers.parquet", columns))

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["rows_in"] == 80 == summary["data"]["rows_kept"]
    assert summary["export"]["parity"]["passed"]
    session = ort.InferenceSession(summary["files"]["onnx"], providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {"plan", "tenure", "charges", "autopay", "paperless",
                                                      "discount"}


def test_an_all_blank_numeric_column_stops_the_run_before_training(tmp_path):
    from visiontrain.commands.train import train

    table = good_rows(40).assign(discount="")
    table.to_csv(tmp_path / "customers.csv", index=False)
    cfg = churn_config(tmp_path, tmp_path / "customers.csv", {**SCHEMA["columns"], "discount": "numeric"})
    with pytest.raises(ConfigError) as caught:
        train(cfg)
    assert caught.value.key == "data.columns.discount" and "remove data.columns.discount" in str(caught.value)
    assert not list((tmp_path / "run").rglob("*.ckpt")) and not (tmp_path / "run" / "model.onnx").exists()


def test_a_numeric_column_blank_in_every_training_row_still_exports(tmp_path):
    """Values only in held-out rows: the imputer keeps the column (zeros), so ONNX has the scaler's width."""
    from visiontrain.config.table_schema import TableSchema
    from visiontrain.config.tabular import Features
    from visiontrain.tabular.features import build_feature_pipeline, model_inputs, transform
    from visiontrain.tabular.onnx_graph import onnx_feeds, pipeline_graph

    schema = TableSchema.from_config({**SCHEMA, "columns": {**SCHEMA["columns"], "discount": "numeric"}})
    table = good_rows(20).assign(discount=[np.nan] * 16 + [5.0, 7.5, np.nan, 1.0])
    table.to_csv(tmp_path / "customers.csv", index=False)
    cleaned = load_clean_table({**SCHEMA, "source": str(tmp_path / "customers.csv"),
                                "columns": {**SCHEMA["columns"], "discount": "numeric"}}).cleaned
    train_rows, held_out = cleaned.frame.iloc[:16], cleaned.frame.iloc[16:]
    pipeline = build_feature_pipeline(schema, Features()).fit(model_inputs(train_rows, schema))

    graph = pipeline_graph(pipeline, schema.numeric_features, schema.categorical_features, opset=17)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = onnx_feeds(model_inputs(held_out, schema), schema.numeric_features, schema.categorical_features)
    expected = transform(pipeline, held_out, schema)
    assert expected.shape == (4, 5)  # plan (2 one-hot), tenure, charges, discount
    np.testing.assert_allclose(session.run(None, feeds)[0], expected, atol=1e-5)


@pytest.mark.parametrize("query", ["ATTACH DATABASE '{marker}' AS elsewhere", "DELETE FROM customers",
                                   "CREATE TABLE stolen AS SELECT * FROM customers", "PRAGMA journal_mode=OFF"])
def test_a_sqlite_query_can_only_read(tmp_path, query):
    """data.query may come from a checkpoint someone else made: it reads, and writes nothing, anywhere."""
    path = sqlite_db(tmp_path)
    marker, before = tmp_path / "created.db", path.read_bytes()
    with pytest.raises(DataError, match=r"the database could not be read \(not authorized\)"):
        load_clean_table({**SCHEMA, "source": str(path), "query": query.format(marker=marker)})
    assert not marker.exists()
    assert path.read_bytes() == before
    cleaned = load_clean_table({**SCHEMA, "source": str(path), "query": "SELECT * FROM customers"}).cleaned
    assert cleaned.report["rows_kept"] == 12  # reading is untouched
