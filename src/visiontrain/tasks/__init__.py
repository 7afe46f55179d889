"""Tasks plug into the one runner: each says how to build its data and model, evaluate, and export."""

from __future__ import annotations

from omegaconf import DictConfig


def build_task(cfg: DictConfig):
    """The task a config describes (image classification today; the tabular task plugs in here)."""
    from visiontrain.tasks.image import ImageTask

    return ImageTask(cfg)
