"""The config checks only the training libraries can answer: Lightning's accelerators, strategies and precisions,
the opsets torch's ONNX exporter writes, and a trusted optimizer class. Every task runs them before its own.
"""

from __future__ import annotations

import typing
from typing import Any

import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
from omegaconf import DictConfig
from torch.onnx import _constants

from visiontrain.config.reading import value
from visiontrain.config.targets import check_targets
from visiontrain.errors import ConfigError, UntrustedTarget


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


def check_opset(cfg: DictConfig, key: str = "export.opset") -> None:
    """``export.opset`` (`export`'s ``opset``) within what torch's ONNX exporter writes (both exports use the
    TorchScript one)."""
    highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    lowest = max(13, _constants.ONNX_MIN_OPSET)  # int8 quantization and the exported ops need 13
    opset = value(cfg, key)
    if isinstance(opset, bool) or not isinstance(opset, int) or not lowest <= opset <= highest:
        exporter = f"torch {torch.__version__.split('+')[0]}"
        raise ConfigError(key, f"must be an integer from {lowest} to {highest} (what {exporter} exports), got "
                          f"{opset!r}", f"{key}={min(17, highest)}")


def check_optimizer_class(cfg: DictConfig) -> None:
    try:
        check_targets(cfg.optimizer, "optimizer", "optimizer")
    except UntrustedTarget as error:
        raise ConfigError("optimizer._target_", str(error),
                          "optimizer=adamw (or sgd), or a torch.optim class") from None
