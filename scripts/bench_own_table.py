"""A table nobody wrote a schema for: the inferred schema against a hand-fitted scikit-learn baseline.

Trains `experiment=churn data.source=<table> data.target=<column>` with the schema inferred, then fits the same
scikit-learn model by hand (every column but the ones a person would drop, one-hot encoded with pandas) on
exactly the run's training rows and scores both on the run's test rows. On a table that also has a declared
schema (Telco), ``--declared`` runs it declared too. Reports test ROC-AUC, the seconds the data step took, and
what inference left out.

    .venv/bin/python scripts/bench_own_table.py --bank 10000 --target Exited \
        --drop RowNumber CustomerId Surname Naive_Bayes_Classifier_Exited_1 --json benchmarks/own_table_bank.json
    .venv/bin/python scripts/bench_own_table.py --data ../shared/data/telco-churn.csv --target Churn \
        --positive Yes --drop customerID --declared --json benchmarks/own_table_telco.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import compose_train, machine, markdown_table, write_results  # noqa: E402


def run(data: Path, target: str, positive: str | None, model: str, *extra: str) -> dict:
    from visiontrain.commands.train import train

    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        overrides = ["experiment=churn", f"data.source={data}", f"data.target={target}", f"model={model}",
                     f"paths.run_dir={run_dir}", f"paths.cache_dir={scratch}", "trainer.enable_progress_bar=false",
                     *([f"data.positive_label={positive}"] if positive else []), *extra]
        train(compose_train(*overrides))
        return json.loads((run_dir / "summary.json").read_text())


def hand_fitted(data: Path, target: str, positive: str | None, drop: list[str], seed: int) -> float:
    """The baseline a person writes: drop ids, one-hot the text columns, fit on the run's training rows."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from visiontrain.tabular.loading import load_clean_table

    cfg = compose_train("experiment=churn", f"data.source={data}", f"data.target={target}", "data.columns=auto",
                        *([f"data.positive_label={positive}"] if positive else []))
    parts = load_clean_table(cfg.data, seed).parts
    table = pd.read_csv(data)
    labels = table.pop(target).astype(str).str.strip()
    y = (labels == (positive or "1")).astype(int).to_numpy() if positive or set(labels) <= {"0", "1"} else \
        (labels.str.lower() == "yes").astype(int).to_numpy()
    features = pd.get_dummies(table.drop(columns=drop).apply(
        lambda column: pd.to_numeric(column, errors="coerce") if pd.to_numeric(column, errors="coerce").notna()
        .mean() > 0.98 else column), dtype=float).fillna(0.0)
    model = GradientBoostingClassifier(n_estimators=200, learning_rate=0.05, max_depth=3, subsample=0.8,
                                       random_state=0)
    train, test = parts == "train", parts == "test"
    model.fit(features[train], y[train])
    return float(roc_auc_score(y[test], model.predict_proba(features[test])[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="the table (or --bank)")
    parser.add_argument("--bank", type=int, default=0, help="generate the tests' bank-shaped table (with a leak "
                        "column) of this many rows instead")
    parser.add_argument("--target", required=True)
    parser.add_argument("--positive", default=None)
    parser.add_argument("--drop", nargs="*", default=[], help="columns the hand-fitted baseline drops")
    parser.add_argument("--declared", action="store_true", help="also run with the declared (Telco) schema")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.bank:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from bank_table import bank_table

        args.data = Path(tempfile.mkdtemp()) / "bank.csv"
        bank_table(args.bank, seed=3, leak=True).to_csv(args.data, index=False)
    if args.data is None:
        parser.error("give --data <table> or --bank <rows>")
    rows = []
    inferred = run(args.data, args.target, args.positive, "gradient_boosting", "data.columns=auto")
    rows.append(("visiontrain, schema inferred", inferred))
    if args.declared:
        rows.append(("visiontrain, schema declared", run(args.data, args.target, args.positive, "gradient_boosting")))
    baseline = hand_fitted(args.data, args.target, args.positive, args.drop, 42)
    results = {"machine": machine(), "table": str(args.data), "rows": inferred["data"]["rows_in"],
               "hand_fitted_gradient_boosting_test_roc_auc": round(baseline, 4),
               "left_out": inferred["data"]["schema"]["left_out"],
               "runs": {name: {"test_roc_auc": round(s["evaluation"]["test"]["metrics"]["test/roc_auc"], 4),
                               "data_seconds": s["timings_seconds"]["data"],
                               "features": len(s["data"]["report"]["columns"]),
                               "parity_max_abs_diff": s["export"]["parity"]["max_abs_diff"]} for name, s in rows}}
    table = [(name, r["test_roc_auc"], r["features"], r["data_seconds"], f"{r['parity_max_abs_diff']:.1e}")
             for name, r in results["runs"].items()]
    table.append(("hand-fitted sklearn GradientBoosting, same rows", round(baseline, 4), "", "", ""))
    print(markdown_table(("run (gradient_boosting)", "test ROC-AUC", "features", "data s", "ONNX parity"), table))
    print("left out:", "; ".join(f"{k}: {v}" for k, v in results["left_out"].items()) or "none")
    write_results(args.json, " ".join(sys.argv), results)


if __name__ == "__main__":
    main()
