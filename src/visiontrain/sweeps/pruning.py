"""Pruning inside a trial: the monitored metric reported to the sweep's study after every validation epoch.

When the pruner says stop, the fit ends after that epoch (``trainer.should_stop``, so checkpoints and history are
written as usual) and the run raises :class:`visiontrain.errors.TrialPruned` instead of evaluating and exporting
a model nobody will use; the sweeper records the trial as pruned, with its last value.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from visiontrain.sweeps import trial_context


class ReportToStudy(Callback):
    """Reports ``metric`` at each validation epoch's end to the active trial (rank 0; sanity checks skipped)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.pruned_at: int | None = None
        self.last_value: float | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != TrainerFn.FITTING:
            return  # the evaluation after the fit validates again: not an epoch
        value = trainer.callback_metrics.get(self.metric)
        value = float(value) if value is not None else None
        epoch = trainer.current_epoch
        trial_context.record_epochs(epoch + 1)
        self.last_value = value
        if trial_context.report(value, epoch):
            self.pruned_at = epoch
            trainer.should_stop = True

    def raise_if_pruned(self) -> None:
        if self.pruned_at is not None:
            raise trial_context.stop(self.pruned_at, self.last_value)


def pruning_callbacks(metric: str) -> list[Any]:
    """The callback for a run inside a sweep trial; none outside a sweep."""
    return [ReportToStudy(metric)] if trial_context.active_trial() is not None else []
