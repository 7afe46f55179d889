"""A researcher's sweep on Optuna 5: the study lives in storage, survives `kill -9`, shares trials between
workers, prunes hopeless trials, and never writes a database password anywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import run_cli
from visiontrain.sweeps.storage import StudyStorage

FAST = ["trainer.enable_progress_bar=false", "trainer.log_every_n_steps=5", "model=choice(mlp)"]
SEARCH = ["experiment=churn", "hparams_search=churn_optuna", "optimizer.lr=tag(log, interval(0.0005, 0.01))"]


def churn_table(path: Path, rows: int = 600) -> Path:
    from visiontrain.tabular.builtin import generate_churn_table

    generate_churn_table(rows=rows, seed=1).to_csv(path, index=False)
    return path


def load(sweep_dir: Path) -> optuna.Study:
    storage = StudyStorage.choose(None, sweep_dir).open()
    (summary,) = storage.get_all_studies()
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def ended(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state.is_finished()
            and t.user_attrs.get("outcome") not in ("interrupted", "surplus")]


def sweep_command(tmp_path: Path, *extra: str) -> list[str]:
    source = churn_table(tmp_path / "churn.csv")
    return ["train", *SEARCH, f"data.source={source}", *FAST, *extra]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "visiontrain", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended first:\n{process.stdout.read()[-4000:]}")
        time.sleep(0.1)
    raise AssertionError("timed out")


def trials_or_none(sweep_dir: Path) -> list[optuna.trial.FrozenTrial]:
    if not (sweep_dir / "sweep.json").is_file():
        return []
    try:
        return load(sweep_dir).trials
    except Exception:  # noqa: BLE001 - the journal is being created
        return []


def test_a_killed_sweep_resumes_with_its_finished_trials_and_reasks_the_interrupted_one(tmp_path):
    args = sweep_command(tmp_path, "hydra.sweeper.n_trials=3", "trainer.max_epochs=2", f"paths.output_dir={tmp_path}")
    sweep = start(args, tmp_path)

    def second_trial_running() -> bool:
        trials = trials_or_none(next(iter(tmp_path.glob("*/multiruns/*")), tmp_path / "none"))
        # RUNNING from optuna's ask; only a trial whose parameters were drawn has something to re-ask
        return [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING] and bool(trials[1].params)

    wait_for(second_trial_running, sweep)
    os.killpg(sweep.pid, signal.SIGKILL)  # kill -9, mid-trial
    sweep.wait()
    (sweep_dir,) = tmp_path.glob("*/multiruns/*")
    before = load(sweep_dir).trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]

    time.sleep(1.1)  # a new timestamped sweep dir would be configured: resume=latest must find the old one
    result = run_cli(*args, "resume=latest", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    study = load(sweep_dir)
    assert [p.name for p in (tmp_path).glob("*/multiruns/*")] == [sweep_dir.name]  # no second sweep dir
    assert len(ended(study)) == 3  # exactly n_trials, counted over both runs
    first, interrupted = study.trials[0], study.trials[1]
    assert first.state == TrialState.COMPLETE and first.value == before[0].value  # kept, not run again
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs["outcome"] == "interrupted"
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == 1]
    assert retry.params == interrupted.params and retry.state == TrialState.COMPLETE
    finished_params = [tuple(sorted(t.params.items())) for t in ended(study)]
    assert len(set(finished_params)) == 3  # none ran twice
    assert "interrupted" in (sweep_dir / "sweep_summary.md").read_text()


def test_two_workers_share_one_study_and_a_killed_worker_loses_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = sweep_command(tmp_path, "hydra.sweeper.n_trials=6", "hydra.sweeper.workers=2", "trainer.max_epochs=2",
                         "hydra.sweeper.progress_s=2", f"hydra.sweep.dir={sweep_dir}")
    sweep = start(args, tmp_path)
    victim: dict[str, int] = {}

    def second_trial_of_w1_running() -> bool:
        of_w1 = [t for t in trials_or_none(sweep_dir) if t.user_attrs.get("worker") == "w1" and "pid" in t.user_attrs]
        running = [t for t in of_w1 if t.state == TrialState.RUNNING]
        if running and any(t.state == TrialState.COMPLETE for t in of_w1):
            victim.update(trial=running[0].number, pid=running[0].user_attrs["pid"])
            return True
        return False

    wait_for(second_trial_of_w1_running, sweep)
    os.kill(victim["pid"], signal.SIGKILL)  # one worker dies mid-trial; the sweep goes on with the other
    output, _ = sweep.communicate(timeout=400)
    assert sweep.returncode == 0, output[-4000:]
    study = load(sweep_dir)
    assert len(ended(study)) == 6
    killed = study.trials[victim["trial"]]
    assert killed.state == TrialState.FAIL and killed.user_attrs["outcome"] == "interrupted"
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == victim["trial"]]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["worker"] == "w0"
    assert {t.user_attrs["worker"] for t in ended(study)} == {"w0", "w1"}  # both ran trials before the kill
    run_dirs = [t.user_attrs["run_dir"] for t in ended(study) if t.state == TrialState.COMPLETE]
    assert len(set(run_dirs)) == len(run_dirs) and all((Path(d) / "summary.json").is_file() for d in run_dirs)
    assert "w1" in output and "exited with -9" in output


def test_pruned_trials_stop_early_and_are_recorded_as_pruned_not_failed(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # a pruner that stops every trial whose roc_auc is below 0.999 after its second epoch: deterministic
    pruner = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.999,n_warmup_steps:1}"
    result = run_cli(*sweep_command(tmp_path, "hydra.sweeper.n_trials=2", "trainer.max_epochs=6", pruner,
                                    f"hydra.sweep.dir={sweep_dir}"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    study = load(sweep_dir)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == [0, 1]  # reported every epoch, stopped after the second
        assert trial.value == trial.intermediate_values[1] and trial.user_attrs["epochs"] == 2
        run_dir = Path(trial.user_attrs["run_dir"])
        assert not (run_dir / "failed.json").exists() and not (run_dir / "model.onnx").exists()


def test_tabular_cross_validation_reports_each_fold(tmp_path):
    sweep_dir = tmp_path / "sweep"
    pruner = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.999}"
    result = run_cli(*sweep_command(tmp_path, "hydra.sweeper.n_trials=1", "trainer.max_epochs=2", "cv.folds=3",
                                    pruner, f"hydra.sweep.dir={sweep_dir}"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (trial,) = load(sweep_dir).trials
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [0]  # pruned after fold 0
    assert (Path(trial.user_attrs["run_dir"]) / "folds").is_dir()


def test_a_sqlite_study_holds_every_trial(tmp_path):
    database = tmp_path / "sweeps.db"
    result = run_cli(*sweep_command(tmp_path, "hydra.sweeper.n_trials=2", "trainer.max_epochs=1",
                                    f"hydra.sweeper.storage=sqlite:///{database}", "hydra.sweeper.study_name=churn-db",
                                    f"hydra.sweep.dir={tmp_path / 'sweep'}"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    study = optuna.load_study(study_name="churn-db", storage=f"sqlite:///{database}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert not (tmp_path / "sweep" / "study.journal").exists()


def test_a_database_password_never_reaches_a_file_or_the_console(tmp_path):
    password = "pw-9f3c1d-never-written"
    url = f"postgresql://sweeper:{password}@127.0.0.1:9/sweeps"  # the whole URL in the environment, as for data
    result = run_cli(*sweep_command(tmp_path, "hydra.sweeper.n_trials=1", "hydra.sweeper.storage=${oc.env:VT_PG_URL}",
                                    f"hydra.sweep.dir={tmp_path / 'sweep'}"), cwd=tmp_path, env={"VT_PG_URL": url})
    assert result.returncode == 2, result.stderr[-4000:]
    assert "hydra.sweeper.storage" in result.stderr and "cannot open postgresql://sweeper:***@127.0.0.1:9" in \
        result.stderr
    assert password not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("override, key", [("hydra.sweeper.workers=0", "hydra.sweeper.workers"),
                                           ("hydra.sweeper.pruner=sometimes", "hydra.sweeper.pruner"),
                                           ("+hydra.sweeper.n_jobs=4", "hydra.sweeper.n_jobs")])
def test_sweeper_mistakes_fail_before_any_trial_naming_the_key(tmp_path, override, key):
    result = run_cli(*sweep_command(tmp_path, override, f"hydra.sweep.dir={tmp_path / 'sweep'}"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert key in result.stderr and "fix:" in result.stderr
    assert not list((tmp_path / "sweep").glob("*/summary.json"))


def test_workers_as_submitit_jobs_join_the_same_study(tmp_path):
    """hydra/launcher=slurm makes each worker a SLURM job through submitit; submitit's local executor (the
    launcher's `submitit_local` twin) runs the same code path here, as local processes."""
    sweep_dir = tmp_path / "sweep"
    result = run_cli(*sweep_command(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.workers=2",
                                    "trainer.max_epochs=1", "hydra/launcher=submitit_local",
                                    f"hydra.sweep.dir={sweep_dir}"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    study = load(sweep_dir)
    assert len(ended(study)) == 3 and {t.state for t in ended(study)} == {TrialState.COMPLETE}
    assert {t.user_attrs["worker"] for t in study.trials} <= {"s0", "s1"}
    assert len(list((sweep_dir / "workers").glob("*/*_log.out"))) == 2  # one submitit job per worker


def test_a_time_budget_stops_the_sweep_early_and_says_so(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(*sweep_command(tmp_path, "hydra.sweeper.n_trials=50", "hydra.sweeper.timeout_min=0.05",
                                    "trainer.max_epochs=1", f"hydra.sweep.dir={sweep_dir}"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    done = ended(load(sweep_dir))
    assert 1 <= len(done) < 50
    first_start = min(t.datetime_start for t in done)
    assert all((t.datetime_start - first_start).total_seconds() < 3.0 + 2.0 for t in done)  # none after 3 s
    assert "time budget" in result.stdout + result.stderr
    assert f"{len(done)} of 50 trials ended" in result.stdout
