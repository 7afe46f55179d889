"""A user's table, in any format and state: every row is kept (perhaps repaired) or rejected with a reason."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy
from omegaconf import OmegaConf

from conftest import TELCO, TELCO_SAMPLE, compose_train
from visiontrain.config import config_dir
from visiontrain.config.reading import validate
from visiontrain.config.table_schema import TableSchema
from visiontrain.config.tabular import Cleaning
from visiontrain.core.redaction import redact_url
from visiontrain.errors import ConfigError, DataError
from visiontrain.tabular.builtin import generate_churn_table, materialise_builtin_churn
from visiontrain.tabular.cleansing import CleaningResult, cleanse
from visiontrain.tabular.ingest import detect_format, read_table

TELCO_SCHEMA = OmegaConf.to_container(OmegaConf.load(config_dir() / "data" / "churn.yaml"))  # the shipped schema
TELCO_COLUMNS = ["customerID", "gender", "SeniorCitizen", "Partner", "Dependents", "tenure", "PhoneService",
                 "MultipleLines", "InternetService", "OnlineSecurity", "OnlineBackup", "DeviceProtection",
                 "TechSupport", "StreamingTV", "StreamingMovies", "Contract", "PaperlessBilling",
                 "PaymentMethod", "MonthlyCharges", "TotalCharges", "Churn"]

SMALL = {"target": "churn", "task_type": "classification", "positive_label": "Yes", "id_columns": ["id"],
         "columns": {"plan": {"type": "category", "categories": ["Basic", "Pro"]},
                     "paperless": {"type": "boolean"},
                     "tenure": {"type": "integer", "min": 0, "max": 100},
                     "charges": {"type": "numeric", "min": 0},
                     "region": {"type": "category"}}}

# Each messy row breaks the rules named beside it (row numbers count data rows from 1).
MESSY_CSV = """id,plan,paperless,tenure,charges,region,churn,notes
c1,Basic,Yes,10,20.5,north,No,ok
c2, Pro ,yes,5,30,south,Yes,whitespace + yes/no
c3,Basic,NO,200,10,north,No,yes/no + outlier above
c4,Basic,No,7, ,north,Yes,blank charges
c5,Pro,Yes,3,abc,south,No,unparseable charges
c6,Gold,Yes,3,5,north,No,unknown plan
c1,Basic,Yes,10,20.5,north,No,ok
c8,Basic,Yes,4,8,,No,missing region
c9,Pro,No,12,40,west,,no label
c10,Pro,No,12,40,west,Maybe,third label
c11,Gold,Yes,1,1,north,,unknown plan + no label
c12,Basic,1,30,25,south,yes,yes/no in feature and target
c13,Pro,No,-5,12,east,No,outlier below
c14,Basic,No,20,15,north,Yes,ok
"""


def small_schema() -> TableSchema:
    return TableSchema.from_config(SMALL)


def typed_table() -> pd.DataFrame:
    """What a database or a Parquet export holds: native numbers and booleans, some values missing."""
    return pd.DataFrame({"id": ["a1", "a2", "a3", "a4", "a5"],
                         "plan": ["Basic", "Pro", "Pro", "Basic", "Pro"],
                         "paperless": [True, False, True, True, False], "tenure": [1, 24, 60, 3, 12],
                         "charges": [20.5, 99.95, np.nan, 45.0, 70.25],
                         "region": ["north", None, "south", "east", "north"],
                         "churn": ["Yes", "No", "No", "Yes", "No"]})


def assert_nothing_lost(result) -> None:
    report = result.report
    assert report["rows_in"] == report["rows_kept"] + report["rows_rejected"]
    assert len(result.frame) == report["rows_kept"] and len(result.rejects) == report["rows_rejected"]
    kept, rejected = set(result.frame.index), set(result.rejects["row"])
    assert not kept & rejected and kept | rejected == set(range(1, report["rows_in"] + 1))


def messy(tmp_path: Path, **rules) -> CleaningResult:
    path = tmp_path / "messy.csv"
    path.write_text(MESSY_CSV)
    return cleanse(read_table(str(path)), small_schema(), Cleaning(**rules))


def counts(result) -> dict[str, tuple[int, int]]:
    """Rules that did something: rule -> (rows repaired, rows rejected)."""
    return {rule: (c["repaired"], c["rejected"]) for rule, c in result.report["rules"].items()
            if c["repaired"] or c["rejected"]}


# Every format comes in the same way.

@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet", ".db"])
def test_every_format_gives_the_same_cleansed_table(tmp_path, suffix):
    table, path = typed_table(), tmp_path / f"customers{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    elif suffix in (".json", ".jsonl"):
        table.to_json(path, orient="records", lines=suffix == ".jsonl")
    elif suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_sql("customers", sqlalchemy.create_engine(f"sqlite:///{path}"), index=False)

    raw = read_table(str(path), table="customers" if suffix == ".db" else None)
    result = cleanse(raw, small_schema(), Cleaning())

    assert list(raw.columns) == list(table.columns) and len(raw) == 5
    assert_nothing_lost(result)
    frame = result.frame
    assert list(frame.columns) == ["plan", "paperless", "tenure", "charges", "region", "churn"]
    assert frame["paperless"].tolist() == ["Yes", "No", "Yes", "Yes", "No"]  # True/False, "True", 1/0 alike
    assert frame["tenure"].dtype == np.float64 and frame["tenure"].tolist() == [1, 24, 60, 3, 12]
    assert frame["charges"].isna().tolist() == [False, False, True, False, False]
    assert frame["region"].isna().tolist() == [False, True, False, False, False]
    assert frame["churn"].tolist() == [1, 0, 0, 1, 0] and frame["churn"].dtype == np.int64
    assert result.report["missing_by_column"] == {"plan": 0, "paperless": 0, "tenure": 0, "charges": 1,
                                                  "region": 1}


def test_csv_values_reach_cleansing_exactly_as_written(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("zip,amount,flag\n00123, 5 ,NA\n")

    raw = read_table(str(path))

    assert raw.iloc[0].tolist() == ["00123", " 5 ", "NA"]  # no leading zeros lost, no "NA" turned into NaN


def test_sqlite_database_read_by_table_by_query_and_by_url(tmp_path):
    path = tmp_path / "crm.sqlite"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    typed_table().to_sql("customers", engine, index=False)
    pd.DataFrame({"x": [1]}).to_sql("audit", engine, index=False)
    engine.dispose()

    by_table = read_table(str(path), table="customers")
    by_url = read_table(f"sqlite:///{path}", table="customers")
    query = "SELECT * FROM customers WHERE tenure >= 12 AND plan != 'a:b' ORDER BY tenure"  # ':' not a bind
    by_query = read_table(f"sqlite:///{path}", query=query)

    assert detect_format(str(path)) == "sql" and detect_format(f"sqlite:///{path}") == "sql"
    pd.testing.assert_frame_equal(by_table, by_url)
    assert by_table["id"].tolist() == ["a1", "a2", "a3", "a4", "a5"]
    assert by_query["tenure"].tolist() == [12, 24, 60]


def test_format_option_overrides_the_extension(tmp_path):
    csv_path, sql_path = tmp_path / "export.txt", tmp_path / "crm.data"
    typed_table().to_csv(csv_path, index=False)
    typed_table().to_sql("customers", sqlalchemy.create_engine(f"sqlite:///{sql_path}"), index=False)

    with pytest.raises(DataError, match="data.format"):
        read_table(str(csv_path))
    assert len(read_table(str(csv_path), fmt="csv")) == 5
    assert len(read_table(str(sql_path), fmt="sql", table="customers")) == 5
    with pytest.raises(ConfigError, match="data.format"):
        read_table(str(csv_path), fmt="xlsx")


def test_unreadable_sources_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_table(str(tmp_path / "missing.csv"))
    (tmp_path / "empty.csv").write_text("id,churn\n")
    with pytest.raises(DataError, match="no rows"):
        read_table(str(tmp_path / "empty.csv"))
    (tmp_path / "broken.json").write_text('{"id": 1,')
    with pytest.raises(DataError, match="cannot be read as json"):
        read_table(str(tmp_path / "broken.json"))


def test_sql_source_needs_exactly_one_of_table_or_query(tmp_path):
    path = tmp_path / "crm.db"
    typed_table().to_sql("customers", sqlalchemy.create_engine(f"sqlite:///{path}"), index=False)

    for options in ({}, {"table": "customers", "query": "SELECT 1"}):
        with pytest.raises(ConfigError) as error:
            read_table(str(path), **options)
        assert error.value.key == "data.table"
    with pytest.raises(ConfigError, match="only applies to SQL"):
        read_table(str(tmp_path / "x.csv"), table="customers")


def test_sql_errors_name_the_database_and_never_the_password(tmp_path):
    path = tmp_path / "crm.db"
    typed_table().to_sql("customers", sqlalchemy.create_engine(f"sqlite:///{path}"), index=False)
    (tmp_path / "notes.db").write_text("not a database\n")

    with pytest.raises(DataError, match="no table 'customer'; the tables are: customers"):
        read_table(str(path), table="customer")
    with pytest.raises(DataError, match="no such column: churned"):  # the driver's words, from a real query
        read_table(f"sqlite:///{path}", query="SELECT churned FROM customers")
    with pytest.raises(DataError, match="could not be read"):  # a real connection to a file that is no DB
        read_table(str(tmp_path / "notes.db"), table="customers")
    with pytest.raises(DataError, match="does not exist"):
        read_table("sqlite:///nonexistent_dir/x.db", table="customers")
    assert not Path("nonexistent_dir").exists()  # SQLite was not allowed to create it
    with pytest.raises(DataError) as error:  # no such driver: fails before any connection is tried
        read_table("postgresql+nodriver://user:secret@db.example/crm", table="customers")
    assert "secret" not in str(error.value) and "user:***@db.example/crm" in str(error.value)
    assert redact_url("postgresql://user:secret@host/db") == "postgresql://user:***@host/db"


# The real Telco export.

# (rows, SeniorCitizen No/Yes, churn positives/negatives) of each file, counted in it once
TELCO_FIGURES = {TELCO_SAMPLE: (500, {"No": 425, "Yes": 75}, 131, 369),
                 TELCO: (7043, {"No": 5901, "Yes": 1142}, 1869, 5174)}


@pytest.mark.parametrize("source", [
    TELCO_SAMPLE,  # 500 real rows, stratified: all 11 blank TotalCharges rows and one pair of ID-only twins kept
    pytest.param(TELCO, marks=[pytest.mark.slow, pytest.mark.shared_data(TELCO)]),
], ids=["sample", "full"])
def test_real_telco_export_is_cleansed_without_losing_a_row(source, tmp_path):
    rows, senior, positives, negatives = TELCO_FIGURES[source]
    raw = read_table(str(source))

    result = cleanse(raw, TableSchema.from_config(TELCO_SCHEMA), Cleaning())

    report = result.report
    assert list(raw.columns) == TELCO_COLUMNS
    assert (report["rows_in"], report["rows_kept"], report["rows_rejected"]) == (rows, rows, 0)
    assert report["rules"]["numeric_coerced"]["repaired"] == 11  # TotalCharges " " for customers of tenure 0
    assert report["missing_by_column"]["TotalCharges"] == 11
    assert result.frame["TotalCharges"].isna().sum() == 11
    assert result.frame["TotalCharges"].dtype == np.float64
    assert report["rules"]["duplicates"]["rejected"] == 0  # rows that repeat all but the customerID: not copies
    assert result.frame["SeniorCitizen"].value_counts().to_dict() == senior
    assert report["target"]["positives"] == positives and report["target"]["negatives"] == negatives
    assert "customerID" not in result.frame.columns
    assert_nothing_lost(result)


# Each rule, counted exactly.

def test_messy_table_every_rule_fires_and_is_counted_exactly(tmp_path):
    result = messy(tmp_path)

    assert counts(result) == {"duplicates": (0, 1), "target_missing": (0, 2), "target_unknown": (0, 1),
                              "unknown_category": (0, 1), "whitespace_stripped": (1, 0),
                              "yes_no_normalised": (3, 0), "numeric_coerced": (1, 0),
                              "numeric_unparseable": (1, 0),
                              "outliers_clipped": (2, 0), "missing_imputed": (3, 0)}
    report = result.report
    assert (report["rows_in"], report["rows_kept"], report["rows_rejected"]) == (14, 9, 5)
    assert report["missing_by_column"] == {"plan": 0, "paperless": 0, "tenure": 0, "charges": 2, "region": 1}
    assert report["ignored_columns"] == ["notes"]
    assert report["target"] == {"name": "churn", "positive_label": "Yes", "negative_label": "No",
                                "positives": 4, "negatives": 5, "positive_rate": round(4 / 9, 4)}
    frame = result.frame
    assert frame.index.tolist() == [1, 2, 3, 4, 5, 8, 12, 13, 14]
    assert frame.loc[2, "plan"] == "Pro" and frame.loc[12, "paperless"] == "Yes"
    assert frame.loc[12, "churn"] == 1
    assert frame.loc[3, "tenure"] == 100 and frame.loc[13, "tenure"] == 0  # clipped to [min, max]
    assert "id" not in frame.columns and "notes" not in frame.columns
    assert_nothing_lost(result)


def test_rejects_csv_lists_every_rejected_row_with_all_its_reasons(tmp_path):
    result = messy(tmp_path)
    paths = result.write(tmp_path / "run")

    rejects = pd.read_csv(paths["rejects"], dtype=str, keep_default_na=False).set_index("row")
    assert rejects.index.tolist() == ["6", "7", "9", "10", "11"]
    assert rejects.loc["7", "reason"] == "exact duplicate of row 1"
    assert rejects.loc["6", "rule"] == "unknown_category" and "'Gold' is not an allowed value" in \
        rejects.loc["6", "reason"]
    assert rejects.loc["10", "reason"].startswith("churn: 'Maybe' is neither the positive label 'Yes'")
    assert rejects.loc["11", "rule"] == "target_missing"  # once, under its first rule; all reasons told
    assert rejects.loc["11", "reason"] == ("churn: missing (a row without a label cannot be learned from); "
                                           "plan: 'Gold' is not an allowed value (Basic, Pro)")
    assert rejects.loc["11"][["id", "plan", "notes"]].tolist() == ["c11", "Gold", "unknown plan + no label"]
    assert json.loads(Path(paths["report_json"]).read_text()) == result.report
    markdown = Path(paths["report_md"]).read_text()
    assert "14 rows in, 9 kept, 5 rejected" in markdown and "| duplicates | 0 | 1 |" in markdown


def test_strict_rules_reject_what_the_defaults_repair(tmp_path):
    result = messy(tmp_path, drop_duplicates=False, missing_numeric="reject", unknown_category="missing",
                   outliers="reject")

    assert counts(result) == {"target_missing": (0, 2), "target_unknown": (0, 1), "unknown_category": (1, 0),
                              "missing_rejected": (0, 2), "outliers_rejected": (0, 2),
                              "whitespace_stripped": (1, 0), "yes_no_normalised": (2, 0),
                              "missing_imputed": (2, 0)}
    assert result.frame.index.tolist() == [1, 2, 6, 7, 8, 12, 14]
    assert pd.isna(result.frame.loc[6, "plan"])  # the unknown "Gold" became missing, left for the imputer
    reasons = result.rejects.set_index("row")["reason"]
    assert reasons[3] == "tenure: 200 is above the maximum 100"
    assert reasons[13] == "tenure: -5 is below the minimum 0"
    assert reasons[4] == "charges: missing" and reasons[5] == "charges: missing"
    assert_nothing_lost(result)


def test_flagged_outliers_are_kept_as_they_are_and_counted(tmp_path):
    result = messy(tmp_path, outliers="flag")

    assert result.report["rules"]["outliers_flagged"] == {"repaired": 2, "rejected": 0}
    assert result.frame.loc[3, "tenure"] == 200 and result.frame.loc[13, "tenure"] == -5


def test_no_rule_combination_loses_or_invents_a_row(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text(MESSY_CSV)
    raw, schema = read_table(str(path)), small_schema()
    choices = itertools.product([True, False], [True, False], ["impute", "reject"], ["impute", "reject"],
                                ["reject", "missing"], ["clip", "flag", "reject"])
    for strip, duplicates, numeric, category, unknown, outliers in choices:
        rules = Cleaning(strip_whitespace=strip, drop_duplicates=duplicates, missing_numeric=numeric,
                              missing_category=category, unknown_category=unknown, outliers=outliers)
        result = cleanse(raw, schema, rules)
        assert_nothing_lost(result)
        assert sum(c["rejected"] for c in result.report["rules"].values()) == result.report["rows_rejected"]
        assert (result.rejects["reason"].str.len() > 0).all()


# The schema and the rules come from config.

def test_a_missing_column_is_named_with_the_closest_match(tmp_path):
    raw = read_table(str(TELCO_SAMPLE))
    raw = raw.rename(columns={"tenure": "Tenure", "MonthlyCharges": "MonthlyCharge"})

    with pytest.raises(DataError) as error:
        cleanse(raw, TableSchema.from_config(TELCO_SCHEMA), Cleaning())

    message = str(error.value)
    assert "'tenure' (did you mean 'Tenure'?)" in message
    assert "'MonthlyCharges' (did you mean 'MonthlyCharge'?)" in message
    assert "Columns found: customerID" in message


def test_schema_from_yaml_config_and_its_errors_name_the_key():
    cfg = OmegaConf.create("""
        target: churned
        positive_label: Yes          # unquoted: YAML reads a boolean, the schema reads "Yes"
        builtin_path: ${paths.cache_dir}/churn.csv   # not the schema's business: never resolved here
        id_columns: [id]
        columns:
          plan: {type: category, categories: [Basic, Pro]}
          autopay: {type: category, categories: [No, Yes]}
          age: {type: integer, min: 18}
          flag: boolean
    """)
    schema = TableSchema.from_config(cfg)
    assert schema.positive_label == "Yes" and schema.task_type == "classification"
    assert schema.columns["autopay"].categories == ("No", "Yes")
    assert schema.numeric_features == ["age"] and schema.categorical_features == ["plan", "autopay", "flag"]

    bad = {"tenure": {"type": "number"}, "plan": {"type": "category", "catgories": ["a"]},
           "age": {"type": "numeric", "min": 5, "max": 1}}
    keys = {"tenure": "data.columns.tenure.type", "plan": "data.columns.plan.catgories",
            "age": "data.columns.age.min"}
    for name, spec in bad.items():
        with pytest.raises(ConfigError) as error:
            TableSchema.from_config({"target": "churn", "columns": {name: spec}})
        assert error.value.key == keys[name]
    with pytest.raises(ConfigError, match="data.columns.churn"):
        TableSchema.from_config({"target": "churn", "columns": {"churn": {"type": "category"}}})
    with pytest.raises(ConfigError, match="data.task_type"):
        TableSchema.from_config({"target": "churn", "task_type": "ranking", "columns": {"a": "numeric"}})


def test_cleaning_rules_reject_typos_and_bad_values():
    def rules(values):
        return validate(Cleaning, values, "data.cleaning")

    assert rules({}) == Cleaning()
    assert rules({"outliers": "flag"}).outliers == "flag"
    with pytest.raises(ConfigError, match="clip, flag, reject") as error:
        rules({"outliers": "drop"})
    assert error.value.key == "data.cleaning.outliers"
    with pytest.raises(ConfigError, match="data.cleaning.drop_duplicates=") as error:
        rules({"drop_duplicate": True})
    assert error.value.key == "data.cleaning.drop_duplicate"
    with pytest.raises(ConfigError, match="true or false"):
        rules({"strip_whitespace": "yes"})


def test_a_positive_label_that_never_occurs_is_a_config_error(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text(MESSY_CSV)
    schema = TableSchema.from_config({**SMALL, "positive_label": "Churned"})

    with pytest.raises(ConfigError, match="'Churned' never occurs") as error:
        cleanse(read_table(str(path)), schema, Cleaning())
    assert error.value.key == "data.positive_label"


def test_a_third_class_is_not_dropped_silently():
    raw = pd.DataFrame({"x": np.arange(60.0), "label": ["a", "b", "c"] * 20})
    schema = TableSchema.from_config({"target": "label", "positive_label": "a", "columns": {"x": "numeric"}})

    with pytest.raises(DataError, match="a binary task needs two target values"):
        cleanse(raw, schema, Cleaning())


def test_regression_target_is_a_number_and_unparseable_ones_are_rejected():
    raw = pd.DataFrame({"x": ["1", "2", "3", "4"], "price": ["10.5", "abc", " ", "20.5"]})
    schema = TableSchema.from_config({"target": "price", "task_type": "regression",
                                      "columns": {"x": "numeric"}})

    result = cleanse(raw, schema, Cleaning())

    assert counts(result) == {"target_missing": (0, 1), "target_unparseable": (0, 1)}
    assert result.frame["price"].tolist() == [10.5, 20.5]
    assert result.report["target"] == {"name": "price", "mean": 15.5,
                                       "std": round(float(np.std([10.5, 20.5], ddof=1)), 6)}


# The built-in churn table.

def test_builtin_churn_table_is_deterministic_and_shaped_like_telco():
    table = generate_churn_table(rows=1000, seed=3)

    pd.testing.assert_frame_equal(table, generate_churn_table(rows=1000, seed=3))
    assert not table.equals(generate_churn_table(rows=1000, seed=4))
    assert list(table.columns) == TELCO_COLUMNS and len(table) == 1000
    real = read_table(str(TELCO_SAMPLE))  # every category of the full file occurs in the sample
    for name, spec in TELCO_SCHEMA["columns"].items():
        if "categories" in spec and name != "SeniorCitizen":
            assert set(real[name]) == set(spec["categories"]), name  # the vocabularies are Telco's own
    assert set(table["SeniorCitizen"]) == set(real["SeniorCitizen"]) == {"0", "1"}


def test_builtin_churn_table_has_every_kind_of_mess_and_can_be_learned():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    raw = generate_churn_table()
    schema = TableSchema.from_config(TELCO_SCHEMA)
    result = cleanse(raw, schema, Cleaning())

    rules = result.report["rules"]
    for rule in ("duplicates", "target_missing", "unknown_category"):
        assert rules[rule]["rejected"] > 0, rule
    for rule in ("whitespace_stripped", "yes_no_normalised", "numeric_coerced", "outliers_clipped",
                 "missing_imputed"):
        assert rules[rule]["repaired"] > 0, rule
    assert result.report["missing_by_column"]["TotalCharges"] > 0  # " " for customers of tenure 0
    assert result.report["missing_by_column"]["MonthlyCharges"] > 0
    strict = cleanse(raw, schema, Cleaning(outliers="reject"))
    assert strict.report["rules"]["outliers_rejected"]["rejected"] > 0
    assert 0.20 <= result.report["target"]["positive_rate"] <= 0.30
    assert_nothing_lost(result)

    frame = result.frame
    numbers = frame[schema.numeric_features].fillna(frame[schema.numeric_features].median())
    features = pd.concat([pd.get_dummies(frame[schema.categorical_features]).astype(float),
                          (numbers - numbers.mean()) / numbers.std()], axis=1).to_numpy()
    labels = frame["Churn"].to_numpy()
    train = np.arange(len(frame)) % 4 != 0
    model = LogisticRegression(max_iter=1000).fit(features[train], labels[train])
    assert roc_auc_score(labels[~train], model.predict_proba(features[~train])[:, 1]) > 0.75


def test_builtin_churn_table_is_written_once_and_never_over_a_users_file(tmp_path):
    path = tmp_path / "cache" / "churn.csv"

    assert materialise_builtin_churn(path, rows=300) == path
    written = path.stat().st_mtime_ns
    assert materialise_builtin_churn(path, rows=300) == path and path.stat().st_mtime_ns == written
    pd.testing.assert_frame_equal(read_table(str(path)), generate_churn_table(rows=300))
    assert not list(path.parent.glob("*.tmp"))

    materialise_builtin_churn(path, rows=400)  # our own file, other size: rewritten
    assert len(read_table(str(path))) == 400

    users = tmp_path / "mine.csv"
    users.write_text("id,churn\n1,Yes\n")
    with pytest.raises(DataError, match="not the built-in churn table"):
        materialise_builtin_churn(users, rows=300)
    assert users.read_text() == "id,churn\n1,Yes\n"


def test_an_older_checkpoints_config_parses_with_the_defaults_of_keys_added_since(tmp_path):
    """A stored run config (no trainer) from before the source limits, HTTP sources and feature options: the
    keys it lacks take the typed config's defaults, which are the YAML's."""
    from visiontrain.config.checks import check_train_config, tabular_settings
    from visiontrain.training.checkpoints import stored_run_config

    cfg = compose_train("experiment=churn", "model=logistic_regression", f"paths.run_dir={tmp_path}")
    stored = stored_run_config(cfg)
    for key in ("http", "max_rows", "kafka_timeout_s", "kafka_max_message_bytes"):
        stored["data"].pop(key)
    stored.pop("features")
    older = tabular_settings(OmegaConf.create(stored), stored=True)
    current = check_train_config(cfg)
    assert older.trainer is None and older.data.http == current.data.http
    assert older.data.max_rows == current.data.max_rows and older.features == current.features
    assert older.data.cleaning == current.data.cleaning and older.data.declaration == current.data.declaration
