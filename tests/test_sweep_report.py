"""Researcher's story: an Optuna sweep ends and its dir says what happened. Every trial ranked (completed best
first, then pruned, crashed, interrupted), the best trial as a command to paste, optimization_results.yaml for
old scripts, Optuna's plots (or why a plot is missing), and one W&B report run in the sweep's group.

The studies are real Optuna studies in a journal file, written the way the sweeper writes them (ask, report,
tell, user attrs), including a parameter searched for one model only.
"""

from __future__ import annotations

import csv
import os
import shlex
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import offline_env
from visiontrain.sweeps.report import write_report
from wandb_records import read_records

COMMAND = ["visiontrain", "train", "experiment=churn", "data.source=my data.csv"]
MODELS = ["mlp", "logistic_regression", "hist_gradient_boosting"]
PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")


def journal_study(path: Path, n_trials: int = 6) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="churn", storage=storage, direction="maximize")
    attrs = {"metric": "val/roc_auc", "mode": "max", "command": COMMAND, "n_trials": n_trials,
             "storage": f"journal file {path}", "dashboard": str(path)}
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return study


def run_trial(study: optuna.Study, model: str, lr: float, curve: list[float], outcome: str, *,
              dropout: float | None = None, error: str = "", retry_of: int | None = None, worker: str = "w1@node1",
              tell: TrialState | None = None) -> optuna.Trial:
    """One trial as a worker runs it: sample (dropout for the MLP only), report each epoch, record, tell.
    The values are enqueued, as the sweeper re-asks an interrupted trial's."""
    study.enqueue_trial({"model": model, "optimizer.lr": lr, **({"model.dropout": dropout} if dropout else {})})
    trial = study.ask()
    overrides = [f"model={trial.suggest_categorical('model', MODELS)}",
                 f"optimizer.lr={trial.suggest_float('optimizer.lr', 1e-4, 1e-1, log=True)}"]
    if model == "mlp":
        overrides.append(f"model.dropout={trial.suggest_float('model.dropout', 0.0, 0.5)}")
    for epoch, value in enumerate(curve):
        trial.report(value, epoch)
    attrs = {"worker": worker, "host": worker.split("@")[1], "pid": 4242, "run_dir": f"/sweeps/s1/{trial.number}",
             "overrides": overrides, "outcome": outcome, "epochs": len(curve)}
    if error:
        attrs["error"] = error
    if retry_of is not None:
        attrs["retry_of"] = retry_of
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if tell is not None:
        study.tell(trial, curve[-1] if tell == TrialState.COMPLETE else None, state=tell)
    return trial


@pytest.fixture
def finished_sweep(tmp_path) -> tuple[optuna.Study, Path]:
    """Six trials ended: 3 completed, 2 pruned, 1 crashed; plus one interrupted (re-asked) and one surplus."""
    study = journal_study(tmp_path / "study.journal")
    done, pruned, failed = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL
    run_trial(study, "mlp", 0.001, [0.70, 0.78, 0.81], "completed", dropout=0.2, tell=done)             # 0
    run_trial(study, "logistic_regression", 0.003, [0.84], "completed", tell=done)                      # 1
    run_trial(study, "mlp", 0.0005, [0.60, 0.62], "pruned", dropout=0.4, tell=pruned)                   # 2
    run_trial(study, "mlp", 0.02, [], "crashed", dropout=0.1, error="ValueError: loss is NaN", tell=failed)  # 3
    run_trial(study, "mlp", 0.002, [0.75], "interrupted", dropout=0.3, worker="w2@node2",
              error="worker w2@node2 stopped mid-trial (SIGKILL)", tell=failed)                         # 4
    run_trial(study, "mlp", 0.002, [0.76, 0.83], "completed", dropout=0.3, retry_of=4, tell=done)       # 5
    run_trial(study, "logistic_regression", 0.01, [0.66], "pruned", tell=pruned)                        # 6
    run_trial(study, "mlp", 0.004, [], "surplus", dropout=0.1, tell=failed)                             # 7
    return study, tmp_path / "sweep"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_table_ranks_completed_then_pruned_then_crashed_then_interrupted(finished_sweep):
    study, sweep_dir = finished_sweep
    report = write_report(study, sweep_dir)
    rows = read_csv(sweep_dir / "sweep_summary.csv")
    assert [(row["trial"], row["outcome"]) for row in rows] == [
        ("1", "completed"), ("5", "completed"), ("0", "completed"), ("6", "pruned"), ("2", "pruned"),
        ("3", "crashed"), ("4", "interrupted")]  # surplus trial 7 never ran: not a row
    assert list(rows[0]) == ["rank", "trial", "outcome", "status", "metric", "value", "epochs", "worker",
                             "overrides", "duration_s", "run_dir", "error"]
    assert [row["status"] for row in rows] == [row["outcome"] for row in rows]
    assert [row["rank"] for row in rows] == ["1", "2", "3", "", "", "", ""]
    assert float(rows[0]["value"]) == 0.84 and float(rows[4]["value"]) == 0.62  # pruned: its last report
    assert rows[3]["metric"] == "val/roc_auc" and rows[5]["value"] == ""
    assert rows[1]["overrides"] == "model=mlp optimizer.lr=0.002 model.dropout=0.3" and rows[1]["epochs"] == "2"
    assert rows[5]["error"] == "ValueError: loss is NaN" and rows[5]["run_dir"] == "/sweeps/s1/3"
    assert "re-asked as trial 5" in rows[6]["error"] and rows[6]["worker"] == "w2@node2"
    assert float(rows[0]["duration_s"]) >= 0
    assert report.best is not None and report.best.trial == 1


