"""Tasks plug into the one runner: each says how to prepare its data, build a model, evaluate and export."""

from __future__ import annotations

from omegaconf import DictConfig

TASKS = ("image_classification", "tabular")


def build_task(cfg: DictConfig):
    """The task a config describes: ``task: image_classification`` (default) or ``task: tabular``."""
    if cfg.get("task", "image_classification") == "tabular":
        from visiontrain.tasks.tabular import TabularTask

        return TabularTask(cfg)
    from visiontrain.tasks.image import ImageTask

    return ImageTask(cfg)
