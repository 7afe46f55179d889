"""Check a composed config before training: wrong types and values fail here, naming the key and the fix.

Unknown keys (``optimizer.lrr=...``) are caught earlier, in :mod:`visiontrain.config.overrides`. The checks that
need no library (:mod:`visiontrain.config.checks`, pydantic models) run first, and the `visiontrain` command
runs those alone before it imports any command. This module adds what only the libraries can tell: Lightning's
precisions, the opsets torch exports, whether CUDA sees a GPU, timm's backbone names, packaged weights,
albumentations transforms, torch.optim and scikit-learn classes, the table's cleaning rules and its source.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
from omegaconf import DictConfig, OmegaConf
from torch.onnx import _constants

from visiontrain.config.checks import (check_evaluate_config, check_export_config, check_lr_find_config,
                                       check_no_literal_secrets, check_sweeper, check_train_config)
from visiontrain.config.reading import value
from visiontrain.config.targets import UntrustedTarget, check_targets
from visiontrain.data.builtin import is_materialised
from visiontrain.data.transforms import build_train_transform
from visiontrain.errors import ConfigError, DataError, WeightsError
from visiontrain.models.backbone import check_backbone_name
from visiontrain.models.weight_source import weight_source
from visiontrain.tabular.cleansing import CleaningRules
from visiontrain.tabular.features import FeatureOptions
from visiontrain.tabular.inference import InferenceOptions
from visiontrain.tabular.ingest import detect_format, source_from_environment
from visiontrain.tasks.image import input_spec_from, train_steps_for

__all__ = ["validate_train_config", "validate_evaluate_config", "validate_export_config", "validate_lr_find_config",
           "validate_sweeper", "check_no_literal_secrets"]

validate_sweeper = check_sweeper  # needs no library: the CLI calls it before a multirun starts


def validate_evaluate_config(cfg: DictConfig) -> None:
    """`visiontrain evaluate`: its keys, then its trainer (the checkpoint's settings are checked when read)."""
    check_evaluate_config(cfg)
    _check_trainer(cfg)


def validate_export_config(cfg: DictConfig) -> None:
    """`visiontrain export`: its keys, then ``opset`` against the installed torch exporter."""
    check_export_config(cfg)
    _check_opset(cfg, "opset")


def validate_train_config(cfg: DictConfig) -> None:
    """Every check that can fail without touching data or weights, then the data location."""
    task = check_train_config(cfg)
    _check_trainer(cfg)
    _check_opset(cfg)
    if task == "tabular":
        _check_tabular_libraries(cfg)
    else:
        _check_image_libraries(cfg)


def validate_lr_find_config(cfg: DictConfig) -> None:
    """`visiontrain lr_find`: everything `train` checks, then the range test's own keys."""
    check_lr_find_config(cfg)
    _check_trainer(cfg)
    _check_opset(cfg)
    _check_image_libraries(cfg)


def _check_image_libraries(cfg: DictConfig) -> None:
    """Optimizer class, weights and backbone (timm), the augmentation (albumentations), a built-in data root."""
    _check_optimizer_class(cfg)
    source = weight_source(cfg.model)  # one weights source, and a backbone that fits it
    check_backbone_name(source.backbone)
    if source.packaged:
        try:
            source.packaged.path()  # a missing package fails now, before any data is read
        except WeightsError as error:
            raise ConfigError("model.weights", str(error), source.packaged.pip_install) from None
    spec = input_spec_from(cfg)
    build_train_transform(spec, train_steps_for(cfg, spec))  # a bad transform fails here, naming its index
    builtin = value(cfg, "data.builtin")
    if builtin is not None:
        root = Path(str(value(cfg, "data.root"))).expanduser()
        if root.exists() and not is_materialised(root) and (not root.is_dir() or any(root.iterdir())):
            raise ConfigError("data.root", f"{root} is an existing folder, but data.builtin={builtin} would write "
                              "the built-in dataset there", "to train on your folder add data=image_folder "
                              "(or data.builtin=null); for the built-in data leave data.root unset")


def _check_tabular_libraries(cfg: DictConfig) -> None:
    """The model's classes, the cleaning and feature options, and where the table comes from."""
    task_type = str(cfg.data.task_type)
    if cfg.model.kind == "mlp":
        _check_optimizer_class(cfg)
    else:
        where = f"model.estimator.{task_type}"
        try:
            check_targets(OmegaConf.select(cfg, where), "estimator", where)
        except UntrustedTarget as error:
            fix = "a scikit-learn estimator class, e.g. sklearn.linear_model.LogisticRegression"
            raise ConfigError(f"{where}._target_", str(error), fix) from None
    CleaningRules.from_config(cfg.data.get("cleaning"))
    InferenceOptions.from_config(cfg.data.get("inference"))
    FeatureOptions.from_config(cfg.get("features"))
    source = value(cfg, "data.source")
    variable = value(cfg, "data.source_env")
    if variable:
        source = source_from_environment(str(variable))
    if source is None:
        return
    fmt = value(cfg, "data.format")
    try:
        detected = detect_format(str(source)) if fmt == "auto" else fmt
    except DataError as error:
        raise ConfigError("data.format", str(error), "data.format=csv (or json, jsonl, parquet, sql)") from None
    if detected in ("kafka", "http"):  # read at the start of the run: a broker or an API is not checked twice
        return
    if detected != "sql" and not Path(str(source)).expanduser().is_file():
        raise ConfigError("data.source", f"{source} does not exist",
                          "data.source=/path/to/table.csv (or .json, .jsonl, .parquet, .db, or a SQLAlchemy URL)")
    if detected == "sql" and not (value(cfg, "data.table") or value(cfg, "data.query")):
        raise ConfigError("data.table", "a database source needs a table or a query",
                          "data.table=customers (or data.query='SELECT * FROM customers')")


def _check_optimizer_class(cfg: DictConfig) -> None:
    try:
        check_targets(cfg.optimizer, "optimizer", "optimizer")
    except UntrustedTarget as error:
        raise ConfigError("optimizer._target_", str(error),
                          "optimizer=adamw (or sgd), or a torch.optim class") from None


def _check_trainer(cfg: DictConfig) -> None:
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


def _check_opset(cfg: DictConfig, key: str = "export.opset") -> None:
    """``export.opset`` (`export`'s ``opset``) within what torch's ONNX exporter writes (both exports use the
    TorchScript one)."""
    highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    lowest = max(13, _constants.ONNX_MIN_OPSET)  # int8 quantization and the exported ops need 13
    opset = value(cfg, key)
    if isinstance(opset, bool) or not isinstance(opset, int) or not lowest <= opset <= highest:
        exporter = f"torch {torch.__version__.split('+')[0]}"
        raise ConfigError(key, f"must be an integer from {lowest} to {highest} (what {exporter} exports), got "
                          f"{opset!r}", f"{key}={min(17, highest)}")
