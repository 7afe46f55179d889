"""How workers share one study, without training anything: the ask-run-tell loop against a real journal file,
several workers at once, dead workers found by their pid or their heartbeat, CPU shares."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from visiontrain.sweeps import study_loop
from visiontrain.sweeps.space import read_space
from visiontrain.sweeps.storage import StudyStorage
from visiontrain.sweeps.workers import plan_workers, worker_command

SPACE = read_space({"model": "choice(a, b)", "x": {"float": [0.0, 1.0], "when": {"model": "a"}},
                    "y": {"int": [1, 9], "when": {"model": "b"}}})


def journal_study(tmp_path: Path, name: str = "s") -> optuna.Study:
    storage = StudyStorage.choose(None, tmp_path).open()
    return optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                               sampler=optuna.samplers.RandomSampler(seed=0))


def test_three_workers_end_exactly_n_trials_and_never_run_one_twice(tmp_path):
    journal_study(tmp_path)
    ran: list[tuple[str, int, tuple]] = []
    lock = threading.Lock()

    def work(label: str) -> None:
        study = journal_study(tmp_path)  # each worker opens the storage itself, as a process would

        def run_trial(trial, overrides):
            time.sleep(0.02)
            with lock:
                ran.append((label, trial.number, tuple(overrides)))
            return study_loop.TrialOutcome("completed", value=float(len(overrides)))

        study_loop.run_worker(study, SPACE, run_trial, n_trials=10, worker=study_loop.Worker(label, "here", 1))

    threads = [threading.Thread(target=work, args=(f"w{k}",)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    study = journal_study(tmp_path)
    counted = [t for t in study.trials if t.user_attrs.get("outcome") not in study_loop.NOT_COUNTED]
    assert len(counted) == 10 and all(t.state == TrialState.COMPLETE for t in counted)
    assert sorted(number for _, number, _ in ran) == sorted(t.number for t in counted)  # each ran once
    assert all(t.user_attrs["outcome"] == "surplus" and "overrides" not in t.user_attrs
               for t in study.trials if t not in counted)  # a surplus trial is never run
    for trial in counted:  # conditional parameters: x only for model a, y only for b
        assert set(trial.params) == ({"model", "x"} if trial.params["model"] == "a" else {"model", "y"})


def test_a_trial_whose_process_died_is_failed_and_its_parameters_reasked(tmp_path):
    study = journal_study(tmp_path)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    trial = study.ask()
    SPACE.sample(trial)
    for key, value in {"worker": "w1", "host": os.uname().nodename, "pid": dead}.items():
        study_loop.set_attr(study, trial._trial_id, key, value)
    assert study_loop.fail_dead_trials(study, grace_s=3600) == [trial.number]
    frozen = study.trials[trial.number]
    assert frozen.state == TrialState.FAIL and frozen.user_attrs["outcome"] == "interrupted"
    retry = study.ask()  # the next ask takes the enqueued parameters
    assert SPACE.sample(retry) == trial.params and retry.user_attrs["retry_of"] == trial.number
    assert study_loop.fail_dead_trials(study, grace_s=3600) == []  # the retry's own worker (this one) is alive


def test_a_silent_worker_on_another_machine_is_failed_after_the_grace_period(tmp_path):
    study = journal_study(tmp_path)
    trial = study.ask()
    SPACE.sample(trial)
    for key, value in {"worker": "far", "host": "another-machine", "pid": 1, "heartbeat": time.time() - 50}.items():
        study_loop.set_attr(study, trial._trial_id, key, value)
    assert study_loop.fail_dead_trials(study, grace_s=120) == []  # 50 s silent: still within grace
    study_loop.set_attr(study, trial._trial_id, "heartbeat", time.time() - 500)
    assert study_loop.fail_dead_trials(study, grace_s=120) == [trial.number]


def test_cpu_workers_get_disjoint_core_shares_and_single_threaded_libraries():
    cores = sorted(os.sched_getaffinity(0))
    plans = plan_workers(2, gpus=[])
    if len(cores) >= 2:
        assert set(plans[0].cores).isdisjoint(plans[1].cores)
    assert all(plan.env["OMP_NUM_THREADS"] == str(len(plan.cores)) and plan.env["CUDA_VISIBLE_DEVICES"] == ""
               for plan in plans)
    gpu_plans = plan_workers(3, gpus=["0", "1"])
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in gpu_plans] == ["0", "1", "0"]


def test_a_worker_repeats_the_sweep_command_in_the_same_sweep_dir(tmp_path):
    command = worker_command(["experiment=churn", "hparams_search=churn_optuna", "hydra.sweeper.workers=2",
                              "hydra.sweep.dir=old", "hydra.sweeper.resume=latest", "-m"],
                             sweep_dir=tmp_path, label="w1", deadline=None)
    assert command[-3:] == [f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.workers=1", "hydra.sweeper.worker=w1"]
    assert "hydra.sweep.dir=old" not in command and "hydra.sweeper.resume=latest" not in command


def test_a_grid_search_runs_every_cell_unless_pruning_is_asked_for_on_the_command_line():
    from omegaconf import OmegaConf

    from visiontrain.sweeps.optuna_sweeper import OptunaSweeper

    sweeper = OptunaSweeper(sampler={"_target_": "optuna.samplers.GridSampler"}, pruner="median")
    sweeper.config = OmegaConf.create({"hydra": {"overrides": {"hydra": []}}})
    assert isinstance(sweeper._pruner(), optuna.pruners.NopPruner)  # the search file's pruner is not applied
    sweeper.config = OmegaConf.create({"hydra": {"overrides": {"hydra": ["hydra.sweeper.pruner=median"]}}})
    assert isinstance(sweeper._pruner(), optuna.pruners.MedianPruner)
    tpe = OptunaSweeper(sampler={"_target_": "optuna.samplers.TPESampler"}, pruner="hyperband")
    tpe.config = sweeper.config
    assert isinstance(tpe._pruner(), optuna.pruners.HyperbandPruner)
