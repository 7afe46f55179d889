"""What the Optuna sweeper buys: epochs saved by pruning, and wall time saved by parallel workers.

(a) pruning: the same image search (hparams_search=image_optuna, 16 trials, short trials on a hymenoptera folder)
    twice with the same seed, without a pruner and with one; the best val/acc of each, the epochs all trials
    trained together, and their ratio. Goal: the same best (within 0.01) with at least 40% fewer epochs.
(b) parallel: the churn search (hparams_search=churn_optuna, built-in table, 20 trials) with one worker and with
    two, every process single-threaded (OMP_NUM_THREADS=1 and the like); the wall time of each, their ratio, and
    the best val/roc_auc of each. Goal: two workers take at most 0.6x the time of one.

Every sweep is the real command line in a fresh process, in its own sweep dir:

    [python, -m, visiontrain, train, experiment=..., hparams_search=..., <overrides>, hydra.sweep.dir=<dir>]

What it assumes of the command line (the sweeper, hydra_plugins/visiontrain_sweeper):
  - hparams_search=<name> runs an Optuna study to its end without -m; hydra.sweeper.n_trials, .workers and
    .pruner (null | median | successive_halving | hyperband) are overrides; seed=<n> seeds the sampler (${seed});
  - a sweep override replaces its key's entry of the search space: model.weights=choice(efficientnet_lite0.in1k)
    keeps (a) on the weights every install has (lite1/lite2 bring 240/260 px inputs and would swamp the timing);
  - the sweep dir then holds sweep_summary.csv with the columns status (completed | pruned | failed), value and
    epochs; where epochs is missing, the study's journal (<sweep dir>/study.journal: the trial user attr "epochs",
    else one intermediate value per epoch) or each trial's history.csv (one row per epoch) gives them;
  - workers share the machine's cores: run (b) on a machine with at least 2 cores.

    .venv/bin/python scripts/bench_sweep.py --data ../shared/data/hymenoptera --json benchmarks/sweep.json
    .venv/bin/python scripts/bench_sweep.py --part parallel --json benchmarks/sweep_parallel.json
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import SHARED_DATA, markdown_table, write_results  # noqa: E402

SINGLE_THREADED = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
DONE = ("completed", "complete")


@dataclass(frozen=True)
class SweepResult:
    """One sweep, as its sweep dir tells it."""

    name: str
    wall_s: float
    best: float | None       # the best value of a completed trial (maximised)
    epochs: int              # epochs trained by all trials together, pruned ones included
    completed: int
    pruned: int
    failed: int
    sweep_dir: str


@dataclass(frozen=True)
class Trial:
    status: str
    value: float | None
    epochs: int | None
    run_dir: Path | None


def run_sweep(name: str, overrides: list[str], sweep_dir: Path, env: dict[str, str]) -> SweepResult:
    """The sweep as a fresh `visiontrain train` process; fails with the end of its output if it fails."""
    command = [sys.executable, "-m", "visiontrain", "train", *overrides, "trainer.enable_progress_bar=false",
               f"hydra.sweep.dir={sweep_dir}"]
    print(f"{name}: {' '.join(command[3:])}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, env={**env, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{name} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    trials = read_trials(sweep_dir)
    values = [t.value for t in trials if t.status in DONE and t.value is not None]
    result_ = SweepResult(name=name, wall_s=round(wall, 1), best=max(values) if values else None,
                          epochs=sum(t.epochs or 0 for t in trials),
                          completed=sum(t.status in DONE for t in trials),
                          pruned=sum(t.status == "pruned" for t in trials),
                          failed=sum(t.status in ("crashed", "failed", "fail") for t in trials), sweep_dir=str(sweep_dir))
    print(f"  {result_}", flush=True)
    return result_


def read_trials(sweep_dir: Path) -> list[Trial]:
    """The trials of a finished sweep: sweep_summary.csv, else the study's journal; epochs from either, else
    from each trial's history.csv."""
    summary = sweep_dir / "sweep_summary.csv"
    if summary.is_file():
        with summary.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        trials = [Trial(status=row["status"].lower(), value=_number(row.get("value")),
                        epochs=_integer(row.get("epochs")), run_dir=Path(row["run_dir"]) if row.get("run_dir") else None)
                  for row in rows]
    else:
        trials = _journal_trials(sweep_dir / "study.journal")
    return [t if t.epochs is not None else Trial(t.status, t.value, _history_epochs(t.run_dir), t.run_dir)
            for t in trials]


