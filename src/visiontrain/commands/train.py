"""The one runner every task goes through.

config -> checks -> task builds data + model -> callbacks + loggers -> Trainer.fit -> best checkpoint
-> evaluation (confusion matrix, per-class) -> ONNX export + parity -> summary.json -> end-of-run report.
Returns the monitored metric of the best checkpoint, which is what a Hydra sweeper optimises.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from visiontrain.commands.validation import validate_train_config
from visiontrain.config.checks import TrainSettings
from visiontrain.errors import ExportMismatch
from visiontrain.registry import task_for_config
from visiontrain.sweeps import trial_context
from visiontrain.sweeps.pruning import pruning_callbacks
from visiontrain.tracking.results import log_run_results, wandb_loggers
from visiontrain.tracking.wandb_run import finish_active_run
from visiontrain.training.checkpoints import read_checkpoint
from visiontrain.training.hardware import build_trainer
from visiontrain.training.history import MetricHistory
from visiontrain.training.reports import library_versions, plot_curves, write_json
from visiontrain.training.results import (
    Checkpoints,
    CrossValidation,
    FitResult,
    FoldResult,
    Monitor,
    RunSummary,
)
from visiontrain.training.run_writes import RunWriteGuard, raise_if_log_failed
from visiontrain.training.task import PreparedData, Task

log = logging.getLogger("visiontrain")


def instantiate_loggers(logger_cfg: DictConfig | None) -> list[Any]:
    return [instantiate(node) for node in (logger_cfg or {}).values() if node and "_target_" in node]


def instantiate_callbacks(callbacks_cfg: DictConfig | None, have_logger: bool) -> list[Callback]:
    callbacks = [instantiate(node) for node in (callbacks_cfg or {}).values() if node and "_target_" in node]
    # LearningRateMonitor refuses to run without a logger; history.csv records the rates anyway
    return [c for c in callbacks if have_logger or not isinstance(c, LearningRateMonitor)]


def fit_once(cfg: DictConfig, task: Task, data: PreparedData, split: Any, out_dir: Path,
             report_metric: str | None = None) -> FitResult:
    """One fit of a fresh model on ``split``: Trainer, callbacks and loggers from config, writing to ``out_dir``.

    The final model writes to the run dir itself; each cross-validation fold to ``<run dir>/folds/<fold>``.
    ``report_metric``: in a sweep trial, reported to the study every epoch; a pruned fit raises TrialPruned.
    """
    if out_dir != Path(cfg.paths.run_dir):
        cfg = cfg.copy()
        cfg.paths.run_dir = str(out_dir)  # checkpoints, loggers and history follow through interpolation
    built = task.build(data, split)
    loggers = instantiate_loggers(cfg.get("logger"))
    history = MetricHistory(str(out_dir / "history.csv"))
    reporting = pruning_callbacks(report_metric) if report_metric else []
    callbacks = instantiate_callbacks(cfg.get("callbacks"), bool(loggers) and built.has_learning_rate) + [
        history, RunWriteGuard(out_dir), *reporting]
    overrides = dict(built.trainer_overrides)
    if not any(True for _ in built.module.parameters()):  # a fitted estimator: a table of zeros says nothing
        overrides.setdefault("enable_model_summary", False)
    trainer: pl.Trainer = build_trainer(cfg.trainer, callbacks, logger=loggers or False, **overrides)
    started = time.perf_counter()
    resume_from = cfg.get("ckpt_path") if split is data.final_split else None
    trainer.fit(built.module, datamodule=built.datamodule, ckpt_path=resume_from,
                weights_only=True)  # data only, never code
    fit_seconds = time.perf_counter() - started
    for callback in reporting:
        callback.raise_if_pruned()  # a pruned trial is not evaluated or exported
    epochs = list(history.rows)  # before evaluation: restoring the best checkpoint restores its older history
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = (checkpoint.best_model_path or checkpoint.last_model_path) if checkpoint else None
    last = checkpoint.last_model_path if checkpoint else None  # before evaluation restores the best one's state
    started = time.perf_counter()
    evaluation = task.evaluate(trainer, data, built, best or None, out_dir)
    return FitResult(trainer=trainer, built=built, best=best or None, last=last or None, epochs=epochs,
                     evaluation=evaluation, fit_seconds=round(fit_seconds, 3),
                     evaluate_seconds=round(time.perf_counter() - started, 3))


def cross_validate(cfg: DictConfig, task: Task, data: PreparedData, run_dir: Path,
                   report_metric: str | None = None) -> CrossValidation:
    """Fit a fresh model per fold and score its held-out part; mean and std of every test metric.

    In a sweep trial, the running mean of ``report_metric`` over the folds so far is reported after each fold,
    and a pruned trial stops before its next fold (TrialPruned)."""
    per_fold = []
    folds = data.folds
    for split in folds:
        log.info("cross-validation: %s (%d train, %d val, %d held out)", split.name, len(split.train),
                 len(split.val), len(split.test))
        result = fit_once(cfg, task, data, split, run_dir / "folds" / split.name)
        metrics = {k.removeprefix("test/"): v for k, v in result.evaluation.test.metrics.items()
                   if k != "test/loss"}
        per_fold.append(FoldResult(fold=split.name, rows={"train": len(split.train), "val": len(split.val),
                                                          "test": len(split.test)},
                                   metrics=metrics, fit_seconds=result.fit_seconds))
        if report_metric:
            _report_fold(per_fold, report_metric.split("/", 1)[-1])
    names = list(dict.fromkeys(name for fold in per_fold for name in fold.metrics))
    table = {name: np.array([fold.metrics[name] for fold in per_fold if name in fold.metrics]) for name in names}
    summary = CrossValidation(
        folds=len(folds), per_fold=per_fold,
        mean={name: float(values.mean()) for name, values in table.items()},
        std={name: float(values.std(ddof=1)) if len(values) > 1 else 0.0 for name, values in table.items()},
        fit_seconds_total=round(sum(fold.fit_seconds for fold in per_fold), 3))
    write_json(summary.as_dict(), run_dir / "cross_validation.json")
    return summary


def _report_fold(per_fold: list[FoldResult], metric: str) -> None:
    """The folds' running mean of ``metric`` to the sweep's study (step = folds done); stop if pruned."""
    values = [fold.metrics[metric] for fold in per_fold if metric in fold.metrics]
    value = float(np.mean(values)) if values else None
    trial_context.record_epochs(sum(len(fold.metrics) > 0 for fold in per_fold))
    if trial_context.report(value, len(per_fold) - 1):
        raise trial_context.stop(len(per_fold) - 1, value)


def train(cfg: DictConfig, settings: TrainSettings | None = None) -> float | None:
    """Train, evaluate the best checkpoint, export it, and write the run's summary.

    ``settings``: the typed config the CLI's check parsed from ``cfg`` (parsed here when not given: tests, the
    notebook); ``cfg`` stays for what Hydra instantiates (loggers, callbacks, optimizers).

    A W&B run opened on the way is always finished, with the exit code of this run: a failed trial never leaves
    a sweep waiting on it.
    """
    try:
        result = _train(cfg, settings)
        raise_if_log_failed(Path(cfg.paths.run_dir))  # what the run logged last was not written
    except BaseException:
        finish_active_run(exit_code=1)
        raise
    finish_active_run(exit_code=0)
    return result


def _train(cfg: DictConfig, settings: TrainSettings | None) -> float | None:
    settings = validate_train_config(cfg, settings)
    if settings.ckpt_path and not cfg.get("resume"):  # resume= checked its own file (and its fallbacks)
        read_checkpoint(settings.ckpt_path, key="ckpt_path")  # before the data scan: a bad file fails first
    started = time.perf_counter()
    run_dir = Path(cfg.paths.run_dir)
    if settings.ckpt_path:  # where this run writes is never a surprise (resume=: the checkpoint's own run dir)
        how = "resume from {}: the run goes on in its own run dir" if cfg.get("resume") else \
            "ckpt_path={}: its training goes on in a new run dir"
        log.info("%s %s (checkpoints, history, reports, ONNX)", how.format(settings.ckpt_path), run_dir)
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    is_main = rank_zero_only.rank == 0

    task: Task = task_for_config(cfg, settings)
    data = task.prepare(run_dir, is_main)
    log.info(task.describe_data(data.summary))
    metric_name, metric_mode = settings.monitor.metric, settings.monitor.mode
    cross_validation = cross_validate(cfg, task, data, run_dir, metric_name) if data.folds else None

    final = fit_once(cfg, task, data, data.final_split, run_dir, None if data.folds else metric_name)
    trainer, evaluation, best, built = final.trainer, final.evaluation, final.best, final.built
    metric_value = evaluation.val.metrics.get(metric_name)
    if not trainer.is_global_zero:
        return metric_value

    reference = task.reference_stats(data, built)  # for `visiontrain drift`; also inside the ONNX file
    write_json(reference, run_dir / "reference_stats.json")
    exported = None
    if settings.export.onnx and best:
        exported = task.export(data, built, best, run_dir,
                               {"name": metric_name, "value": metric_value, "mode": metric_mode},
                               {"reference_stats": reference})
    curves = plot_curves(final.epochs, run_dir / "curves.png", task.curve_metric)
    report_split = evaluation.split(task.report_split) or evaluation.val
    run_summary = RunSummary(
        task=task.name, experiment=cfg.task_name, run_dir=str(run_dir),
        monitor=Monitor(metric=metric_name, mode=metric_mode, best=metric_value),
        evaluation=evaluation, cross_validation=cross_validation, classes=data.summary.get("classes"),
        data=data.summary, **task.info(data, built),
        checkpoints=Checkpoints(best=best, last=final.last),
        epochs_trained=trainer.current_epoch, history=final.epochs,
        export=exported.without_metadata() if exported else None,
        timings_seconds={"data": data.summary["seconds"],
                         "cross_validation": cross_validation.fit_seconds_total if cross_validation else 0.0,
                         "fit": final.fit_seconds, "evaluate": final.evaluate_seconds,
                         "export": exported.seconds if exported else 0.0,
                         **(evaluation.val.timings_seconds or {}),  # steps inside evaluate, if timed
                         "total": round(time.perf_counter() - started, 3)},
        files={"summary": str(run_dir / "summary.json"), "history_csv": str(run_dir / "history.csv"),
               "curves_png": str(curves) if curves else None, "rejects_csv": data.summary.get("rejects_csv"),
               "split_csv": data.summary.get("split_csv"), "data_report": data.summary.get("data_report"),
               "cross_validation": str(run_dir / "cross_validation.json") if cross_validation else None,
               "reference_stats": str(run_dir / "reference_stats.json"),
               "config": str(run_dir / ".hydra" / "config.yaml"),
               **(report_split.files or {}),
               "onnx": exported.onnx if exported else None},
        versions=library_versions(),
    )
    summary = run_summary.as_dict()
    write_json(summary, run_dir / "summary.json")
    if settings.register_as and exported and exported.parity.passed:  # only a verified model gets a version
        summary["registered"] = register_run(settings, run_dir, exported.onnx)
        write_json(summary, run_dir / "summary.json")
    for logger in wandb_loggers(trainer.loggers):
        log_run_results(logger, cfg, summary, task.sample_predictions(data, built))
    print_report(summary, task)
    if exported and not exported.parity.passed:
        raise ExportMismatch(f"onnxruntime and the trained model disagree on {exported.onnx}: "
                             f"{exported.parity.as_dict()}; the rest of the run is written (summary.json): try "
                             "another export.opset=, or a larger export.atol= if the difference is harmless")
    return metric_value


def register_run(settings: TrainSettings, run_dir: Path, onnx: str) -> dict[str, Any]:
    """Add the run's verified model to the registry as the next version of ``register`` (and move
    ``register_alias`` to it); what it did, for summary.json and the W&B artifact's aliases."""
    from visiontrain.commands.models import register_model
    from visiontrain.model_registry.records import training_record
    from visiontrain.model_registry.store import ModelRegistry

    registry = ModelRegistry(settings.registry)
    version = register_model(registry, settings.register_as, onnx, training_record(run_dir),
                             note=f"registered by run {run_dir.name}", alias=settings.register_alias)
    alias = f", {settings.register_alias} -> v{version.version}" if settings.register_alias else ""
    log.info("registered %s in %s%s", version.label, registry.where, alias)
    return {"registry": registry.where, "model": version.name, "version": version.version,
            "label": version.label, "alias": settings.register_alias}


