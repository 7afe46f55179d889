"""visiontrain's Optuna sweeper, where Hydra looks for plugins (``hydra_plugins.*``).

Hydra imports every module here at start-up, so the sweeper's module imports Optuna only when a sweep runs. Its settings live in conf/hydra/sweeper/optuna.yaml.
"""

from __future__ import annotations

from visiontrain.sweeps.optuna_sweeper import OptunaSweeper as _OptunaSweeper


class OptunaSweeper(_OptunaSweeper):
    """Hydra's plugin registry keys a plugin by the module that defines it: so it is defined here."""
