"""The config checks only the training libraries can answer: Lightning's accelerators, strategies and precisions,
the ONNX exporter and the opsets it writes, and a trusted optimizer class. Every task runs them before its own.
"""

from __future__ import annotations

import importlib.util
import typing
from typing import Any

import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
from omegaconf import DictConfig
from torch.onnx import _constants

from visiontrain.config.choices import EXPORTERS
from visiontrain.config.reading import value
from visiontrain.config.targets import check_targets
from visiontrain.errors import ConfigError, UntrustedTarget

DYNAMO_MIN_OPSET = 18  # torch's TORCHLIB_OPSET (torch.onnx._internal.exporter._constants), a private constant


def check_trainer(cfg: DictConfig) -> None:
    """An accelerator and strategy Lightning knows, a GPU that CUDA sees, and a precision Lightning accepts."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    accelerators = ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))
    accelerator = value(cfg, "trainer.accelerator")
    if isinstance(accelerator, str) and accelerator not in accelerators:  # Lightning: after the data scan
        raise ConfigError("trainer.accelerator", f"must be one of {', '.join(accelerators)}, got {accelerator!r}",
                          "trainer=cpu (or trainer=gpu)")
    strategy = value(cfg, "trainer.strategy", "auto")
    strategies = ("auto", *sorted(StrategyRegistry.available_strategies()))
    if isinstance(strategy, str) and strategy not in strategies:  # (a mapping: a Strategy with _target_)
        raise ConfigError("trainer.strategy", f"must be one of Lightning's strategies ({', '.join(strategies[:8])}, "
                          f"...), got {strategy!r}", "trainer.strategy=ddp (or auto)")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator", "asks for a GPU but CUDA sees none on this machine",
                          "trainer=cpu (or run on a machine with an NVIDIA GPU and driver)")
    precision = value(cfg, "trainer.precision")
    allowed = lightning_precisions()
    if isinstance(precision, bool) or precision not in allowed:
        names = ", ".join(str(v) for v in allowed if isinstance(v, str) and "-" in v)
        raise ConfigError("trainer.precision", f"must be one of {names} (or 16, 32, 64, bf16), got {precision!r}",
                          "trainer.precision=32-true (bf16-mixed or 16-mixed on a GPU)")


def lightning_precisions() -> tuple[Any, ...]:
    """Every ``precision`` value Lightning's Trainer accepts (``32-true``, ``bf16-mixed``, 16, "bf16", ...)."""

    def flatten(kind: Any) -> list[Any]:
        return [v for arg in typing.get_args(kind) for v in (flatten(arg) if typing.get_args(arg) else [arg])]

    return tuple(flatten(_PRECISION_INPUT))


def check_opset(cfg: DictConfig, key: str = "export.opset", exporter_key: str = "export.exporter") -> None:
    """``export.opset`` (`export`'s ``opset``) within what the chosen torch ONNX exporter writes."""
    exporter, opset = value(cfg, exporter_key, "torchscript"), value(cfg, key)
    if _writes(exporter, opset):
        return
    lowest, highest = opset_range(exporter)
    fix = f"{key}={max(lowest, min(17, highest))}"
    other = next(name for name in EXPORTERS if name != exporter)
    if _writes(other, opset):
        fix += f", or {exporter_key}={other} (which writes opset {opset})"
    raise ConfigError(key, f"must be an integer from {lowest} to {highest} (what torch "
                      f"{torch.__version__.split('+')[0]}'s {exporter} exporter writes), got {opset!r}", fix)


def check_exporter(cfg: DictConfig, key: str = "export.exporter") -> None:
    """``export.exporter=dynamo`` needs onnxscript, which torch imports only when it exports: say so before
    training, not after it."""
    if value(cfg, key, "torchscript") == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise ConfigError(key, "dynamo needs the onnxscript package, which is not installed",
                          f"pip install onnxscript (it comes with visiontrain[train]), or {key}=torchscript")


def opset_range(exporter: str) -> tuple[int, int]:
    """The opsets ``exporter`` writes as asked: torchscript up to its own maximum; dynamo from the lowest it has
    translations for (below it torch converts down, which fails on our graphs and leaves 18 in the file)."""
    if exporter == "dynamo":
        return DYNAMO_MIN_OPSET, _constants.ONNX_MAX_OPSET
    highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    return max(13, _constants.ONNX_MIN_OPSET), highest  # int8 quantization and the exported ops need 13


def _writes(exporter: str, opset: Any) -> bool:
    lowest, highest = opset_range(exporter)
    return isinstance(opset, int) and not isinstance(opset, bool) and lowest <= opset <= highest


def check_optimizer_class(cfg: DictConfig) -> None:
    try:
        check_targets(cfg.optimizer, "optimizer", "optimizer")
    except UntrustedTarget as error:
        raise ConfigError("optimizer._target_", str(error),
                          "optimizer=adamw (or sgd), or a torch.optim class") from None
