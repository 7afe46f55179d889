"""Hardware settings of a run that are not Trainer arguments: memory layout, compilation, TF32.

``conf/trainer/*.yaml`` holds them next to the Trainer's own arguments, so one file describes the hardware
path (``trainer=gpu`` is bf16 + channels_last + cudnn benchmark); :func:`build_trainer` takes them out before
the Trainer is built and hands them to :class:`Acceleration`, which applies them to the model at fit time.
Checkpoints and ONNX export never see them: compilation wraps functions, and memory layout is not saved.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from visiontrain.training.checkpoints import AtomicCheckpointIO

log = logging.getLogger("visiontrain")

ACCELERATION_KEYS = ("channels_last", "compile")


class Acceleration(pl.Callback):
    """Apply channels_last and torch.compile to the model before fitting, and allow TF32 on CUDA."""

    def __init__(self, channels_last: bool = False, compile: bool | str = False) -> None:
        self.channels_last, self.compile = bool(channels_last), compile

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.strategy.root_device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # what timm's train.py does; bf16/fp16 AMP is unaffected
            torch.backends.cudnn.allow_tf32 = True
        if not (self.channels_last or self.compile):
            return
        if not hasattr(pl_module, "accelerate"):
            log.warning("trainer.channels_last / trainer.compile apply to image models; ignored for %s",
                        type(pl_module).__name__)
            return
        mode = None if self.compile in (True, "default") else self.compile
        pl_module.accelerate(channels_last=self.channels_last, compile_mode=mode if self.compile else False)


def trainer_arguments(trainer_cfg: DictConfig | dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``trainer`` into the Trainer's own arguments and the :class:`Acceleration` settings."""
    node = OmegaConf.to_container(trainer_cfg, resolve=True) if isinstance(trainer_cfg, DictConfig) else dict(trainer_cfg)
    acceleration = {key: node.pop(key) for key in ACCELERATION_KEYS if key in node}
    return node, acceleration


def build_trainer(trainer_cfg: DictConfig | dict, callbacks: list[pl.Callback] | None = None,
                  **kwargs: Any) -> pl.Trainer:
    """The configured Trainer with the :class:`Acceleration` callback for the non-Trainer settings."""
    arguments, acceleration = trainer_arguments(trainer_cfg)
    if str(arguments.get("accelerator", "auto")) != "tpu" and "plugins" not in arguments:
        kwargs.setdefault("plugins", [AtomicCheckpointIO()])  # XLA keeps its own checkpoint IO
    return instantiate(arguments, callbacks=[*(callbacks or []), Acceleration(**acceleration)], **kwargs)
