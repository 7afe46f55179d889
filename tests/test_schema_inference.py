"""A new user's own table on the first try: no schema written, identifiers and leaks left out and listed, the
schema written to the run dir and read back, partial schemas that extend or replace, and loud warnings when a
rule rejects a large share of the rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import yaml

from bank_table import LEAK_COLUMN, bank_table
from conftest import TELCO_SAMPLE, compose_train, run_cli
from visiontrain.config.table_schema import SchemaDeclaration, TableSchema
from visiontrain.config.tabular import Inference
from visiontrain.errors import ConfigError
from visiontrain.registry import task_for_config
from visiontrain.tabular.inference import infer_schema
from visiontrain.tabular.loading import load_clean_table

FAST = ["trainer.enable_progress_bar=false", "model=logistic_regression"]
IDENTIFIERS = {"RowNumber", "CustomerId", "Surname"}


@pytest.fixture(scope="module")
def bank_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bank") / "bank.csv"
    bank_table(1500, leak=True).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def bank_run(bank_csv):
    """`visiontrain train experiment=churn data.source=bank.csv data.target=Exited`, and nothing else."""
    run_dir = bank_csv.parent / "run"
    result = run_cli("train", "experiment=churn", f"data.source={bank_csv}", "data.target=Exited", *FAST,
                     f"hydra.run.dir={run_dir}", cwd=bank_csv.parent,
                     env={"VISIONTRAIN_CACHE_DIR": str(bank_csv.parent / "cache")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"run_dir": run_dir, "summary": json.loads((run_dir / "summary.json").read_text()),
            "stdout": result.stdout, "log": (run_dir / "visiontrain.log").read_text()}


def data_config(source: Path, **keys) -> dict:
    cfg = compose_train("experiment=churn", f"data.source={source}", "data.target=Exited")
    from omegaconf import OmegaConf

    return {**OmegaConf.to_container(cfg.data, resolve=False), "builtin_path": "unused", **keys}


def test_a_table_with_no_schema_trains_and_says_what_it_inferred(bank_run):
    summary, run_dir = bank_run["summary"], bank_run["run_dir"]
    schema = yaml.safe_load((run_dir / "schema.yaml").read_text())
    columns = schema["columns"]
    assert schema["target"] == "Exited" and set(schema["id_columns"]) == {"RowNumber", "CustomerId"}
    assert columns["Geography"] == {"type": "category", "categories": ["France", "Germany", "Spain"]}
    assert columns["HasCrCard"] == {"type": "boolean"} and columns["IsActiveMember"] == {"type": "boolean"}
    assert columns["Age"]["type"] == "integer" and columns["Balance"]["type"] == "numeric"
    assert columns["Age"]["min"] == 0 and columns["Age"]["max"] > 80  # never negative; widened past the max
    assert not (IDENTIFIERS | {LEAK_COLUMN}) & set(columns)
    left_out = summary["data"]["schema"]["left_out"]
    assert IDENTIFIERS | {LEAK_COLUMN} <= set(left_out)
    assert left_out["Surname"].startswith("free text") and left_out["RowNumber"].startswith("identifier")
    assert "target leak" in left_out[LEAK_COLUMN]
    # said loudly: the log, the end-of-run report and the data report
    assert "WARNING" in bank_run["log"] and LEAK_COLUMN in bank_run["log"]
    report = bank_run["stdout"][bank_run["stdout"].rindex("=" * 78 + "\nvisiontrain:"):]
    assert f"possible target leak: {LEAK_COLUMN}" in report and "schema: Inferred from 900 training rows" in report
    assert "Left out of the features" in (run_dir / "data_report.md").read_text()
    # the exported model takes exactly the inferred feature columns, and learned something real
    model = onnx.load(str(run_dir / "model.onnx"))
    assert [i.name for i in model.graph.input] == list(columns)
    assert summary["evaluation"]["test"]["metrics"]["test/roc_auc"] > 0.7
    assert summary["export"]["parity"]["passed"]


def test_inference_looks_at_the_training_rows_only(bank_csv, tmp_path):
    table = bank_table(1500)
    table.loc[table.index[::150], "Geography"] = "Atlantis"  # 10 rows: some land outside the training part
    path = tmp_path / "bank.csv"
    table.to_csv(path, index=False)
    loaded = load_clean_table(data_config(path), seed=42)
    train = table[loaded.parts == "train"]
    categories = loaded.schema.columns["Geography"].categories
    assert set(categories) == set(train["Geography"])
    assert loaded.inferred.rows == len(train) == 900
    ages = loaded.schema.columns["Age"]
    assert ages.maximum >= train["Age"].max() and ages.minimum == 0
    # an Atlantis row outside the training part is a category the model never saw: rejected, and said so
    unseen = (table["Geography"] == "Atlantis") & (loaded.parts != "train")
    rejects = loaded.cleaned.rejects
    if "Atlantis" in categories:
        assert not (rejects["rule"] == "unknown_category").any()
    else:
        assert (rejects["rule"] == "unknown_category").sum() == unseen.sum() > 0


def test_the_written_schema_reads_back_and_reproduces_the_run(bank_run, tmp_path):
    from visiontrain.commands.train import train

    first = bank_run["summary"]
    run_dir = tmp_path / "again"
    cfg = compose_train("experiment=churn", f"data.source={first['data']['source']}", *FAST,
                        f"data.schema={bank_run['run_dir'] / 'schema.yaml'}", f"paths.run_dir={run_dir}",
                        f"paths.cache_dir={tmp_path / 'cache'}")
    train(cfg)
    again = json.loads((run_dir / "summary.json").read_text())
    assert again["data"]["schema"]["origin"].startswith("Declared in schema file")
    assert yaml.safe_load((run_dir / "schema.yaml").read_text())["columns"] == \
        yaml.safe_load((bank_run["run_dir"] / "schema.yaml").read_text())["columns"]
    assert again["data"]["split_rows"] == first["data"]["split_rows"]
    assert again["evaluation"]["test"]["metrics"] == pytest.approx(first["evaluation"]["test"]["metrics"])


def test_the_checkpoint_keeps_the_schema_it_trained_with(bank_run):
    from visiontrain.training.checkpoints import read_checkpoint

    run_config = read_checkpoint(bank_run["summary"]["checkpoints"]["best"])["hyper_parameters"]["run_config"]
    written = yaml.safe_load((bank_run["run_dir"] / "schema.yaml").read_text())
    assert run_config["data"]["columns"] == written["columns"]
    assert run_config["data"]["id_columns"] == written["id_columns"] and run_config["data"]["schema"] is None


def test_a_partial_schema_extends_or_replaces(bank_csv, tmp_path):
    extend = tmp_path / "extend.yaml"
    extend.write_text("base: inferred\ndrop: [EstimatedSalary]\ncolumns:\n  Tenure: category\n"
                      "  Geography: {type: category, categories: [France, Germany, Spain]}\n")
    schema = load_clean_table(data_config(bank_csv, schema=str(extend)), seed=42).schema
    assert schema.columns["Tenure"].kind == "category" and schema.columns["Tenure"].categories is None
    assert schema.columns["Age"].type == "integer"  # the rest inferred
    assert "EstimatedSalary" not in schema.columns and LEAK_COLUMN not in schema.columns

    replace = tmp_path / "replace.yaml"
    replace.write_text("target: Exited\nid_columns: [CustomerId]\ncolumns: {Age: numeric, Geography: category}\n")
    loaded = load_clean_table(data_config(bank_csv, schema=str(replace)), seed=42)
    assert list(loaded.schema.columns) == ["Age", "Geography"] and loaded.inferred is None
    assert "Surname" in loaded.cleaned.report["ignored_columns"]

    telco = tmp_path / "telco_plus.yaml"  # the built-in Telco columns, less one
    telco.write_text("base: declared\ndrop: [gender]\n")
    cfg = compose_train("experiment=churn", f"data.source={TELCO_SAMPLE}", f"data.schema={telco}")
    declared = SchemaDeclaration.from_config(cfg.data)
    assert "gender" not in declared.columns and "tenure" in declared.columns and not declared.infers


def test_identifiers_free_text_and_unusable_columns_are_listed_with_the_reason():
    rows = 60
    train = pd.DataFrame({"order_id": [f"A{i:04d}" for i in range(rows)], "note": [f"called on day {i % 55}"
                          for i in range(rows)], "plan": ["basic", "plus", "pro"] * 20, "region": ["EU"] * rows,
                          "blank": [""] * rows, "when": pd.date_range("2024-01-01", periods=rows),
                          "spend": np.linspace(0, 99.5, rows), "churned": ["yes", "no"] * 30})
    declaration = SchemaDeclaration.from_config({"target": "churned", "positive_label": "yes", "columns": "auto"})
    inferred = infer_schema(train, declaration, Inference(max_categories=50))
    reasons = {note.name: note.reason for note in inferred.left_out}
    assert list(inferred.schema.columns) == ["plan", "spend"]
    assert reasons["order_id"].startswith("identifier") and reasons["note"].startswith("free text")
    assert reasons["region"].startswith("constant") and reasons["blank"].startswith("blank")
    assert "dates" in reasons["when"]
    assert inferred.schema.id_columns == ("order_id",)


def test_a_declared_schema_wins_and_its_leaks_are_flagged_not_dropped(tmp_path):
    table = pd.read_csv(TELCO_SAMPLE)
    table["RetentionScore"] = np.where(table["Churn"] == "Yes", 0.9, 0.1)  # the answer, stored as a column
    path = tmp_path / "telco.csv"
    table.to_csv(path, index=False)
    schema = tmp_path / "schema.yaml"
    declared = TableSchema.from_config(compose_train("experiment=churn").data).as_config()
    declared["columns"]["RetentionScore"] = {"type": "numeric"}
    schema.write_text(yaml.safe_dump(declared))

    cfg = compose_train("experiment=churn", f"data.source={path}", f"data.schema={schema}", "seed=1")
    data = task_for_config(cfg).prepare(tmp_path / "run", True)
    assert "RetentionScore" in data.schema.columns
    assert any("RetentionScore" in warning and "leak" in warning for warning in data.summary["warnings"])


def test_a_rule_that_rejects_many_rows_warns_with_the_column_and_values(bank_csv, tmp_path, capsys):
    from visiontrain.commands.train import train

    schema = tmp_path / "schema.yaml"  # a category list that missed one country: a quarter of the rows
    schema.write_text("base: inferred\ncolumns:\n  Geography: {type: category, categories: [France, Spain]}\n")
    run_dir = tmp_path / "run"
    train(compose_train("experiment=churn", f"data.source={bank_csv}", "data.target=Exited", *FAST,
                        f"data.schema={schema}", f"paths.run_dir={run_dir}", f"paths.cache_dir={tmp_path}"))
    summary = json.loads((run_dir / "summary.json").read_text())
    warning = summary["data"]["report"]["warnings"][0]
    assert warning["rule"] == "unknown_category" and warning["column"] == "Geography"
    assert warning["top_values"][0][0] == "Germany" and 0.2 < warning["share"] < 0.3
    printed = capsys.readouterr().out
    report = printed[printed.rindex("visiontrain: "):]
    assert "WARNING unknown_category on Geography rejected" in report and "'Germany'" in report
    assert "**unknown_category on Geography" in (run_dir / "data_report.md").read_text()


def test_below_the_share_a_rule_only_counts(bank_csv, tmp_path):
    loaded = load_clean_table(data_config(bank_csv, cleaning={"warn_reject_share": 0.5}, id_columns=[],
                                          columns={"Geography": {"type": "category", "categories": ["France",
                                                                                                     "Spain"]}}))
    assert loaded.cleaned.report["rows_rejected"] > 0 and loaded.cleaned.report["warnings"] == []


@pytest.mark.parametrize("content, key", [
    ("columns: [Age]\n", "data.schema: columns"),
    ("base: everything\ncolumns: {Age: numeric}\n", "data.schema: base"),
    ("colums: {Age: numeric}\n", "data.schema: colums"),
    ("- not a mapping\n", "data.schema"),
    ("base: none\n", "data.schema: columns"),
])
def test_a_broken_schema_file_names_the_key(tmp_path, content, key):
    path = tmp_path / "schema.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as error:
        SchemaDeclaration.from_config({"target": "Exited", "schema": str(path), "columns": "auto"})
    assert error.value.key == key


def test_a_missing_schema_file_fails_before_training(tmp_path):
    result = run_cli("train", "experiment=churn", f"data.schema={tmp_path / 'nope.yaml'}", cwd=tmp_path)
    assert result.returncode == 2 and "data.schema" in result.stderr and "does not exist" in result.stderr


def test_an_experiment_kept_outside_the_package_runs_with_config_dir(bank_csv, tmp_path):
    """docs/configuration.md's recipe: your own experiment in your own folder, found through --config-dir."""
    experiment = tmp_path / "my_conf" / "experiment" / "bank.yaml"
    experiment.parent.mkdir(parents=True)
    experiment.write_text(f"# @package _global_\ndefaults:\n  - churn\n  - _self_\ntask_name: bank\n"
                          f"data:\n  source: {bank_csv}\n  target: Exited\n  columns: auto\n")
    result = run_cli("train", "--config-dir", str(tmp_path / "my_conf"), "experiment=bank", *FAST,
                     "hydra.run.dir=" + str(tmp_path / "run"), cwd=tmp_path,
                     env={"VISIONTRAIN_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["experiment"] == "bank" and summary["data"]["schema"]["origin"].startswith("Inferred")


def test_help_says_how_to_bring_your_own_table_and_config_files(tmp_path):
    result = run_cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--config-dir my_conf" in result.stdout and "hydra.searchpath" in result.stdout
    assert "data.schema=" in result.stdout and "data.target=" in result.stdout


def test_a_run_stopped_by_its_data_keeps_the_reports_that_explain_why(tmp_path):
    """Two churners are too few to split: the run stops, and the data report and schema are there to read."""
    table = pd.read_csv(TELCO_SAMPLE)
    churners = table.index[table["Churn"] == "Yes"]
    table = table.drop(churners[2:])
    path = tmp_path / "two_churners.csv"
    table.to_csv(path, index=False)
    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=churn", f"data.source={path}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2 and "too few to split" in result.stderr
    assert (run_dir / "data_report.md").is_file() and (run_dir / "schema.yaml").is_file()
    assert "too few to split" in (run_dir / "visiontrain.log").read_text()