def print_report(summary: dict[str, Any], task: Task) -> None:
    """The end-of-run report: results first, then where every file was written."""
    metrics = summary["evaluation"]["val"]["metrics"]
    monitor = summary["monitor"]
    lines = ["", "=" * 78, f"visiontrain: {summary['experiment']} finished in {summary['timings_seconds']['total']:.0f} s",
             "-" * 78,
             f"best {monitor['metric']} = {monitor['best']:.4f}   " + "   ".join(
                 f"{k} = {v:.4f}" for k, v in metrics.items() if k != monitor["metric"])]
    lines += task.report_lines(summary)
    checkpoints = summary["checkpoints"]
    lines += ["-" * 78, f"run dir            {summary['run_dir']}"]
    if checkpoints["best"] and checkpoints["best"] == checkpoints["last"]:  # a one-epoch baseline: one file
        lines.append(f"checkpoint         {checkpoints['best']} (the only one: best and last)")
    else:
        lines.append(f"best checkpoint    {checkpoints['best']}")
    labels = {"onnx": "onnx model", "summary": "summary", "curves_png": "curves", "confusion_png": "confusion matrix",
              "roc_png": "ROC curve", "pr_png": "PR curve", "per_class_csv": "per-class metrics",
              "history_csv": "history", "rejects_csv": "rejects report",
              "split_csv": "image split", "data_report": "data report",
              "cross_validation": "cross-validation", "config": "resolved config"}
    for key, label in labels.items():
        if summary["files"].get(key):
            lines.append(f"{label:<18} {summary['files'][key]}")
    if summary.get("registered"):
        registered = summary["registered"]
        alias = f" ({registered['alias']})" if registered.get("alias") else ""
        lines.append(f"{'registered':<18} {registered['label']}{alias} in {registered['registry']}")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)
