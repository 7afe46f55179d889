"""Check a composed config before training: wrong types and values fail here, naming the key and the fix.

Unknown keys (``optimizer.lrr=...``) are caught earlier, in :mod:`visiontrain.config.overrides`. The checks that
need no library (:mod:`visiontrain.config.checks`, pydantic models) run first: the `visiontrain` command runs
them before it imports any command and hands their result here, so they run once; a caller without it (a test,
the notebook) gets them run here. This module adds what only the libraries can tell: Lightning's
precisions, the ONNX exporter and the opsets it writes, whether CUDA sees a GPU, timm's backbone names, packaged
weights, albumentations transforms, torch.optim and scikit-learn classes, the table's cleaning rules and its source.
"""

from __future__ import annotations

from omegaconf import DictConfig

from visiontrain.config.checks import (
    TrainSettings,
    check_evaluate_config,
    check_export_config,
    check_lr_find_config,
    check_no_literal_secrets,
    check_sweeper,
    check_train_config,
)
from visiontrain.config.commands import EvaluateOptions, ExportOptions
from visiontrain.core.names import IMAGE_TASK
from visiontrain.registry import task_class
from visiontrain.training.checks import check_exporter, check_opset, check_trainer, lightning_precisions

__all__ = ["validate_train_config", "validate_evaluate_config", "validate_export_config", "validate_lr_find_config",
           "validate_sweeper", "check_no_literal_secrets",
           "lightning_precisions"]

validate_sweeper = check_sweeper  # needs no library: the CLI calls it before a multirun starts


def validate_evaluate_config(cfg: DictConfig, options: EvaluateOptions | None = None) -> EvaluateOptions:
    """`visiontrain evaluate`: its keys (unless the CLI parsed them: ``options``), then its trainer (the
    checkpoint's settings are checked when read)."""
    options = check_evaluate_config(cfg) if options is None else options
    check_trainer(cfg)
    return options


def validate_export_config(cfg: DictConfig, options: ExportOptions | None = None) -> ExportOptions:
    """`visiontrain export`: its keys (unless the CLI parsed them: ``options``), then ``opset`` against the
    installed torch exporter it names."""
    options = check_export_config(cfg) if options is None else options
    check_exporter(cfg, "exporter")
    check_opset(cfg, "opset", "exporter")
    return options


def validate_train_config(cfg: DictConfig, settings: TrainSettings | None = None) -> TrainSettings:
    """Every check that can fail without touching data or weights, then the data location; returns the typed
    settings the run reads. ``settings``: what the CLI's library-free check already parsed (not parsed again)."""
    settings = check_train_config(cfg) if settings is None else settings
    check_trainer(cfg)
    check_exporter(cfg)
    check_opset(cfg)
    return settings.with_decided(task_class(settings.task).check_libraries(cfg, settings))


def validate_lr_find_config(cfg: DictConfig, settings: TrainSettings | None = None) -> TrainSettings:
    """`visiontrain lr_find`: everything `train` checks, then the range test's own keys (``settings``: as for
    :func:`validate_train_config`)."""
    settings = check_lr_find_config(cfg) if settings is None else settings
    check_trainer(cfg)
    check_exporter(cfg)
    check_opset(cfg)
    return settings.with_decided(task_class(IMAGE_TASK).check_libraries(cfg, settings))
