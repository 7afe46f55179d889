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
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from visiontrain.config.validation import validate_train_config
from visiontrain.tasks import build_task
from visiontrain.training.history import MetricHistory
from visiontrain.training.reports import library_versions, plot_curves, write_json

log = logging.getLogger("visiontrain")


class ExportMismatch(RuntimeError):
    """onnxruntime and PyTorch disagree on the exported model beyond the configured tolerance."""


def instantiate_loggers(logger_cfg: DictConfig | None) -> list[Any]:
    return [instantiate(node) for node in (logger_cfg or {}).values() if node and "_target_" in node]


def instantiate_callbacks(callbacks_cfg: DictConfig | None, have_logger: bool) -> list[Callback]:
    callbacks = [instantiate(node) for node in (callbacks_cfg or {}).values() if node and "_target_" in node]
    # LearningRateMonitor refuses to run without a logger; history.csv records the rates anyway
    return [c for c in callbacks if have_logger or not isinstance(c, LearningRateMonitor)]


def train(cfg: DictConfig) -> float | None:
    """Train, evaluate the best checkpoint, export it, and write the run's summary."""
    validate_train_config(cfg)
    started = time.perf_counter()
    run_dir = Path(cfg.paths.run_dir)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    is_main = rank_zero_only.rank == 0

    task = build_task(cfg)
    datamodule, module, info = task.build(run_dir, is_main)
    data = info["data"]
    log.info("data: %d files in, %d used, %d rejected (%s); classes: %s", data["files_in"], data["files_used"],
             data["files_rejected"], data["rejects_csv"], ", ".join(
                 f"{name} ({count})" for name, count in data["per_class"]["train"].items()))

    loggers = instantiate_loggers(cfg.get("logger"))
    history = MetricHistory(str(run_dir / "history.csv"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), bool(loggers)) + [history]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    fit_started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - fit_started
    epochs = list(history.rows)  # before evaluation: restoring the best checkpoint restores its older history

    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = (checkpoint.best_model_path or checkpoint.last_model_path) if checkpoint else None
    eval_started = time.perf_counter()
    evaluation = task.evaluate(trainer, module, best or None, run_dir)
    eval_seconds = time.perf_counter() - eval_started
    metric_name = str(cfg.monitor.metric)
    metric_value = evaluation["val"]["metrics"].get(metric_name)
    if not trainer.is_global_zero:
        return metric_value

    exported = None
    if cfg.export.onnx and best:
        exported = task.export(best, run_dir, {"name": metric_name, "value": metric_value, "mode": cfg.monitor.mode})
    curves = plot_curves(epochs, run_dir / "curves.png")
    summary = {
        "task": task.name, "experiment": cfg.task_name, "run_dir": str(run_dir),
        "monitor": {"metric": metric_name, "mode": cfg.monitor.mode, "best": metric_value},
        "evaluation": evaluation, "classes": data["classes"], "data": data,
        "input_spec": info["input_spec"], "parameters": info["parameters"], "weights": info["weights"],
        "checkpoints": {"best": best, "last": checkpoint.last_model_path if checkpoint else None},
        "epochs_trained": trainer.current_epoch, "history": epochs,
        "export": {k: v for k, v in (exported or {}).items() if k != "metadata"} or None,
        "timings_seconds": {"data": info["seconds_data"], "fit": round(fit_seconds, 3),
                            "evaluate": round(eval_seconds, 3),
                            "export": exported["seconds"] if exported else 0.0,
                            "total": round(time.perf_counter() - started, 3)},
        "files": {"summary": str(run_dir / "summary.json"), "history_csv": str(run_dir / "history.csv"),
                  "curves_png": str(curves) if curves else None, "rejects_csv": data["rejects_csv"],
                  "config": str(run_dir / ".hydra" / "config.yaml"),
                  **evaluation["val"].get("files", {}), "onnx": exported["onnx"] if exported else None},
        "versions": library_versions(),
    }
    write_json(summary, run_dir / "summary.json")
    print_report(summary)
    if exported and not exported["parity"]["passed"]:
        raise ExportMismatch(f"onnxruntime and PyTorch disagree on {exported['onnx']}: {exported['parity']}")
    return metric_value


def print_report(summary: dict[str, Any]) -> None:
    """The end-of-run report: results first, then where every file was written."""
    metrics = summary["evaluation"]["val"]["metrics"]
    data = summary["data"]
    lines = ["", "=" * 78, f"visiontrain: {summary['experiment']} finished in {summary['timings_seconds']['total']:.0f} s",
             "-" * 78,
             f"best {summary['monitor']['metric']} = {summary['monitor']['best']:.4f}   " + "   ".join(
                 f"{k} = {v:.4f}" for k, v in metrics.items() if k != summary["monitor"]["metric"]),
             f"data: {data['files_in']} files in = {data['files_used']} used + {data['files_rejected']} rejected; "
             f"{len(summary['classes'])} classes"]
    export = summary.get("export")
    if export:
        parity = export["parity"]
        lines.append(f"onnx parity on {parity['images']} {parity['source']}: max |logit diff| = "
                     f"{parity['max_abs_logit_diff']:.2e}, top-1 identical: {parity['top1_identical']}")
    lines += ["-" * 78, f"run dir            {summary['run_dir']}",
              f"best checkpoint    {summary['checkpoints']['best']}"]
    labels = {"onnx": "onnx model", "summary": "summary", "curves_png": "curves", "confusion_png": "confusion matrix",
              "per_class_csv": "per-class metrics", "history_csv": "history", "rejects_csv": "rejects report",
              "config": "resolved config"}
    for key, label in labels.items():
        if summary["files"].get(key):
            lines.append(f"{label:<18} {summary['files'][key]}")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)
