"""The sweep trial running in this process, for the training run to report to (and be pruned by).

The sweeper runs each trial in its own process (Hydra's basic launcher), so it sets the trial here before the
run starts and clears it after; a run outside a sweep finds nothing and reports nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from visiontrain.errors import TrialPruned

if TYPE_CHECKING:
    import optuna

_active: optuna.Trial | None = None


@contextmanager
def running(trial: optuna.Trial) -> Iterator[None]:
    global _active
    _active = trial
    try:
        yield
    finally:
        _active = None


def active_trial() -> optuna.Trial | None:
    return _active


def report(value: float | None, step: int) -> bool:
    """Report ``value`` at ``step`` (an epoch, or a cross-validation fold) to the active trial; True when the
    pruner says to stop. Nothing to report (no sweep, no value) never stops a run."""
    trial = _active
    if trial is None or value is None or value != value:  # NaN: a value Optuna cannot rank
        return False
    trial.report(float(value), step)
    return trial.should_prune()


def record_epochs(epochs: int) -> None:
    """How many epochs the trial has trained so far (the sweep report and its benchmark sum them)."""
    if _active is not None:
        _active.set_user_attr("epochs", int(epochs))


def stop(step: int, value: float | None) -> TrialPruned:
    """The exception that ends a pruned trial's run (the caller raises it)."""
    return TrialPruned(step, value)
