"""visiontrain's Hydra sweeper on current Optuna: a study in storage, workers that join it, pruning, a report.

``visiontrain train -m ... hparams_search=<name>`` (or ``hydra/sweeper=optuna``) runs it. Hydra still composes
each trial's config and runs it (its basic launcher, in the worker's process), so a trial is exactly the run
``visiontrain train <its overrides>`` would make. What this adds to Hydra's loop:

- the study always lives in storage (:mod:`.storage`): a journal file in the sweep dir unless a database URL is
  given, so a killed sweep resumes (``resume=latest``) and other processes can join;
- ``workers=N`` starts N processes on this machine (one GPU, or a share of the cores, each), or N SLURM jobs
  with ``hydra/launcher=slurm`` (:mod:`.workers`); each runs the ask-run-tell loop (:mod:`.study_loop`);
- trials report the monitored metric each epoch (or fold) and stop when the pruner says so;
- the report at the end: summary table, the best trial as a command, plots, W&B (:mod:`.report`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from visiontrain.config.targets import instantiate_trusted
from visiontrain.core.redaction import redact_text
from visiontrain.core.exits import exit_with
from visiontrain.errors import ConfigError, TrialPruned, VisiontrainError
from visiontrain.sweeps import study_loop, workers
from visiontrain.sweeps.checks import pruner_node
from visiontrain.sweeps.space import SearchSpace, read_space
from visiontrain.sweeps.storage import StudyStorage

log = logging.getLogger("visiontrain")
SWEEP_FILE = "sweep.json"  # marks a sweep dir (resume=latest finds it) and names its study
OURS = "visiontrain_sweeper"  # how the grid-sweep summary callback knows to leave the report to this sweeper


class OptunaSweeper(Sweeper):
    """The settings are ``hydra.sweeper.*`` (conf/hydra/sweeper/optuna.yaml documents each)."""

    def __init__(self, direction: str = "maximize", study_name: str | None = None, storage: str | None = None,
                 n_trials: int = 20, timeout_min: float | None = None, workers: int = 1, resume: str | None = None,
                 sampler: Any = None, pruner: Any = None, params: Any = None, heartbeat_s: float = 30.0,
                 grace_s: float = 120.0, progress_s: float = 30.0, worker: str | None = None,
                 deadline: float | None = None, **unknown: Any) -> None:
        if unknown:
            key = sorted(unknown)[0]
            fix = "hydra.sweeper.workers=N" if key == "n_jobs" else "see conf/hydra/sweeper/optuna.yaml"
            raise ConfigError(f"hydra.sweeper.{key}", "is not a setting of visiontrain's Optuna sweeper", fix)
        self.direction, self.study_name, self.storage_url = direction, study_name, storage
        self.n_trials, self.timeout_min, self.workers, self.resume = int(n_trials), timeout_min, int(workers), resume
        self.sampler_cfg, self.pruner_cfg, self.params = sampler, pruner, params
        self.heartbeat_s, self.grace_s, self.progress_s = float(heartbeat_s), float(grace_s), float(progress_s)
        self.worker_label, self.deadline = worker, deadline
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    # ------------------------------------------------------------------ the sweep
    def sweep(self, arguments: list[str]) -> Any:
        """Run the sweep; a mistake it finds (storage, resume=, the space) ends it with one line, as the CLI's
        own checks do, not with Hydra's traceback."""
        try:
            return self._sweep(arguments)
        except VisiontrainError as error:
            exit_with(error)

    def _sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = parser.parse_overrides(arguments)
        self.fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        space = read_space(OmegaConf.to_container(self.params, resolve=False) if OmegaConf.is_config(self.params)
                           else self.params, [o for o in parsed if o.is_sweep_override()])
        sweep_dir = self._sweep_dir()
        for config in (self.config, getattr(self.launcher, "config", None)):
            if config is not None:  # each trial is composed again from the hydra overrides: the dir goes there too
                with open_dict(config):
                    config.hydra.sweep.dir = str(sweep_dir)
                    given = OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False)  # never resolve
                    kept = [o for o in given if not str(o).startswith("hydra.sweep.dir=")]  # a secret in one
                    config.hydra.overrides.hydra = [*kept, f"hydra.sweep.dir={sweep_dir}"]
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if self.worker_label is None:
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        storage = StudyStorage.choose(self.storage_url, sweep_dir)
        study = self._open_study(storage, sweep_dir, space)
        deadline = self.deadline or (time.time() + 60 * self.timeout_min if self.timeout_min else None)

        if self.worker_label is not None:  # a worker of a sweep started elsewhere: the loop, no report
            self._work(study, space, deadline)
            return []
        study_loop.fail_dead_trials(study, self.grace_s)  # a resumed sweep: before any worker asks
        launcher_cfg = OmegaConf.select(self.config, "hydra.launcher") or {}
        if "submitit" in str(launcher_cfg.get("_target_", "")):
            self._submit(study, sweep_dir, deadline, OmegaConf.to_container(launcher_cfg, resolve=True))
        elif self.workers > 1:
            self._spawn(study, space, sweep_dir, deadline)
        else:
            self._work(study, space, deadline)
        self._report(study, sweep_dir, storage)
        return []

    def _work(self, study: Any, space: SearchSpace, deadline: float | None) -> None:
        worker = study_loop.Worker.here(self.worker_label)
        study_loop.run_worker(study, space, self._run_trial, n_trials=self.n_trials, worker=worker,
                              deadline=deadline, heartbeat_s=self.heartbeat_s, grace_s=self.grace_s)

    def _spawn(self, study: Any, space: SearchSpace, sweep_dir: Path, deadline: float | None) -> None:
        """Workers 1..N-1 as processes of their own; this process is worker 0 (no idle parent, one start-up
        fewer), then waits for the others."""
        local = workers.LocalWorkers(sweep_dir / "workers")
        own, *others = workers.plan_workers(self.workers, workers.visible_gpus())
        for plan in others:
            local.start(plan, workers.worker_command(sys.argv[1:], sweep_dir=sweep_dir, label=plan.label,
                                                     deadline=deadline))
        workers.pin_this_process(own)
        self.worker_label = own.label
        try:
            self._work(study, space, deadline)
        except BaseException:
            local.stop()
            raise
        codes = local.wait(lambda: self._progress(study), every_s=self.progress_s)
        for label, code in codes.items():
            if code != 0:
                log.warning("sweep: worker %s exited with %d (its log: %s); its running trial, if any, is re-asked "
                            "by the others or on resume", label, code, sweep_dir / "workers" / f"{label}.log")
        self._work(study, space, deadline)  # a worker that died after this one stopped asking: run what it left

    def _submit(self, study: Any, sweep_dir: Path, deadline: float | None, launcher: dict[str, Any]) -> None:
        commands = [(f"s{k}", workers.worker_command(sys.argv[1:], sweep_dir=sweep_dir, label=f"s{k}",
                                                      deadline=deadline, launcher="basic"))
                    for k in range(self.workers)]
        jobs = workers.submit_workers(launcher, commands, sweep_dir / "workers")
        shown = time.monotonic()
        while not all(job.done() for job in jobs):
            time.sleep(1.0)
            if time.monotonic() - shown >= self.progress_s:
                self._progress(study)
                shown = time.monotonic()
        for (label, _), job in zip(commands, jobs):
            try:
                code = job.result()
            except Exception as error:  # noqa: BLE001 - a job the cluster killed: the study still holds its trials
                code = f"failed ({type(error).__name__})"
            if code != 0:
                log.warning("sweep: worker %s (job %s) ended with %s", label, job.job_id, code)

    # ------------------------------------------------------------------ one trial
    def _run_trial(self, trial: Any, overrides: list[str]) -> study_loop.TrialOutcome:
        job = [*self.fixed, *overrides]
        try:
            self.validate_batch_is_legal([job])
        except Exception as error:  # noqa: BLE001 - a sampled value the config refuses: this trial fails
            return study_loop.TrialOutcome("crashed", error=redact_text(f"{type(error).__name__}: {error}"))
        result = self.launcher.launch([job], initial_job_idx=trial.number)[0]
        run_dir = OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir") if result.hydra_cfg else None
        if run_dir:
            study_loop.set_attr(trial.study, trial._trial_id, study_loop.RUN_DIR, str(run_dir))
        value = result._return_value
        if result.status == JobStatus.COMPLETED:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return study_loop.TrialOutcome("crashed", error="the run returned no value of the monitored metric")
            return study_loop.TrialOutcome("completed", value=float(value))
        if isinstance(value, TrialPruned):
            return study_loop.TrialOutcome("pruned", value=value.value)
        return study_loop.TrialOutcome("crashed", error=redact_text(f"{type(value).__name__}: {value}"))

    # ------------------------------------------------------------------ the study
    def _sweep_dir(self) -> Path:
        """The sweep dir: the configured one, or with ``resume=`` the sweep to continue."""
        configured = Path(str(self.config.hydra.sweep.dir)).expanduser()
        if self.worker_label is not None or self.resume in (None, "", "null"):
            return configured
        if self.resume == "latest":
            if (configured / SWEEP_FILE).is_file():
                return configured
            root = configured.parent
            found = sorted((d for d in root.glob("*") if (d / SWEEP_FILE).is_file()),
                           key=lambda d: (d / SWEEP_FILE).stat().st_mtime) if root.is_dir() else []
            if not found:
                raise ConfigError("resume", f"no sweep to resume under {root}",
                                  "start the sweep without resume=, or resume=<the sweep dir>")
            return found[-1]
        named = Path(str(self.resume)).expanduser()
        for candidate in (named, configured.parent / str(self.resume)):
            if (candidate / SWEEP_FILE).is_file():
                return candidate
        raise ConfigError("resume", f"{self.resume!r} is not a sweep dir (no {SWEEP_FILE} in it, nor under "
                          f"{configured.parent})", "resume=latest, or resume=<path of the sweep dir>")

    def _open_study(self, storage: StudyStorage, sweep_dir: Path, space: SearchSpace) -> Any:
        import optuna

        marker = sweep_dir / SWEEP_FILE
        stored = json.loads(marker.read_text()) if marker.is_file() else {}
        task_name = str(OmegaConf.select(self.config, "task_name", default="sweep"))
        name = self.study_name or stored.get("study_name") or f"{task_name}-{sweep_dir.name}"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(storage=storage.open(), study_name=name, direction=self.direction,
                                    sampler=self._sampler(space), pruner=self._pruner(), load_if_exists=True)
        if study.trials:  # joined or resumed: draw afresh (Study.sampler is a public attribute)
            study.sampler = self._sampler(space, len(study.trials))
        if self.worker_label is None:
            monitor = OmegaConf.select(self.config, "monitor") or {}
            command = ["visiontrain", "train", *(o for o in self.fixed if not o.startswith(("hparams_search=",
                                                                                          "resume=")))]
            for key, value in {"metric": monitor.get("metric"), "mode": monitor.get("mode"), "command": command,
                               "n_trials": self.n_trials, "storage": storage.shown,
                               "dashboard": storage.dashboard_argument,
                               "space": [p.describe() for p in space.params]}.items():
                study.set_user_attr(key, value)
            resumed = bool(stored)
            marker.write_text(json.dumps({"study_name": name, "storage": storage.shown, "n_trials": self.n_trials,
                                          "command": command, "resumed": resumed}, indent=2))
            counts = study_loop.tally(study)
            log.info("sweep: study %r in %s: %s%d of %d trials ended; live view: optuna-dashboard %s", name,
                     storage.shown, "resumed, " if resumed else "", counts.ended, self.n_trials,
                     storage.dashboard_argument)
        return study

    def _grid(self) -> bool:
        sampler = self.sampler_cfg.get("_target_", "") if self.sampler_cfg else ""
        return str(sampler).endswith("GridSampler")

    def _index(self) -> int:
        digits = "".join(c for c in (self.worker_label or "") if c.isdigit())
        return int(digits) if digits else 0

    def _sampler(self, space: SearchSpace, trials_so_far: int = 0) -> Any:
        """The configured sampler; its seed made distinct per worker and per (re)start, so that two workers, or a
        resumed sweep, never draw the same random trials again, while a fresh one-worker sweep keeps ``seed``."""
        import numpy as np

        node = OmegaConf.to_container(self.sampler_cfg, resolve=True) if OmegaConf.is_config(self.sampler_cfg) \
            else dict(self.sampler_cfg or {})
        node = node or {"_target_": "optuna.samplers.TPESampler", "seed": None}
        index = self._index()
        if node.get("seed") is not None and (index or trials_so_far):
            node["seed"] = int(np.random.SeedSequence([int(node["seed"]), index, trials_so_far]).generate_state(1)[0])
        if str(node.get("_target_", "")).endswith("GridSampler"):
            if not space.is_grid():
                raise ConfigError("hydra.sweeper.sampler", "GridSampler needs every param a choice without "
                                  "conditions", "use TPESampler, or write the params as choice(...)")
            node["search_space"] = space.grid()
        return instantiate_trusted(node, "sampler", "hydra.sweeper.sampler")

    def _pruner(self) -> Any:
        import optuna

        node = pruner_node(self.pruner_cfg)
        given = OmegaConf.to_container(self.config.hydra.overrides.hydra, resolve=False)
        if node is not None and self._grid() and not any(str(o).startswith("hydra.sweeper.pruner") for o in given):
            log.info("sweep: a grid search runs every cell to the end (no pruner); hydra.sweeper.pruner=<name> "
                     "prunes it anyway")
            node = None
        if node is None:
            return optuna.pruners.NopPruner()
        return instantiate_trusted(node, "pruner", "hydra.sweeper.pruner")

    # ------------------------------------------------------------------ what the researcher reads
    def _progress(self, study: Any) -> None:
        counts = study_loop.tally(study)
        try:
            best = f"; best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = ""
        print(f"sweep: {counts.ended}/{self.n_trials} trials ended, {counts.running} running{best}", flush=True)

    def _report(self, study: Any, sweep_dir: Path, storage: StudyStorage) -> None:
        from visiontrain.sweeps.report import write_report

        wandb = OmegaConf.select(self.config, "logger.wandb")
        group = f"{OmegaConf.select(self.config, 'hydra.job.config_name')}-{sweep_dir.name}"
        report = write_report(study, sweep_dir, wandb=OmegaConf.to_container(wandb, resolve=True) if wandb else None,
                              group=group)
        counts = study_loop.tally(study)
        print(f"\nsweep summary: {sweep_dir / 'sweep_summary.md'} ({counts.ended} of {self.n_trials} trials ended)",
              flush=True)
        if report.best_command:
            print(f"  best: {report.best_command}", flush=True)
        print(f"  live view: optuna-dashboard {storage.dashboard_argument}", flush=True)