def test_the_markdown_says_what_ended_where_the_study_lives_and_how_to_rerun_the_best(finished_sweep):
    study, sweep_dir = finished_sweep
    report = write_report(study, sweep_dir)
    text = (sweep_dir / "sweep_summary.md").read_text()
    assert text.startswith("# Sweep sweep: 6 trials ended (3 completed, 2 pruned, 1 crashed)\n")
    assert "1 interrupted (a worker died mid-trial), re-asked as trial 5" in text
    assert "1 surplus (never run: n_trials=6 already reached" in text
    assert f"Storage: journal file {sweep_dir.parent / 'study.journal'}" in text
    assert f"Live view: `optuna-dashboard {sweep_dir.parent / 'study.journal'}`" in text
    best = shlex.join([*COMMAND, "model=logistic_regression", "optimizer.lr=0.003"])
    assert report.best_command == best and f"```bash\n{best}\n```" in text
    assert "'data.source=my data.csv'" in best  # pastes into a shell as one argument
    assert "\n| 1 | 1 | completed |" in text
    assert "![optimization history](plots/optimization_history.png)" in text


def test_the_best_trial_is_a_command_and_optimization_results_yaml_as_before(finished_sweep):
    study, sweep_dir = finished_sweep
    write_report(study, sweep_dir)
    command = (sweep_dir / "best_command.txt").read_text().strip()
    assert shlex.split(command) == [*COMMAND, "model=logistic_regression", "optimizer.lr=0.003"]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results == {"name": "optuna", "best_params": {"model": "logistic_regression", "optimizer.lr": 0.003},
                       "best_value": 0.84}


def test_four_plots_as_pngs_even_with_a_parameter_searched_for_one_model_only(finished_sweep):
    study, sweep_dir = finished_sweep
    report = write_report(study, sweep_dir)
    assert report.skipped_plots == {}
    for name in PLOTS:
        path = sweep_dir / "plots" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG, name
        assert path in report.files
    assert not list(sweep_dir.rglob("*.partial"))  # every file renamed into place


def test_a_sweep_with_one_completed_trial_says_why_each_plot_is_missing(tmp_path):
    study = journal_study(tmp_path / "study.journal", n_trials=2)
    run_trial(study, "mlp", 0.001, [0.7], "completed", tell=TrialState.COMPLETE)
    study.tell(study.ask(), state=TrialState.FAIL)  # no attrs at all: read from its state
    sweep_dir = tmp_path / "sweep"
    report = write_report(study, sweep_dir)
    assert set(report.skipped_plots) == {"optimization_history", "param_importances", "parallel_coordinate"}
    assert report.skipped_plots["param_importances"] == "needs 2 completed trials, the study has 1"
    assert (sweep_dir / "plots" / "intermediate_values.png").read_bytes()[:8] == PNG
    text = (sweep_dir / "sweep_summary.md").read_text()
    assert "- parallel_coordinate: skipped (needs 2 completed trials, the study has 1)" in text
    assert [row["outcome"] for row in read_csv(sweep_dir / "sweep_summary.csv")] == ["completed", "crashed"]


def test_importances_are_skipped_when_no_parameter_varied_and_nothing_completed_means_no_best(tmp_path):
    study = journal_study(tmp_path / "study.journal")
    for value in (0.5, 0.6):  # the same values twice: nothing to explain the scores by
        run_trial(study, "mlp", 0.001, [], "completed", dropout=0.2)
        study.tell(study.get_trials(states=(TrialState.RUNNING,))[0].number, value)
    report = write_report(study, tmp_path / "same")
    assert report.skipped_plots["param_importances"] == \
        "no parameter that every completed trial has took more than one value"
    assert report.skipped_plots["intermediate_values"] == "no trial reported intermediate values"

    crashed = journal_study(tmp_path / "crashed.journal")
    run_trial(crashed, "mlp", 0.02, [], "crashed", error="ValueError: bad lr", tell=TrialState.FAIL)
    report = write_report(crashed, tmp_path / "none")
    assert report.best is None and report.best_command is None
    assert not (tmp_path / "none" / "best_command.txt").exists()
    assert "No trial completed" in (tmp_path / "none" / "sweep_summary.md").read_text()


