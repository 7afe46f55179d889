"""The ``ckpt=`` a checkpoint command works on: checked, then read once as plain data (no unpickling)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from visiontrain.errors import ConfigError
from visiontrain.training.checkpoints import read_checkpoint


def checkpoint_from(cfg: DictConfig) -> tuple[Path, dict]:
    """The ``ckpt=`` file and its contents, read once as plain data (see :func:`read_checkpoint`)."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError("ckpt", "is required", "ckpt=outputs/<experiment>/runs/<time>/checkpoints/last.ckpt")
    path = Path(str(cfg.ckpt)).expanduser()
    if "://" not in str(cfg.ckpt) and not path.is_file():
        raise ConfigError("ckpt", f"checkpoint {path} does not exist", "ckpt=/path/to/a/visiontrain.ckpt")
    return path, read_checkpoint(str(cfg.ckpt))
