"""``visiontrain retrain registry=<folder | URL> model=<name> data=<fresh table | image folder>``.

The loop is :mod:`visiontrain.retraining`; this is the command: its typed options in, the report and a short
summary out. A challenger that is not promoted is an answer, not an error (exit 0), unless ``fail_on_refuse=true``
asks a pipeline to stop on it (exit 1). No torch in this process: the challenger trains in its own.
"""

from __future__ import annotations

from pathlib import Path

from visiontrain.config.commands import RetrainOptions
from visiontrain.retraining.loop import RetrainOutcome, run_retraining

EXIT_ON_REFUSE = 1


def retrain(options: RetrainOptions, run_dir: Path) -> RetrainOutcome:
    """Run the loop into ``run_dir`` and print its summary; exit 1 on a refusal when ``fail_on_refuse``."""
    outcome = run_retraining(options, run_dir)
    print(outcome.summary(), flush=True)
    if not outcome.promoted and options.fail_on_refuse:
        raise SystemExit(EXIT_ON_REFUSE)
    return outcome
