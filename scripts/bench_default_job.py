"""Time to result of the default job: `visiontrain train` from command to ONNX written, and its memory.

Runs the real command several times, each in a fresh output and cache dir (so the built-in data is
materialised every time, as on a fresh machine), and reports the median wall time, peak memory (the largest
process of the run: ru_maxrss of its children) and accuracy, plus the resident memory at the end of every
epoch from the run's history.csv: growth within the last stage (from its second epoch to the last; unfreezing
the backbone adds its gradients and optimizer state once) would be a leak.
Extra arguments are overrides, so the same script measures other jobs (e.g. hymenoptera).

    .venv/bin/python scripts/bench_default_job.py --repeats 3 --json benchmarks/default_job.json
    .venv/bin/python scripts/bench_default_job.py --repeats 1 --json benchmarks/hymenoptera_job.json \
        experiment=hymenoptera data.root=../shared/data/hymenoptera model.pretrained=false
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[1:])
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{code} {seconds} {peak_kib}")
"""


def run_once(extra: list[str], keep: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        env = {**os.environ, "VISIONTRAIN_CACHE_DIR": str(Path(scratch) / "cache"), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "visiontrain", "train", f"hydra.run.dir={run_dir}",
                   "trainer.enable_progress_bar=false", *extra]
        result = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, capture_output=True, text=True)
        code, seconds, peak_kib = result.stdout.strip().splitlines()[-1].split()
        if int(code) != 0:
            raise SystemExit(f"visiontrain train failed:\n{result.stderr[-3000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert (run_dir / "model.onnx").is_file()
        with (run_dir / "history.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        rss = [float(row["memory/rss_mib"]) for row in rows]
        # a leak is growth within a stage: unfreezing the backbone adds its gradients and optimizer state once
        final_stage = [float(r["memory/rss_mib"]) for r in rows if r["frozen_backbone"] == rows[-1]["frozen_backbone"]]
        settled = final_stage[1:] or final_stage  # from the stage's second epoch: its first allocates
        if keep is not None:  # e.g. for bench_inference.py, which needs a trained checkpoint
            shutil.copytree(run_dir, keep, dirs_exist_ok=True)
        return {"wall_seconds": float(seconds), "peak_rss_mib": int(peak_kib) / 1024,
                "rss_mib_per_epoch": rss, "frozen_per_epoch": [r["frozen_backbone"] == "1.0" for r in rows],
                "rss_growth_mib": settled[-1] - settled[0],
                "val_acc": summary["monitor"]["best"], "fit_seconds": summary["timings_seconds"]["fit"],
                "onnx_parity_passed": summary["export"]["parity"]["passed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    parser.add_argument("--keep", type=Path, default=None, help="copy the last run's dir here")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    runs = []
    for index in range(args.repeats):
        runs.append(run_once(args.overrides, args.keep if index == args.repeats - 1 else None))
        print(f"run {index + 1}/{args.repeats}: {runs[-1]}", flush=True)
    median = {key: statistics.median(r[key] for r in runs) for key in ("wall_seconds", "peak_rss_mib", "val_acc",
                                                                          "fit_seconds", "rss_growth_mib")}
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    print("\n| metric | median | min | max |\n|---|---|---|---|")
    for key, value in median.items():
        values = [r[key] for r in runs]
        print(f"| {key} | {value:.3f} | {min(values):.3f} | {max(values):.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": median, "machine": machine,
                                         "overrides": args.overrides, "when": time.strftime("%Y-%m-%d %H:%M")},
                                        indent=2))


if __name__ == "__main__":
    main()