def _journal_trials(journal: Path) -> list[Trial]:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if not journal.is_file():
        raise SystemExit(f"{journal.parent} has neither sweep_summary.csv nor study.journal: did the sweep run?")
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    trials = []
    for study in optuna.get_all_study_summaries(storage):
        for trial in optuna.load_study(study_name=study.study_name, storage=storage).trials:
            epochs = trial.user_attrs.get("epochs", len(trial.intermediate_values) or None)
            trials.append(Trial(status=trial.state.name.lower(), value=trial.value,
                                epochs=int(epochs) if epochs is not None else None, run_dir=None))
    return trials


def _history_epochs(run_dir: Path | None) -> int | None:
    history = run_dir / "history.csv" if run_dir else None
    if history is None or not history.is_file():
        return None
    with history.open(newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _integer(text: str | None) -> int | None:
    number = _number(text)
    return int(number) if number is not None else None


def pruning(args: argparse.Namespace, scratch: Path, env: dict[str, str]) -> dict:
    """(a): the image search without and with a pruner, the same seed."""
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is not a folder: pass --data <an ImageFolder such as hymenoptera>")
    base = ["experiment=hymenoptera", f"data.root={args.data.resolve()}", "hparams_search=image_optuna",
            f"hydra.sweeper.n_trials={args.image_trials}", f"seed={args.seed}", f"trainer.max_epochs={args.epochs}",
            f"model.input.image_size={args.image_size}", f"model.weights=choice({args.weights})", "export.onnx=false",
            *args.image_overrides]
    runs = [run_sweep(f"pruner={pruner}", [*base, f"hydra.sweeper.pruner={pruner}"], scratch / f"image-{pruner}",
                      env) for pruner in ("null", args.pruner)]
    without, with_ = runs
    return {"sweeps": [asdict(r) for r in runs], "epochs_ratio": _ratio(with_.epochs, without.epochs),
            "best_difference": _difference(with_.best, without.best),
            "goal": "best within 0.01, epochs ratio <= 0.6"}


def parallel(args: argparse.Namespace, scratch: Path, env: dict[str, str]) -> dict:
    """(b): the churn search with one worker, then two, every process single-threaded."""
    env = {**env, **SINGLE_THREADED}
    base = ["experiment=churn", "hparams_search=churn_optuna", f"hydra.sweeper.n_trials={args.churn_trials}",
            f"seed={args.seed}", *args.churn_overrides]
    warm = [sys.executable, "-m", "visiontrain", "train", "experiment=churn", "model=logistic_regression",
            f"hydra.run.dir={scratch / 'warm-up'}", "trainer.enable_progress_bar=false"]
    subprocess.run(warm, env=env, capture_output=True, check=True)  # the built-in table, generated once, untimed
    trials = _same_trials(args.churn_trials, args.seed) if args.same_trials else []
    runs, work = [], {}
    for workers in (1, 2):
        sweep_dir = scratch / f"churn-workers{workers}"
        if trials:  # the study exists before the sweep starts, holding the trials to run: both sweeps run the same
            _enqueue(sweep_dir, trials)
        runs.append(run_sweep(f"workers={workers}", [*base, f"hydra.sweeper.workers={workers}"], sweep_dir, env))
        work[f"workers={workers}"] = _trial_seconds(sweep_dir)
    one, two = runs
    return {"sweeps": [asdict(r) for r in runs], "wall_ratio": _ratio(two.wall_s, one.wall_s),
            "same_trials": bool(trials), "trial_seconds": work,
            "best_difference": _difference(two.best, one.best), "goal": "wall ratio <= 0.6"}


def _same_trials(n: int, seed: int) -> list[dict]:
    """``n`` parameter sets drawn once from the churn search space (random, seeded): what both sweeps run, so
    that the wall times compare the workers and not two different draws of model families."""
    from omegaconf import OmegaConf

    from visiontrain.config import config_dir
    from visiontrain.sweeps.space import read_space

    node = OmegaConf.load(config_dir() / "hparams_search" / "churn_optuna.yaml")
    space = read_space(OmegaConf.to_container(node.hydra.sweeper.params, resolve=False))
    return space.draw(n, seed)


def _enqueue(sweep_dir: Path, trials: list[dict]) -> None:
    """The sweep's own study (journal in its dir, named as the sweeper names it) with ``trials`` waiting."""
    import optuna

    from visiontrain.sweeps.storage import StudyStorage

    storage = StudyStorage.choose(None, sweep_dir).open()
    study = optuna.create_study(storage=storage, study_name=f"churn-{sweep_dir.name}", direction="maximize")
    for params in trials:
        study.enqueue_trial(params)


def _trial_seconds(sweep_dir: Path) -> dict:
    """The trials' own seconds (summed) and the span from the first start to the last end."""
    import optuna

    from visiontrain.sweeps.storage import StudyStorage

    storage = StudyStorage.choose(None, sweep_dir).open()
    study = optuna.load_study(study_name=storage.get_all_studies()[0].study_name, storage=storage)
    done = [t for t in study.trials if t.datetime_start and t.datetime_complete]
    seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"sum": round(seconds, 1), "span": round(span, 1), "parallelism": round(seconds / span, 2)}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _difference(a: float | None, b: float | None) -> float | None:
    return round(a - b, 4) if a is not None and b is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("pruning", "parallel", "all"), default="all")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "hymenoptera", help="(a) an image folder")
    parser.add_argument("--image-trials", type=int, default=16)
    parser.add_argument("--churn-trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4, help="(a) trainer.max_epochs of each trial")
    parser.add_argument("--image-size", type=int, default=96, help="(a) model.input.image_size")
    parser.add_argument("--weights", default="efficientnet_lite0.in1k",
                        help="(a) the weights searched, comma-separated (the search's choice replaced)")
    parser.add_argument("--pruner", default="median", help="(a) the pruner against none: median | hyperband | ...")
    parser.add_argument("--seed", type=int, default=42, help="the sampler's seed (and the runs'), the same for both")
    parser.add_argument("--image-overrides", nargs="*", default=[],
                        help="(a) more overrides, e.g. trainer.limit_train_batches=8")
    parser.add_argument("--churn-overrides", nargs="*", default=[], help="(b) more overrides")
    parser.add_argument("--same-trials", action=argparse.BooleanOptionalAction, default=True,
                        help="(b) both sweeps run the same trials, drawn once (--no-same-trials: each draws its own)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the sweep dirs here (else deleted)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_sweep_")) if args.keep is None else args.keep
    scratch.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VISIONTRAIN_CACHE_DIR": str(scratch / "cache"),
           "VISIONTRAIN_OUTPUT_DIR": str(scratch / "outputs")}
    results: dict = {}
    try:
        if args.part in ("pruning", "all"):
            results["pruning"] = pruning(args, scratch, env)
        if args.part in ("parallel", "all"):
            results["parallel"] = parallel(args, scratch, env)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)

    rows = [[part, s["name"], f"{s['completed']}/{s['pruned']}/{s['failed']}",
             "—" if s["best"] is None else f"{s['best']:.4f}", s["epochs"], s["wall_s"]]
            for part, found in results.items() for s in found["sweeps"]]
    print()
    print(markdown_table(["part", "sweep", "completed/pruned/failed", "best", "epochs", "wall s"], rows))
    for part, ratio in (("pruning", "epochs_ratio"), ("parallel", "wall_ratio")):
        if part in results:
            found = results[part]
            print(f"{part}: {ratio} {found[ratio]}, best difference {found['best_difference']} ({found['goal']})")
    command = " ".join(["scripts/bench_sweep.py", *sys.argv[1:]])
    print(f"\n    .venv/bin/python {command}")
    write_results(args.json, command, results)


if __name__ == "__main__":
    main()
