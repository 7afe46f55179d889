"""What a researcher reads when an Optuna sweep ends: every trial ranked, the best trial as a command to run
again, and Optuna's plots, written into the sweep dir (and, when W&B is on, to one report run in the sweep's
group: :mod:`.report_wandb`).

Everything comes from the study itself (the sweeper's user attrs on the study and its trials), so any worker,
or a later ``visiontrain`` call on the same storage, can write it. Files are replaced atomically: several workers
may finish at once and each writes the whole report; the last one wins, never a mix.
"""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from visiontrain.core.redaction import redact_text
from visiontrain.sweeps.plots import Plots, draw_plots
from visiontrain.sweeps.tables import CSV_FILE, MARKDOWN_FILE, csv_text, markdown_table, write_text

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("visiontrain")
BEST_COMMAND_FILE = "best_command.txt"
RESULTS_FILE = "optimization_results.yaml"  # hydra-optuna-sweeper's file: users' scripts read it
COLUMNS = ("rank", "trial", "outcome", "status", "metric", "value", "epochs", "worker", "overrides",
           "duration_s", "run_dir", "error")  # status = outcome: the grid summary's column name
SHOWN_COLUMNS = tuple(column for column in COLUMNS if column != "status")
ORDER = ("completed", "pruned", "crashed", "interrupted")  # table order; anything else (running) after
OUTCOME_OF_STATE = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "crashed", "RUNNING": "running",
                    "WAITING": "waiting"}


@dataclass(frozen=True)
class TrialRow:
    """One trial as the table shows it."""

    trial: int
    outcome: str            # completed | pruned | crashed | interrupted | surplus | running | waiting
    value: float | None
    overrides: tuple[str, ...]
    metric: str = ""
    epochs: int | None = None
    worker: str = ""
    duration_s: float | None = None
    run_dir: str = ""
    error: str = ""
    retry_of: int | None = None
    rank: int | None = None  # completed trials only, 1 = best

    def cells(self) -> dict[str, Any]:
        return {"rank": self.rank if self.rank is not None else "", "trial": self.trial, "outcome": self.outcome,
                "status": self.outcome, "metric": self.metric, "value": self.value,
                "epochs": self.epochs if self.epochs is not None else "", "worker": self.worker,
                "overrides": " ".join(self.overrides), "duration_s": self.duration_s, "run_dir": self.run_dir,
                "error": self.error}


@dataclass(frozen=True)
class SweepReport:
    """What :func:`write_report` wrote: the files, the best trial (None when none completed) and its command."""

    files: tuple[Path, ...]
    best: TrialRow | None
    best_command: str | None
    skipped_plots: Mapping[str, str]  # plot name -> why it was not drawn
    wandb_run_dir: Path | None = None  # the report's W&B run files (offline: sync from here)


def write_report(study: optuna.Study, sweep_dir: Path, *, wandb: Mapping[str, Any] | None = None,
                 group: str | None = None) -> SweepReport:
    """The sweep's summary table (csv + md), best command, optimization_results.yaml and plots in ``sweep_dir``;
    with ``wandb`` (the sweep's ``logger.wandb`` node as a dict), one W&B run in ``group`` holding them too."""
    sweep_dir = Path(sweep_dir)
    attrs = study.user_attrs
    mode = attrs.get("mode") or ("max" if study.direction.name == "MAXIMIZE" else "min")
    trials = study.get_trials(deepcopy=False)
    rows = ranked(trial_rows(trials, str(attrs.get("metric", ""))), mode)
    shown = [row for row in rows if row.outcome != "surplus"]
    best = shown[0] if shown and shown[0].outcome == "completed" else None
    command = shlex.join([*attrs.get("command", []), *best.overrides]) if best else None
    plots = draw_plots(study, sweep_dir / "plots")
    files = [write_text(sweep_dir / CSV_FILE, csv_text(COLUMNS, [row.cells() for row in shown])),
             write_text(sweep_dir / MARKDOWN_FILE, markdown(sweep_dir.name, attrs, rows, best, command, plots)),
             *plots.drawn.values()]
    best_params = {key: _plain(value) for key, value in trials[best.trial].params.items()} if best else {}
    if best is not None:
        results = {"name": "optuna", "best_params": best_params, "best_value": best.value}
        files += [write_text(sweep_dir / BEST_COMMAND_FILE, command + "\n"),
                  write_text(sweep_dir / RESULTS_FILE, yaml.safe_dump(results, sort_keys=False))]
    wandb_run_dir = None
    if wandb is not None:
        from visiontrain.sweeps.report_wandb import log_report

        wandb_run_dir = log_report(wandb, sweep_dir, group or sweep_dir.name, columns=SHOWN_COLUMNS,
                                   rows=[row.cells() for row in shown], plots=plots.drawn,
                                   best=best.cells() if best else None, best_command=command,
                                   best_params=best_params, study_attrs=attrs)
    return SweepReport(tuple(files), best, command, dict(plots.skipped), wandb_run_dir)


