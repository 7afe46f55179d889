"""A test-only Lightning callback that holds a real run still between two epochs, so a test can change the world
(make the run dir immutable) at a known point, with no sleep race.

Added to a run with ``+callbacks.pause._target_=run_pause.PauseBeforeEpoch`` and ``PYTHONPATH`` holding tests/;
``VISIONTRAIN_TEST_PAUSE`` names a folder outside the run dir: before epoch ``VISIONTRAIN_TEST_PAUSE_EPOCH``
(default 1) starts, the callback writes ``ready`` there and waits for ``go``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning.pytorch as pl

WAIT_SECONDS = 120  # a test that never says go fails instead of hanging


class PauseBeforeEpoch(pl.Callback):
    """Before the configured epoch: ``ready`` written, then wait until ``go`` exists."""

    def __init__(self) -> None:
        self.folder = Path(os.environ["VISIONTRAIN_TEST_PAUSE"])
        self.epoch = int(os.environ.get("VISIONTRAIN_TEST_PAUSE_EPOCH", "1"))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch:
            return
        (self.folder / "ready").write_text(str(trainer.current_epoch))
        deadline = time.monotonic() + WAIT_SECONDS
        while not (self.folder / "go").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {self.folder / 'go'} within {WAIT_SECONDS} s")
            time.sleep(0.05)
