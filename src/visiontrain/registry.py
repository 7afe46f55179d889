"""Tasks plug into the one runner through the contract in :mod:`visiontrain.training.task`; the table of tasks
(name -> class) is :data:`visiontrain.core.names.TASK_CLASSES`, one line each.

The task type is decided here and nowhere else: from ``task`` in a config when training, and from the name a
checkpoint records (``visiontrain_task``) when evaluating or exporting it.
"""

from __future__ import annotations

import importlib
from typing import Any

from visiontrain.core.names import IMAGE_TASK, TABULAR_TASK, TASK_CLASSES, TASK_KEY
from visiontrain.errors import CheckpointError


def task_class(name: str) -> type:
    """The task class registered under ``name``."""
    if name not in TASK_CLASSES:
        raise ValueError(f"unknown task {name!r}: one of {', '.join(TASK_CLASSES)}")
    module, cls = TASK_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def task_for_config(cfg: Any, settings: Any = None) -> Any:
    """The task a training config describes (``task: image_classification``, the default, or ``task: tabular``),
    given the typed settings the config parsed into (parsed here when the caller has not)."""
    if settings is None:
        from visiontrain.config.checks import check_train_config

        settings = check_train_config(cfg)
    return task_class(settings.task)(cfg, settings)


def task_name_of(checkpoint: dict[str, Any], path: Any = "") -> str:
    """The task a checkpoint was trained by, as it records it (checkpoints written before it did: by their hparams)."""
    name = checkpoint.get(TASK_KEY)
    if name is None:
        name = TABULAR_TASK if "task_type" in (checkpoint.get("hyper_parameters") or {}) else IMAGE_TASK
    if name not in TASK_CLASSES:
        raise CheckpointError(f"ckpt={path}: records an unknown task {name!r}")
    return str(name)
