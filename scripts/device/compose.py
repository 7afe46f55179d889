"""Compose and validate `visiontrain train` configs, given as a JSON list of override lists on stdin.

The device check runs this before its GPU steps (and in its dry run without a GPU), so that a config mistake in
the commands it is about to run shows in seconds, not after minutes of device time. Where CUDA is absent the
trainer's accelerator is swapped for the CPU during validation only; everything else is checked as given.
"""

from __future__ import annotations

import json
import sys
import tempfile

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visiontrain.commands.validation import validate_train_config
from visiontrain.config import config_dir


def validate(overrides: list[str], run_dir: str) -> str | None:
    """None when the config composes and passes every check, else what is wrong."""
    kept = [o for o in overrides if not o.startswith("hydra.")] + [f"paths.run_dir={run_dir}"]
    try:
        cfg = compose("train", overrides=kept)
        if not torch.cuda.is_available() and cfg.trainer.accelerator in ("gpu", "cuda"):
            with open_dict(cfg):
                cfg.trainer.accelerator = "cpu"
        validate_train_config(cfg)
    except Exception as error:  # ConfigError, and Hydra's own (an unknown key or group)
        return f"{type(error).__name__}: {error}"
    return None


def main() -> None:
    runs = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as run_dir, initialize_config_dir(version_base="1.3",
                                                                         config_dir=str(config_dir())):
        print(json.dumps([{"overrides": overrides, "error": validate(overrides, run_dir)} for overrides in runs]))


if __name__ == "__main__":
    main()