def trial_rows(trials: Sequence[optuna.trial.FrozenTrial], metric: str) -> list[TrialRow]:
    """Each trial as a row, from the attrs the sweeper stored on it (its state where an attr is missing)."""
    retried = {trial.user_attrs["retry_of"]: trial.number for trial in trials
               if trial.user_attrs.get("retry_of") is not None}
    rows = []
    for trial in trials:
        attrs = trial.user_attrs
        outcome = attrs.get("outcome") or OUTCOME_OF_STATE.get(trial.state.name, trial.state.name.lower())
        error = redact_text(str(attrs.get("error") or ""))
        if trial.number in retried:
            error = f"{error} (re-asked as trial {retried[trial.number]})".strip()
        value = trial.value if trial.state.name in ("COMPLETE", "PRUNED") else None
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        rows.append(TrialRow(
            trial=trial.number, outcome=outcome, value=value, metric=metric if value is not None else "",
            overrides=tuple(str(o) for o in attrs.get("overrides", [])), epochs=attrs.get("epochs"),
            worker=str(attrs.get("worker", "")), duration_s=round(duration, 1) if duration is not None else None,
            run_dir=str(attrs.get("run_dir", "")), error=error, retry_of=attrs.get("retry_of")))
    return rows


def ranked(rows: Sequence[TrialRow], mode: str) -> list[TrialRow]:
    """Completed best first (by ``mode``), then pruned (best value first), crashed, interrupted, the rest;
    completed trials get their rank."""
    sign = -1.0 if mode == "max" else 1.0

    def key(row: TrialRow) -> tuple:
        place = ORDER.index(row.outcome) if row.outcome in ORDER else len(ORDER)
        valued = row.value is not None and not math.isnan(row.value)
        return place, not valued, sign * row.value if valued else 0.0, row.trial

    ordered = sorted(rows, key=key)
    completed = [row for row in ordered if row.outcome == "completed"]
    ranks = {row.trial: rank for rank, row in enumerate(completed, start=1)}
    return [replace(row, rank=ranks.get(row.trial)) for row in ordered]


def markdown(name: str, attrs: Mapping[str, Any], rows: Sequence[TrialRow], best: TrialRow | None,
             command: str | None, plots: Plots) -> str:
    """sweep_summary.md: the counts, where the study lives, the best trial as a command, the table, the plots."""
    count = {outcome: sum(row.outcome == outcome for row in rows) for outcome in (*ORDER, "surplus")}
    ended = count["completed"] + count["pruned"] + count["crashed"]
    lines = [f"# Sweep {name}: {ended} trials ended ({count['completed']} completed, {count['pruned']} pruned, "
             f"{count['crashed']} crashed)", ""]
    if count["interrupted"]:
        retries = [str(row.trial) for row in rows if row.retry_of is not None]
        lines.append(f"- {count['interrupted']} interrupted (a worker died mid-trial), re-asked as "
                     f"trial{'s' if len(retries) != 1 else ''} {', '.join(retries) or '(none yet)'}")
    if count["surplus"]:
        lines.append(f"- {count['surplus']} surplus (never run: n_trials={attrs.get('n_trials', '?')} "
                     "already reached by other workers)")
    others = [row for row in rows if row.outcome not in (*ORDER, "surplus")]
    if others:
        lines.append(f"- {len(others)} not ended yet ({', '.join(sorted({row.outcome for row in others}))})")
    lines += [f"- Storage: {redact_text(str(attrs.get('storage', '(unknown)')))}"]
    if attrs.get("dashboard"):
        lines.append(f"- Live view: `optuna-dashboard {redact_text(str(attrs['dashboard']))}`")
    lines.append("")
    if best is None:
        lines += ["No trial completed: no best trial yet.", ""]
    else:
        lines += [f"Best {best.metric or 'value'} = {best.value:.4f} (trial {best.trial}, "
                  f"{attrs.get('mode', '')}). Run it again:", "", "```bash", command or "", "```", ""]
    table = [row.cells() for row in rows if row.outcome != "surplus"]
    lines += [*markdown_table(SHOWN_COLUMNS, table, {"duration_s": "{:.1f}"}), "", "## Plots", ""]
    lines += [f"![{plot.replace('_', ' ')}](plots/{path.name})\n" for plot, path in plots.drawn.items()]
    lines += [f"- {plot}: skipped ({reason})" for plot, reason in plots.skipped.items()]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    """A param value YAML writes plainly (numpy scalars as Python numbers)."""
    return value.item() if hasattr(value, "item") else value

