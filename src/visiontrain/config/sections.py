"""Config sections both tasks share: run, export, optimizer, trainer, tracking (what Lightning and wandb would
only reject once training has started).

Each field states its type, range and an example that becomes the fix (``optimizer.lr=1e-3``); rules across
fields are validators that raise a :class:`ConfigError` naming the key to change.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from visiontrain.config.choices import COMPILE_MODES, EXPORTERS, MINIMISED, TASK_NAMES, WANDB_MODES
from visiontrain.config.reading import Section, existing_file
from visiontrain.core.names import IMAGE_TASK
from visiontrain.core.registry_names import check_alias, check_name
from visiontrain.errors import ConfigError, RegistryError


class Monitor(Section):
    """The metric that picks the best checkpoint; which metrics exist depends on the task (see its model)."""

    metric: str
    mode: Literal["max", "min"]

    def check(self, monitorable: tuple[str, ...]) -> None:
        """``metric`` among what the task logs, and ``mode`` the direction that metric improves in."""
        if self.metric not in monitorable:
            raise ConfigError("monitor.metric", f"must be one of {', '.join(monitorable)}; got {self.metric!r}",
                              f"monitor.metric={monitorable[0]}")
        minimised = self.metric in MINIMISED
        if minimised != (self.mode == "min"):
            direction = "minimised" if minimised else "maximised"
            raise ConfigError("monitor.mode", f"{self.metric} should be {direction}",
                              f"monitor.mode={'min' if minimised else 'max'}")


class Export(Section):
    """``export.*``; ``opset`` is checked against the installed torch exporter in the library checks.

    ``exporter`` defaults here too: a run saved before the key existed was exported by torchscript."""

    onnx: bool
    opset: int = Field(examples=["17"])
    exporter: Literal[EXPORTERS] = "torchscript"  # type: ignore[valid-type]
    parity_images: int = Field(ge=0, examples=["32"])
    atol: float = Field(gt=0, examples=["1e-3"])
    quantize: Literal["int8"] | None = None
    calibration_images: int = Field(128, ge=1, examples=["128"])


class Optimizer(Section):
    """``optimizer.*``: the class is checked against torch.optim in the library checks."""

    target: Any = Field(None, alias="_target_")
    lr: float = Field(gt=0, examples=["1e-3"])
    weight_decay: float | None = Field(None, ge=0, examples=["0.05"])

    @field_validator("target")
    @classmethod
    def _has_class(cls, target: Any) -> Any:
        if not target:
            raise ConfigError("optimizer._target_", "no optimizer class is set", "optimizer=adamw (or sgd)")
        return target


class Trainer(Section):
    """``trainer.*``; ``precision`` (Lightning's list) and a GPU's presence are checked in the library checks."""

    accelerator: Any = None
    strategy: Any = None  # Lightning's (auto, ddp, ...); DDP starts one training process per device
    max_epochs: int = Field(ge=1, examples=["10"])
    accumulate_grad_batches: int = Field(ge=1, examples=["1"])
    devices: Any = 1
    gradient_clip_val: float | None = Field(None, ge=0, examples=["1.0"])  # null: no clipping
    channels_last: bool | None = None
    compile: Any = None
    benchmark: bool | None = None  # null: Lightning's choice
    deterministic: Any = None
    enable_progress_bar: bool | None = None
    check_val_every_n_epoch: int | None = Field(None, ge=1, examples=["1"])
    log_every_n_steps: int | None = Field(None, ge=1, examples=["10"])
    num_sanity_val_steps: int | None = Field(None, ge=-1, examples=["0"])

    @field_validator("accelerator")
    @classmethod
    def _tpu_needs_torch_xla(cls, accelerator: Any) -> Any:
        if str(accelerator) == "tpu" and importlib.util.find_spec("torch_xla") is None:
            raise ConfigError("trainer", "trainer=tpu needs torch_xla, which is not installed",
                              "on a TPU VM: pip install 'torch_xla[tpu]' matching your torch version; elsewhere "
                              "use trainer=cpu or trainer=gpu")
        return accelerator

    @field_validator("devices")
    @classmethod
    def _devices_lightning_takes(cls, devices: Any) -> Any:
        """What Lightning takes: a count (-1: all), ``auto``, a list of ids or ``"0,1"``."""
        if not _valid_devices(devices):
            raise ConfigError("trainer.devices", "must be a number of devices (>= 1, or -1 for all), auto, a list "
                              f"of device ids or a string like \"0,1\"; got {devices!r}",
                              "trainer.devices=1 (or auto)")
        return devices

    @field_validator("deterministic")
    @classmethod
    def _deterministic(cls, setting: Any) -> Any:
        if setting is not None and not isinstance(setting, bool) and setting != "warn":
            raise ConfigError("trainer.deterministic", f"must be true, false or warn, got {setting!r}",
                              "trainer.deterministic=true")
        return setting

    @field_validator("compile")
    @classmethod
    def _compile_mode(cls, mode: Any) -> Any:
        valid = isinstance(mode, bool) or (isinstance(mode, str) and mode in COMPILE_MODES)
        if mode is not None and not valid:
            raise ConfigError("trainer.compile", f"must be one of {', '.join(map(str, COMPILE_MODES))}, got "
                              f"{mode!r}", "trainer.compile=true")
        return mode


def _valid_devices(devices: Any) -> bool:
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or devices == -1
    if isinstance(devices, str):
        text = devices.strip()
        ids = [part.strip() for part in text.split(",") if part.strip()]
        return text in ("auto", "-1") or (bool(ids) and all(part.isdigit() for part in ids)
                                          and ("," in text or int(ids[0]) >= 1))
    if isinstance(devices, list):
        return len(devices) > 0 and all(type(d) is int and d >= 0 for d in devices)  # bool is not an id
    return False


class Wandb(Section):
    mode: Literal[WANDB_MODES]  # type: ignore[valid-type]


class Loggers(Section):
    wandb: Wandb | None = None


class EarlyStopping(Section):
    patience: int = Field(ge=0, examples=["10"])


class ModelCheckpoint(Section):
    save_top_k: int = Field(ge=-1, examples=["1"])


class Callbacks(Section):
    early_stopping: EarlyStopping | None = None
    model_checkpoint: ModelCheckpoint | None = None


class Run(Section):
    """What every training run has: the seed, the monitor, export, a checkpoint to resume, tracking."""

    task: Literal[TASK_NAMES] = IMAGE_TASK  # type: ignore[valid-type]
    seed: int = Field(ge=0, examples=["42"])
    monitor: Monitor
    export: Export
    ckpt_path: str | None = None
    register_as: str | None = Field(None, alias="register", min_length=1, examples=["churn"])  # (BaseModel has
    # a `register`)
    registry: str | None = Field(None, min_length=1, examples=["/mnt/models"])
    register_alias: str | None = Field(None, min_length=1, examples=["candidate"])
    logger: Loggers | None = None
    callbacks: Callbacks | None = None
    _decided: Any = PrivateAttr(None)  # what the task's library checks built from these settings

    @property
    def decided(self) -> Any:
        """What the task's library checks decided and built while checking (the image task: the weight source,
        the input spec and the train transform), for the task to use rather than decide again; None if unchecked."""
        return self._decided

    def with_decided(self, decided: Any) -> Run:
        """These settings with what the library checks decided (see :attr:`decided`)."""
        checked = self.model_copy()
        checked._decided = decided
        return checked

    @model_validator(mode="after")
    def _registration(self) -> Run:
        """register= needs a registry and an export; names and aliases are checked before training, not after."""
        if self.register_as is None:
            if self.register_alias is not None:
                raise ConfigError("register_alias", "is set but register= is not: no version to point it at",
                                  "register=<model name> register_alias=candidate")
            return self
        if self.registry is None:
            raise ConfigError("registry", f"register={self.register_as} needs a registry (and $VISIONTRAIN_REGISTRY "
                              "is empty)", "registry=<a shared folder or an fsspec URL>")
        if not self.export.onnx:
            raise ConfigError("register", "registers the exported ONNX model, but export.onnx=false",
                              "export.onnx=true, or register=null")
        try:
            check_name(self.register_as)
            if self.register_alias is not None:
                check_alias(self.register_alias)
        except RegistryError as error:
            key = "register_alias" if self.register_alias and str(error).startswith(repr(self.register_alias)) \
                else "register"
            raise ConfigError(key, str(error), "register=churn register_alias=candidate") from None
        return self

    @field_validator("ckpt_path")
    @classmethod
    def _checkpoint_exists(cls, ckpt: str | None) -> str | None:
        return existing_file(ckpt, "ckpt_path", "checkpoint", "ckpt_path=<run dir>/checkpoints/last.ckpt")
