"""`visiontrain lr_find`: the learning-rate range test, before a run, on the data `train` would use."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf

from visiontrain.commands.validation import validate_lr_find_config
from visiontrain.config.checks import LrFind, TrainSettings
from visiontrain.registry import task_for_config
from visiontrain.training.hardware import build_trainer
from visiontrain.training.lr_find import find_learning_rate, write_lr_find


def lr_find(cfg: DictConfig, settings: TrainSettings | None = None) -> float | None:
    """The learning-rate range test on the training data that `train` with the same overrides would use.

    The model is built as for training but with no frozen epochs, so the head and the backbone are probed together
    at their configured shares of the rate; the suggestion is the head's rate, the ``optimizer.lr`` to train with
    (see :mod:`visiontrain.training.lr_find`). Writes lr_find.json and lr_find.png in the run dir. ``settings``:
    the CLI's parse of ``cfg`` (parsed here when not given). The probe is the same run with no frozen epochs; the
    weight source, input spec and train transform the checks decided carry over to it, decided once.
    """
    settings = validate_lr_find_config(cfg, settings)
    run_dir = Path(cfg.paths.run_dir)
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    probe = OmegaConf.merge(cfg, {"schedule": {"freeze_epochs": 0}})  # the fine-tune stage: head and backbone
    unfrozen = settings.schedule.model_copy(update={"freeze_epochs": 0})
    task = task_for_config(probe, settings.model_copy(update={"schedule": unfrozen}))  # keeps what was decided
    built = task.build(task.prepare(run_dir, True), None)
    datamodule, module = built.datamodule, built.module
    probe_settings = LrFind(**OmegaConf.to_container(cfg.lr_find, resolve=True))
    trainer: pl.Trainer = build_trainer(cfg.trainer, logger=False, enable_checkpointing=False, max_epochs=-1,
                                        max_steps=probe_settings.num_training, num_sanity_val_steps=0,
                                        default_root_dir=str(run_dir))
    result = find_learning_rate(trainer, module, datamodule.train_dataloader(), probe_settings)
    files = write_lr_find(result, run_dir)
    lines = [f"lr_find: {len(result.lrs)} rates probed from {probe_settings.min_lr:g} to {probe_settings.max_lr:g} "
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
