"""`visiontrain evaluate` and `visiontrain export` work on a finished checkpoint; `visiontrain lr_find` before one.

The checkpoint is read once, as plain data; the task it records (:func:`visiontrain.registry.task_name_of`) does the
rest, so these commands never ask which kind of model they hold.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf

from visiontrain.commands.validation import (validate_evaluate_config, validate_export_config,
                                           validate_lr_find_config)
from visiontrain.errors import ConfigError
from visiontrain.core.names import IMAGE_TASK
from visiontrain.registry import task_class, task_name_of
from visiontrain.training.checkpoints import read_checkpoint
from visiontrain.training.hardware import build_trainer
from visiontrain.training.lr_find import LRFindSettings, find_learning_rate, write_lr_find

log = logging.getLogger("visiontrain")


def _checkpoint(cfg: DictConfig) -> tuple[Path, dict]:
    """The ``ckpt=`` file and its contents, read once as plain data (see :func:`read_checkpoint`)."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError("ckpt", "is required", "ckpt=outputs/<experiment>/runs/<time>/checkpoints/last.ckpt")
    path = Path(str(cfg.ckpt)).expanduser()
    if "://" not in str(cfg.ckpt) and not path.is_file():
        raise ConfigError("ckpt", f"checkpoint {path} does not exist", "ckpt=/path/to/a/visiontrain.ckpt")
    return path, read_checkpoint(str(cfg.ckpt))


def evaluate(cfg: DictConfig) -> float | None:
    """Evaluate a checkpoint on its validation split (or ``data_root``); write metrics and confusion matrix.

    ``tta=hflip`` (image models): every prediction is the average of the softmax on the image and on its mirror
    image (see :mod:`visiontrain.image.tta`); evaluation.json records the mode.
    """
    validate_evaluate_config(cfg)
    ckpt, checkpoint = _checkpoint(cfg)
    task = task_class(task_name_of(checkpoint, ckpt))
    return task.evaluate_checkpoint(cfg, ckpt, checkpoint, Path(cfg.paths.run_dir))


def lr_find(cfg: DictConfig) -> float | None:
    """The learning-rate range test on the training data that `train` with the same overrides would use.

    The model is built as for training but with no frozen epochs, so the head and the backbone are probed together
    at their configured shares of the rate; the suggestion is the head's rate, the ``optimizer.lr`` to train with
    (see :mod:`visiontrain.training.lr_find`). Writes lr_find.json and lr_find.png in the run dir.
    """
    validate_lr_find_config(cfg)
    run_dir = Path(cfg.paths.run_dir)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    probe = OmegaConf.merge(cfg, {"schedule": {"freeze_epochs": 0}})  # the fine-tune stage: head and backbone
    task = task_class(IMAGE_TASK)(probe)
    built = task.build(task.prepare(run_dir, True), None)
    datamodule, module = built.datamodule, built.module
    settings = LRFindSettings(**OmegaConf.to_container(cfg.lr_find, resolve=True))
    trainer: pl.Trainer = build_trainer(cfg.trainer, logger=False, enable_checkpointing=False, max_epochs=-1,
                                        max_steps=settings.num_training, num_sanity_val_steps=0,
                                        default_root_dir=str(run_dir))
    result = find_learning_rate(trainer, module, datamodule.train_dataloader(), settings)
    files = write_lr_find(result, run_dir)
    lines = [f"lr_find: {len(result.lrs)} rates probed from {settings.min_lr:g} to {settings.max_lr:g} "
             "(the head's rate; the backbone at its share, schedule.backbone_lr_scale)"]
    if result.suggestion is None:
        lines.append("  no suggestion: the loss diverged before enough points (lower lr_find.max_lr, or "
                     "lr_find.early_stop_threshold=null)")
    else:
        lines += [f"  suggested learning rate: {result.suggestion:.3g} (steepest fall of the smoothed loss)",
                  f"  train with: visiontrain train <the same overrides> {result.override}"]
    lines.append(f"  written to {run_dir} ({files['png'].name}, {files['json'].name})")
    print("\n".join(lines), flush=True)
    return result.suggestion


def export(cfg: DictConfig) -> dict:
    """Export a checkpoint to ONNX and check it with onnxruntime on the checkpoint's own held-out data.

    Exits with code 3 when onnxruntime and PyTorch disagree beyond the tolerance.
    """
    validate_export_config(cfg)
    ckpt, checkpoint = _checkpoint(cfg)
    run_dir = Path(cfg.paths.run_dir)
    output = Path(str(cfg.output)).expanduser() if cfg.get("output") else run_dir / "model.onnx"
    task = task_class(task_name_of(checkpoint, ckpt))
    result = task.export_checkpoint(cfg, ckpt, checkpoint, output, run_dir)
    if not result["parity"]["passed"]:
        raise SystemExit(3)
    return result
