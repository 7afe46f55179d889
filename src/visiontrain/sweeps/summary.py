"""The table at the end of a sweep: every trial with its overrides, status, metric and run dir, best first.

A Hydra callback, so it works for grid sweeps (``-m key=a,b``), the Optuna sweeper and any launcher (local or
SLURM): it reads what each trial left in its run dir (``summary.json``, or ``failed.json`` for a trial that
crashed) once the multirun ends.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from visiontrain.sweeps.tables import CSV_FILE, MARKDOWN_FILE, csv_text, markdown_table, write_text

log = logging.getLogger("visiontrain")
FAILED_FILE = "failed.json"


def collect_trials(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per trial dir under ``sweep_dir`` (any dir holding ``.hydra/overrides.yaml``)."""
    rows = []
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        trial_dir = overrides_file.parent.parent
        overrides = [str(o) for o in OmegaConf.load(overrides_file)]
        row: dict[str, Any] = {"trial": trial_dir.name, "overrides": overrides, "status": "unknown",
                               "metric": None, "value": None, "error": "", "run_dir": str(trial_dir)}
        summary_file, failed_file = trial_dir / "summary.json", trial_dir / FAILED_FILE
        if failed_file.is_file():
            failure = json.loads(failed_file.read_text())
            row.update(status="failed", error=failure.get("error", ""))
        elif summary_file.is_file():
            summary = json.loads(summary_file.read_text())
            row.update(status="completed", metric=summary["monitor"]["metric"], value=summary["monitor"]["best"],
                       mode=summary["monitor"]["mode"])
        rows.append(row)
    return rows


def sort_trials(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Completed trials best first (by their monitor's mode), then failed and unknown ones."""
    def key(row: dict[str, Any]) -> tuple:
        value = row.get("value")
        if row["status"] != "completed" or value is None or math.isnan(value):
            return (1, 0.0, row["trial"])
        return (0, -value if row.get("mode", "max") == "max" else value, row["trial"])
    return sorted(rows, key=key)


def write_summary(sweep_dir: Path) -> dict[str, str] | None:
    rows = sort_trials(collect_trials(sweep_dir))
    if not rows:
        return None
    shared = set.intersection(*(set(row["overrides"]) for row in rows)) if len(rows) > 1 else set()
    for row in rows:  # the table shows what differs between trials; the shared overrides head it
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in shared)
    columns = ["rank", "trial", "status", "metric", "value", "overrides", "run_dir", "error"]
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank if row["status"] == "completed" else ""
    csv_path = write_text(sweep_dir / CSV_FILE, csv_text(columns, rows))
    completed = sum(row["status"] == "completed" for row in rows)
    lines = [f"# Sweep {sweep_dir.name}: {len(rows)} trials, {completed} completed, {len(rows) - completed} failed",
             "", f"Shared by every trial: `{' '.join(sorted(shared)) or '(nothing)'}`", "",
             *markdown_table(columns, rows)]
    md_path = write_text(sweep_dir / MARKDOWN_FILE, "\n".join(lines) + "\n")
    return {"csv": str(csv_path), "markdown": str(md_path), "best": rows[0] if rows[0]["status"] == "completed"
            else None}


class SweepSummary(Callback):
    """Writes sweep_summary.csv and .md into the sweep dir when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if "visiontrain_sweeper" in str(config.hydra.sweeper.get("_target_", "")):
            return  # the Optuna sweeper writes its own report, from its study
        sweep_dir = Path(str(config.hydra.sweep.dir))
        written = write_summary(sweep_dir)
        if written:
            best = written["best"]
            headline = f"best: {best['metric']} = {best['value']:.4f} ({best['overrides']})" if best else "no trial completed"
            print(f"\nsweep summary: {written['markdown']}\n  {headline}", flush=True)