def test_fifty_trials_are_reported_in_seconds(tmp_path):
    study = journal_study(tmp_path / "study.journal", n_trials=50)
    study.sampler = optuna.samplers.RandomSampler(seed=0)
    for _ in range(50):
        trial = study.ask()
        model = trial.suggest_categorical("model", MODELS)
        lr = trial.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
        trial.suggest_int("data.batch_size", 64, 256, step=64)
        if model == "mlp":
            trial.suggest_float("model.dropout", 0.0, 0.5)
        for epoch in range(5):
            trial.report(0.6 + 0.3 * (1 - lr * 50) * (epoch + 1) / 5, epoch)
        trial.set_user_attr("overrides", [f"model={model}", f"optimizer.lr={lr}"])
        study.tell(trial, 0.6 + 0.3 * (1 - lr * 50), state=TrialState.COMPLETE)
    started = time.perf_counter()
    report = write_report(study, tmp_path / "sweep")
    seconds = time.perf_counter() - started
    assert report.skipped_plots == {} and seconds < 10, f"{seconds:.1f} s"


@pytest.fixture(autouse=True)
def own_wandb_service():
    """The report's W&B run is made in this test process: its W&B service is shut down after each test, and the
    WANDB_SERVICE variable wandb sets is removed, so no later subprocess run of this worker attaches to it (a run
    killed there would stay "in use" in a service that outlives it)."""
    yield
    import wandb

    wandb.teardown()
    os.environ.pop("WANDB_SERVICE", None)


def test_the_report_goes_to_one_offline_wandb_run_in_the_sweeps_group(finished_sweep, tmp_path, monkeypatch):
    for key, value in offline_env(tmp_path / "home").items():  # no key, no netrc: W&B goes offline by itself
        monkeypatch.delenv(key, raising=False) if value is None else monkeypatch.setenv(key, value)
    study, sweep_dir = finished_sweep
    report = write_report(study, sweep_dir, wandb={"project": "visiontrain", "mode": "auto", "tags": ["churn"]},
                          group="churn-sweep")
    assert report.wandb_run_dir is not None and report.wandb_run_dir.parent == sweep_dir / "wandb"
    assert report.wandb_run_dir.name.startswith("offline-run-")
    import wandb

    wandb.teardown()  # the in-process W&B service may still be writing the run's file: as when a sweep exits
    records = read_records(sweep_dir)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.run_group, run.job_type, run.display_name) == ("churn-sweep", "sweep", "churn-sweep-report")
    logged = {tuple(item.nested_key) or (item.key,): item.value_json for r in records
              if r.WhichOneof("record_type") == "history" for item in r.history.item}
    assert logged["trials", "_type"] == '"table-file"' and logged["trials", "nrows"] == "7"
    assert all(logged[f"plots/{name}", "_type"] == '"image-file"' for name in PLOTS)
    summary = {item.key: item.value_json for r in records if r.WhichOneof("record_type") == "summary"
               for item in r.summary.update if item.key}
    assert summary["best_value"] == "0.84" and "logistic_regression" in summary["best_params"]
    assert "'data.source=my data.csv' model=logistic_regression" in summary["best_command"]
    assert any(r.WhichOneof("record_type") == "exit" and r.exit.exit_code == 0 for r in records)
    assert len(list((sweep_dir / "wandb").glob("offline-run-*/files/media/images/plots/*.png"))) == 4


def test_a_bad_api_key_sends_the_report_offline_and_reaches_no_file(finished_sweep, tmp_path, monkeypatch, caplog):
    secret = "not-a-key-but-secret-7f3a"
    for key, value in offline_env(tmp_path / "home", WANDB_API_KEY=secret).items():
        monkeypatch.delenv(key, raising=False) if value is None else monkeypatch.setenv(key, value)
    study, sweep_dir = finished_sweep
    with caplog.at_level("WARNING", logger="visiontrain"):
        report = write_report(study, sweep_dir, wandb={"project": "visiontrain", "mode": "auto"}, group="g")
    assert report.wandb_run_dir is not None and report.wandb_run_dir.name.startswith("offline-run-")
    warned = [r.getMessage() for r in caplog.records if "logging offline instead" in r.getMessage()]
    assert len(warned) == 1 and "WANDB_API_KEY is not a W&B API key" in warned[0] and secret not in warned[0]
    assert not [path for path in sweep_dir.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
