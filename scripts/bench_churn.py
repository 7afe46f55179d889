"""Churn models compared on the same folds: K-fold stratified CV of every model on a real table.

Runs the real `visiontrain train experiment=churn cv.folds=K model=<m>` for each model and reports the mean and
standard deviation over folds of each metric, with the median fit time per fold.

    .venv/bin/python scripts/bench_churn.py --data ../shared/data/telco-churn.csv --json benchmarks/churn.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("logistic_regression", "gradient_boosting", "hist_gradient_boosting", "mlp")
METRICS = ("roc_auc", "pr_auc", "acc", "precision", "recall", "f1")


def run_model(model: str, data: Path, folds: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        command = [sys.executable, "-m", "visiontrain", "train", "experiment=churn", f"data.source={data}",
                   f"cv.folds={folds}", f"model={model}", f"hydra.run.dir={run_dir}",
                   "trainer.enable_progress_bar=false", *extra]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{model} failed:\n{result.stderr[-3000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
    cv = summary["cross_validation"]
    return {"model": model, "folds": cv["folds"], "mean": cv["mean"], "std": cv["std"],
            "fit_seconds_per_fold_median": statistics.median(f["fit_seconds"] for f in cv["per_fold"]),
            "wall_seconds": round(wall, 1), "rows_in": summary["data"]["rows_in"],
            "rows_kept": summary["data"]["rows_kept"],
            "final_test_roc_auc": summary["evaluation"]["test"]["metrics"]["test/roc_auc"],
            "onnx_parity": summary["export"]["parity"]}


def markdown(results: list[dict]) -> str:
    header = "| model | " + " | ".join(METRICS) + " | fit s / fold | wall s (K folds + final + export) |"
    lines = [header, "|---" * (len(METRICS) + 3) + "|"]
    for r in results:
        cells = [f"{r['mean'][m]:.3f} ± {r['std'][m]:.3f}" for m in METRICS]
        lines.append(f"| {r['model']} | " + " | ".join(cells) +
                     f" | {r['fit_seconds_per_fold_median']:.2f} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
                        / "telco-churn.csv")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    results = []
    for model in args.models:
        results.append(run_model(model, args.data.resolve(), args.folds, args.overrides))
        print(f"{model}: roc_auc {results[-1]['mean']['roc_auc']:.4f} ± {results[-1]['std']['roc_auc']:.4f}",
              flush=True)
    table = markdown(results)
    print("\n" + table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "table": table, "data": str(args.data),
                                         "folds": args.folds, "overrides": args.overrides,
                                         "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                     "python": platform.python_version()},
                                         "when": time.strftime("%Y-%m-%d %H:%M")}, indent=2))


if __name__ == "__main__":
    main()
