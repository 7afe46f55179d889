"""The checks of a sweep's own settings that need the sweeps layer (the search space, the sampler and pruner),
run once by `visiontrain` before the first trial: a mistake there would otherwise fail every trial alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from visiontrain.config.targets import check_targets
from visiontrain.errors import ConfigError
from visiontrain.sweeps.space import read_space

PRUNERS = {
    "median": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 4, "n_warmup_steps": 1},
    "successive_halving": {"_target_": "optuna.pruners.SuccessiveHalvingPruner"},
    "hyperband": {"_target_": "optuna.pruners.HyperbandPruner", "min_resource": 1},
}
NO_PRUNER = (None, "", "none", "null", False)


def pruner_node(choice: Any) -> dict[str, Any] | None:
    """``hydra.sweeper.pruner`` as a ``_target_`` mapping (None: no pruning); a name not known fails."""
    if OmegaConf.is_config(choice):
        choice = OmegaConf.to_container(choice, resolve=True)
    if choice in NO_PRUNER:
        return None
    if isinstance(choice, str):
        if choice not in PRUNERS:
            raise ConfigError("hydra.sweeper.pruner", f"{choice!r} is not a pruner",
                              f"one of {sorted(PRUNERS)} or null, or {{_target_: optuna.pruners.<Pruner>, ...}}")
        return dict(PRUNERS[choice])
    if not isinstance(choice, dict) or "_target_" not in choice:
        raise ConfigError("hydra.sweeper.pruner", f"{choice!r} is neither a pruner's name nor a _target_ mapping",
                          "hydra.sweeper.pruner=median")
    return choice


def check_sweep_settings(cfg: DictConfig, sweep_overrides: Sequence[Any]) -> None:
    """The sweeper's search space (with the command line's sweep overrides), sampler and pruner: readable, and
    naming only Optuna's own classes."""
    sweeper = OmegaConf.select(cfg, "hydra.sweeper")
    if sweeper is None or "visiontrain_sweeper" not in str(sweeper.get("_target_", "")):
        return  # Hydra's basic sweeper (a grid from the command line) has none of these
    params = sweeper.get("params")
    read_space(OmegaConf.to_container(params, resolve=False) if OmegaConf.is_config(params) else params,
               sweep_overrides)
    node = pruner_node(sweeper.get("pruner"))
    if node is not None:
        check_targets(node, "pruner", "hydra.sweeper.pruner")
    sampler = sweeper.get("sampler")
    if sampler:
        check_targets(OmegaConf.to_container(sampler, resolve=True), "sampler", "hydra.sweeper.sampler")
