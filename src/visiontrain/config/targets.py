"""The classes a ``_target_`` may name in settings that travel inside a checkpoint.

A checkpoint stores its model's settings (optimizer, estimator) as plain data, and rebuilding the model calls
Hydra's ``instantiate`` on them. Left open, a checkpoint from a colleague or from W&B could then run code without
any pickle: ``{_target_: torch.load, _args_: [other.pt], weights_only: false}`` or ``builtins.open``. So every
``_target_`` in such a node, nested ones included, must name a class of the kind its role allows, from the package
that role allows, and no value may be an interpolation (``${oc.env:...}`` would read the environment).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

from visiontrain.errors import UntrustedTarget

# the one interpolation a run stores: a data source URL with a secret, kept as the variable it came from
ENV_REFERENCE = re.compile(r"\$\{oc\.env:[A-Za-z_][A-Za-z0-9_]*\}")
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class Role:
    """What a node of one role may build: subclasses of one of ``bases`` defined under one of ``packages``, or
    one of the factories named in ``also`` (visiontrain's own, by their full name)."""

    packages: tuple[str, ...]
    bases: tuple[str, ...]
    also: tuple[str, ...] = ()

    def base_classes(self) -> tuple[type, ...]:
        return tuple(getattr(importlib.import_module(module), name)
                     for module, _, name in (base.rpartition(".") for base in self.bases))

    def describe(self) -> str:
        allowed = f"subclasses of {' or '.join(self.bases)} from {' or '.join(self.packages)}"
        return allowed + "".join(f", or {name}" for name in self.also)


ROLES = {
    "optimizer": Role(("torch.optim",), ("torch.optim.Optimizer",)),
    "estimator": Role(("sklearn",), ("sklearn.base.BaseEstimator",)),
    # what a checkpoint's stored run config names besides: its augmentations, and the run's trainer, loggers and
    # callbacks (recorded by checkpoints written before those three were left out of it)
    "augmentation": Role(("albumentations",), ("albumentations.core.transforms_interface.BasicTransform",
                                               "albumentations.core.composition.BaseCompose")),
    "trainer": Role(("lightning.pytorch",), ("lightning.pytorch.Trainer",)),
    "logger": Role(("lightning.pytorch.loggers",), ("lightning.pytorch.loggers.Logger",),
                   also=("visiontrain.tracking.wandb_run.create_wandb_logger",)),
    "callback": Role(("lightning.pytorch.callbacks", "visiontrain"), ("lightning.pytorch.callbacks.Callback",)),
    # a sweep's sampler and pruner (hydra.sweeper.*)
    "sampler": Role(("optuna.samplers",), ("optuna.samplers.BaseSampler",)),
    "pruner": Role(("optuna.pruners",), ("optuna.pruners.BasePruner",)),
}


def check_targets(node: Any, role: str, where: str) -> None:
    """Raise :class:`UntrustedTarget` unless every ``_target_`` under ``node`` is a class ``role`` allows."""
    allowed = ROLES[role]
    for path, key, value in _walk(node, where):
        if isinstance(value, str) and "${" in value:
            raise UntrustedTarget(f"{path}: interpolations are not allowed in stored {role} settings ({value!r})")
        if key == "_target_":
            _check_one(value, allowed, role, path)


def instantiate_trusted(node: Any, role: str, where: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` after :func:`check_targets`: the only way stored settings become objects."""
    check_targets(node, role, where)
    return instantiate(node, **kwargs)


def _check_one(target: Any, allowed: Role, role: str, path: str) -> None:
    article = "an" if role[0] in "aeiou" else "a"
    refusal = f"{path} = {target!r} is not {article} {role} class (allowed: {allowed.describe()}); refusing to build it"
    if isinstance(target, str) and target in allowed.also:
        return
    if not isinstance(target, str) or not _DOTTED_NAME.fullmatch(target) or \
            not any((target + ".").startswith(package + ".") for package in allowed.packages):
        raise UntrustedTarget(refusal)
    module_name, _, attribute = target.rpartition(".")
    try:  # importing a module of an allowed package runs only that library's code
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        raise UntrustedTarget(f"{path} = {target!r} cannot be imported") from None
    if not isinstance(found, type) or not issubclass(found, allowed.base_classes()):
        raise UntrustedTarget(refusal)


def _walk(node: Any, path: str):
    """Every (path, key, value) under nested dicts and lists; OmegaConf containers are read unresolved."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        child = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
        yield child, key, value
        yield from _walk(value, child)
