"""One copy of the table rules: training's cleansing, predict/serve and drift read every raw value alike."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from visiontrain.config.table_schema import TableSchema
from visiontrain.config.tabular import Cleaning
from visiontrain.core.table_files import read_table
from visiontrain.core.table_values import FLOAT32_MAX, category_text, model_inputs, parse_number
from visiontrain.errors import DataError
from visiontrain.monitoring.current import table_inputs
from visiontrain.tabular.cleansing import cleanse

SCHEMA = {"target": "churn", "task_type": "classification", "positive_label": "Yes",
          "columns": {"charges": {"type": "numeric"}, "paperless": {"type": "boolean"},
                      "plan": {"type": "category"}}}
# raw text as a CSV holds it: numbers, blanks, junk, infinities, values beyond float32, yes/no words
CHARGES = ["20.5", " 7 ", "", "abc", "inf", "-Infinity", "1e39", "1_000", "١٢", "nan", "0012", "+.5e1"]
PAPERLESS = ["Yes", "y", "TRUE", "1", "no", "0.0", "N", "false", "Yes", "No", "", "yes"]


def raw_table() -> pd.DataFrame:
    count = len(CHARGES)
    return pd.DataFrame({"charges": CHARGES, "paperless": PAPERLESS, "plan": ["Basic", " Pro "] * (count // 2),
                         "churn": ["Yes", "No"] * (count // 2)})


def test_training_and_deploy_read_each_value_alike():
    raw = raw_table()
    trained = cleanse(raw, TableSchema.from_config(SCHEMA), Cleaning(outliers="flag"))
    served = model_inputs({name: raw[name].tolist() for name in ("charges", "paperless", "plan")}, len(raw),
                          {"charges": "float", "paperless": "string", "plan": "string"}, yes_no={"paperless"})
    numbers = trained.frame["charges"].to_numpy()
    kept = served.kept
    # where deploy takes a row, training holds the same number (or the same missing value)
    np.testing.assert_array_equal(served.values["charges"], numbers[kept])
    assert served.values["paperless"].tolist() == [v if isinstance(v, str) else "" for v in
                                                   trained.frame["paperless"].to_numpy()[kept]]
    assert served.values["plan"].tolist() == trained.frame["plan"].to_numpy()[kept].tolist()
    # where deploy rejects a row, training has no number either: it imputes what deploy refuses to guess
    rejected = sorted(served.rejects)
    assert [CHARGES[i] for i in rejected] == ["abc", "inf", "-Infinity", "1e39", "1_000", "١٢"]
    assert all(math.isnan(numbers[i]) for i in rejected if CHARGES[i] != "1e39")
    assert served.rejects[CHARGES.index("inf")] == "charges: 'inf' is not a finite number"
    assert "outside the float32 range" in served.rejects[CHARGES.index("1e39")]
    assert served.values["charges"].tolist()[:3] == [20.5, 7.0, pytest.approx(math.nan, nan_ok=True)]


@pytest.mark.parametrize("value,number,problem", [
    ("12", 12.0, None), (12, 12.0, None), (True, 1.0, None), (None, math.nan, None), ("  ", math.nan, None),
    ("NaN", math.nan, None), (float("inf"), math.nan, "inf is not a finite number"),
    (10 ** 400, math.nan, "outside the float32 range"), ("1,5", math.nan, "'1,5' is not a number"),
])
def test_a_model_number_is_a_finite_float32(value, number, problem):
    parsed, reason = parse_number(value, FLOAT32_MAX)
    assert (math.isnan(parsed) and math.isnan(number)) or parsed == number
    assert (reason is None) if problem is None else problem in reason


def test_categories_read_typed_values_as_training_does():
    assert [category_text(v) for v in (1.0, 2.5, 3, True, None, " a ", float("nan"))] == \
        ["1", "2.5", "3", "True", "", "a", ""]
    assert [category_text(v, yes_no=True) for v in ("y", "FALSE", 1, 0.0, "maybe")] == \
        ["Yes", "No", "Yes", "No", "maybe"]


def test_drift_leaves_out_and_lists_the_rows_predict_would_reject():
    frame = pd.DataFrame({"tenure": ["1", "inf", "3", "x"], "Partner": ["yes", "No", "1", "no"]})
    reference = {"tenure": {"kind": "numeric"}, "absent": {"kind": "numeric"},
                 "Partner": {"kind": "category", "proportions": {"No": 0.5, "Yes": 0.5}}}
    inputs = table_inputs(frame, reference)
    assert set(inputs.values) == {"tenure", "Partner"}
    assert inputs.values["tenure"].tolist() == [1.0, 3.0] and inputs.values["Partner"].tolist() == ["Yes", "Yes"]
    assert inputs.rejects == {1: "tenure: 'inf' is not a finite number", 3: "tenure: 'x' is not a number"}


def test_one_file_reader_for_training_and_deploy(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id;charges\nc1;1,5\nc2;7\n")  # semicolons: read by the delimiter of its lines
    assert read_table(path).to_dict("list") == {"id": ["c1", "c2"], "charges": ["1,5", "7"]}
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(DataError, match="not a table file"):
        read_table(tmp_path / "rows.txt")
