"""Optuna's own plots of a study (``optuna.visualization.matplotlib``) as PNGs for the sweep report.

A plot that cannot be drawn (too few completed trials, no intermediate values, a single value per parameter) is
skipped with its reason, never raised: the report is written whatever the sweep produced. Parameters present in
some trials only (a condition) are left to Optuna, which plots each trial's own parameters and computes
importances over the parameters every completed trial shares.

Importances use Optuna's default evaluator, fANOVA (seeded for a stable picture), not a faster, rougher one:
measured on CPU for 6 parameters (2 conditional), it takes 0.5 s for 50 trials (3 s the first time in a process,
importing scikit-learn), 2.9 s for 200 and 4.5 s for 500; the whole report of 50 trials about 3 s.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visiontrain.core.atomic import write_atomically

if TYPE_CHECKING:
    import optuna

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")
LEGEND_MAX_TRIALS = 10  # beyond this a legend of trial numbers hides the curves
DPI = 100


@dataclass(frozen=True)
class Plots:
    """The PNGs drawn (name -> path) and the plots skipped (name -> why), in :data:`PLOTS` order."""

    drawn: Mapping[str, Path]
    skipped: Mapping[str, str]


def draw_plots(study: optuna.Study, folder: Path) -> Plots:
    """Every plot of :data:`PLOTS` that the study allows, as ``folder/<name>.png``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed (or there) where a sweep ends
    metric = str(study.user_attrs.get("metric") or "Objective Value")
    drawn: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for name in PLOTS:
        reason = _cannot_draw(name, study)
        if reason is None:
            try:
                with warnings.catch_warnings():  # "experimental" (Optuna), singular limits, tight layout: noise
                    warnings.simplefilter("ignore")
                    drawn[name] = _save(_DRAW[name](study, metric), folder / f"{name}.png")
                continue
            except Exception as error:  # noqa: BLE001 - Optuna's reason, recorded; the report goes on
                reason = _first_line(error)
        skipped[name] = reason
    return Plots(drawn, skipped)


def _cannot_draw(name: str, study: optuna.Study) -> str | None:
    """Why ``name`` cannot be drawn, said before Optuna says it less clearly (or warns and draws nothing)."""
    from optuna.trial import TrialState

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if name == "intermediate_values":
        reported = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return None if any(t.intermediate_values for t in reported) else "no trial reported intermediate values"
    if len(completed) < 2:
        return f"needs 2 completed trials, the study has {len(completed)}"
    if name == "param_importances":
        shared = set.intersection(*(set(t.params) for t in completed))
        if not any(len({repr(t.params[key]) for t in completed}) > 1 for key in shared):
            return "no parameter that every completed trial has took more than one value"
        if len({t.value for t in completed}) == 1:
            return f"every completed trial scored {completed[0].value}: nothing to attribute"
    return None


def _draw_history(study: optuna.Study, metric: str) -> Any:
    from optuna.visualization.matplotlib import plot_optimization_history

    return plot_optimization_history(study, target_name=metric)


def _draw_importances(study: optuna.Study, metric: str) -> Any:
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_param_importances

    return plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), target_name=metric)


def _draw_parallel(study: optuna.Study, metric: str) -> Any:
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    axes = plot_parallel_coordinate(study, target_name=metric)
    keys = {key for trial in study.trials for key in trial.params}
    width, height = axes.figure.get_size_inches()
    axes.figure.set_size_inches(max(width, 1.5 * (len(keys) + 1)), height)  # Optuna's size crowds 5+ axes
    return axes


def _draw_intermediate(study: optuna.Study, metric: str) -> Any:
    from optuna.visualization.matplotlib import plot_intermediate_values

    axes = plot_intermediate_values(study)
    if axes.get_legend() is not None and len(axes.get_lines()) > LEGEND_MAX_TRIALS:
        axes.get_legend().remove()
    axes.set_ylabel(f"{metric} (each epoch or fold)")
    return axes


_DRAW: dict[str, Callable[[optuna.Study, str], Any]] = {
    "optimization_history": _draw_history,
    "param_importances": _draw_importances,
    "parallel_coordinate": _draw_parallel,
    "intermediate_values": _draw_intermediate,
}


def _save(draw_result: Any, target: Path) -> Path:
    """The figure of ``draw_result`` (Axes, or an array of them) as a PNG, written atomically; the figure closed."""
    import matplotlib.pyplot as plt
    import numpy as np

    axes = draw_result if hasattr(draw_result, "figure") else np.asarray(draw_result).ravel()[0]
    figure = axes.figure
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        write_atomically(buffer.getvalue(), target)
    finally:
        plt.close(figure)
    return target


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
