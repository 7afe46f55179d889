"""The ``ckpt=`` a checkpoint command works on: checked, then read once as plain data (no unpickling)."""

from __future__ import annotations

from pathlib import Path

from visiontrain.errors import ConfigError
from visiontrain.training.checkpoints import read_checkpoint


def checkpoint_from(ckpt: str) -> tuple[Path, dict]:
    """The ``ckpt=`` file and its contents, read once as plain data (see :func:`read_checkpoint`)."""
    path = Path(ckpt).expanduser()
    if "://" not in ckpt and not path.is_file():
        raise ConfigError("ckpt", f"checkpoint {path} does not exist", "ckpt=/path/to/a/visiontrain.ckpt")
    return path, read_checkpoint(ckpt)
