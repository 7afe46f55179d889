"""`visiontrain evaluate`: score a finished checkpoint on its held-out data (or ``data_root``).

The checkpoint is read once, as plain data; the task it records (:func:`visiontrain.registry.task_name_of`) does
the rest, so this command never asks which kind of model it holds.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from visiontrain.commands.checkpoint_input import checkpoint_from
from visiontrain.commands.validation import validate_evaluate_config
from visiontrain.config.commands import EvaluateOptions
from visiontrain.registry import task_class, task_name_of


def evaluate(cfg: DictConfig, options: EvaluateOptions | None = None) -> float | None:
    """Evaluate a checkpoint on its validation split (or ``data_root``); write metrics and confusion matrix.

    ``tta=hflip`` (image models): every prediction is the average of the softmax on the image and on its mirror
    image (see :mod:`visiontrain.image.tta`); evaluation.json records the mode. ``options``: the CLI's parse of
    ``cfg`` (parsed here when not given); ``cfg`` itself goes to the task, which instantiates from it.
    """
    options = validate_evaluate_config(cfg, options)
    ckpt, checkpoint = checkpoint_from(options.ckpt)
    task = task_class(task_name_of(checkpoint, ckpt))
    return task.evaluate_checkpoint(cfg, ckpt, checkpoint, Path(cfg.paths.run_dir))
