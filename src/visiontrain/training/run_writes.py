"""A run dir that stops being writable ends the run once, quietly, whichever of its writers meets it first.

The writers are many (checkpoints, the CSV and W&B loggers, history.csv, reports, visiontrain.log) and most are
not ours, so none of them words the error: the `visiontrain` command turns the first refused write found in the
error's chain into one ``write error`` line (:func:`visiontrain.errors.run_write_error`). What this module adds
is quiet around it: :class:`RunWriteGuard` keeps Lightning's teardown from finalizing loggers into the same
refusing folder (a second traceback that buried the first), and stops training when only the log file failed.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from visiontrain.core.log_routing import quiet_file_logs, run_log_failure
from visiontrain.errors import write_failure


class RunWriteGuard(pl.Callback):
    """On an exception that is a refused write inside ``run_dir``, the loggers are not finalized; after each epoch,
    a ``visiontrain.log`` that could not be written stops the run like any other refused write."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if write_failure(exception, self.run_dir) is not None:
            trainer.loggers = []  # Lightning finalizes these next: the CSV logger would rewrite metrics.csv

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        quiet_file_logs(self.run_dir)  # the loggers' files exist by now (W&B's debug.log)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise_if_log_failed(self.run_dir)


def raise_if_log_failed(run_dir: Path) -> None:
    """Raise the first write a log file of the run could not make, if any: a run whose logs are incomplete did
    not succeed."""
    failure = run_log_failure(run_dir)
    if failure is not None:
        raise failure
