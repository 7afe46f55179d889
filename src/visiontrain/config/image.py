"""The image classification config (``task=image_classification``) as pydantic models.

Types, ranges and choices of every key the run reads, and the rules across keys (frozen epochs vs epochs, mixup
vs an odd batch). What needs a library (timm's backbone names, albumentations transforms, packaged weights) is
checked afterwards, in :mod:`visiontrain.commands.validation`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from visiontrain.config.choices import (
    ACROSS_CLASSES_POLICIES,
    BN_STATS,
    BUILTIN_DATASETS,
    IMAGE_BALANCE,
    IMAGE_FORMATS,
    INTERPOLATIONS,
    MIXUP_MODES,
    MONITORABLE,
    WITHIN_CLASS_POLICIES,
)
from visiontrain.config.reading import Section, auto_or_count, below_one, existing_file, pixel_limit
from visiontrain.config.sections import Optimizer, Run, Trainer
from visiontrain.core.image_decode import DEFAULT_MAX_IMAGE_PIXELS
from visiontrain.errors import ConfigError


class Schedule(Section):
    """The two stages of fine-tuning: the backbone frozen for ``freeze_epochs`` (the head alone trains), then
    trained at its share of the rate."""

    # also how a classifier reads the schedule its checkpoint stored: the defaults are an older checkpoint's

    freeze_epochs: int = Field(0, ge=0, examples=["2"])
    unfreeze: Any = "all"
    backbone_lr_scale: float = Field(0.1, ge=0, examples=["0.1"])
    layer_decay: float | None = Field(None, gt=0, le=1, examples=["0.75"])
    warmup_epochs: float = Field(1.0, ge=0, examples=["1"])
    min_lr_ratio: float = Field(0.01, ge=0, le=1, examples=["0.01"])
    bn_stats: Literal[BN_STATS] = "frozen"  # type: ignore[valid-type]

    def is_frozen(self, epoch: int) -> bool:
        return epoch < self.freeze_epochs

    @field_validator("unfreeze")
    @classmethod
    def _all_or_a_count(cls, unfreeze: Any) -> Any:
        if unfreeze != "all" and (isinstance(unfreeze, bool) or not isinstance(unfreeze, int) or unfreeze < 0):
            raise ConfigError("schedule.unfreeze", "must be 'all' or a number of top blocks >= 0, got "
                              f"{unfreeze!r}", "schedule.unfreeze=all")
        return unfreeze


class ModelInput(Section):
    image_size: int | None = Field(None, ge=1, examples=["224"])
    crop_pct: float | None = Field(None, gt=0, le=1, examples=["0.875"])
    interpolation: Literal[INTERPOLATIONS] | None = None  # type: ignore[valid-type]  # null: the weights'
    mean: Any = None
    std: Any = None

    @field_validator("mean", "std")
    @classmethod
    def _three_numbers(cls, rgb: Any, info: Any) -> Any:
        if rgb is not None and (not isinstance(rgb, list) or len(rgb) != 3
                                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rgb)):
            key = f"model.input.{info.field_name}"
            raise ConfigError(key, f"must be three numbers (R, G, B) or null, got {rgb!r}", f"{key}=[0.5,0.5,0.5]")
        return rgb


class Ema(Section):
    """``model.ema``: a decay in (0, 1); 1 would never move the average away from the starting weights."""

    enabled: bool
    decay: float = Field(gt=0, le=1, examples=["0.999"])
    warmup: bool

    @field_validator("decay")
    @classmethod
    def _below_one(cls, decay: float) -> float:
        return below_one(decay, "model.ema.decay", "at 1 the average never leaves the starting weights",
                         "model.ema.decay=0.999")


class ImageModel(Section):
    backbone: str | None = Field(None, description="a timm model name", examples=["resnet18"])
    weights: str | None = Field(None, examples=["efficientnet_lite0.in1k"])  # packaged weights (checked with them)
    pretrained: bool
    drop_rate: float = Field(ge=0, le=1, examples=["0.2"])
    label_smoothing: float = Field(ge=0, le=1, examples=["0.1"])
    weights_file: str | None = None
    input: ModelInput
    ema: Ema | None = None

    @field_validator("weights_file")
    @classmethod
    def _file_exists(cls, weights: str | None) -> str | None:
        return existing_file(weights, "model.weights_file", "file",
                             "model.weights_file=/path/to/weights.safetensors (or .pth / .ckpt), or null")


class Mixup(Section):
    """``augment.mixup``: ranges and mode; at smoothing 1 every target would be uniform."""

    mixup_alpha: float = Field(ge=0, examples=["0.8"])
    cutmix_alpha: float = Field(ge=0, examples=["1.0"])
    prob: float = Field(ge=0, le=1, examples=["1.0"])
    switch_prob: float = Field(ge=0, le=1, examples=["0.5"])
    mode: Literal[MIXUP_MODES]  # type: ignore[valid-type]
    label_smoothing: float = Field(ge=0, le=1, examples=["0.1"])

    @field_validator("label_smoothing")
    @classmethod
    def _below_one(cls, smoothing: float) -> float:
        return below_one(smoothing, "augment.mixup.label_smoothing", "at 1 every target is uniform",
                         "augment.mixup.label_smoothing=0.1")

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


class Augment(Section):
    train: Any = None
    mixup: Mixup | None = None

    @field_validator("train")
    @classmethod
    def _a_list(cls, train: Any) -> Any:
        if not isinstance(train, list):
            raise ConfigError("augment.train", "must be a list of albumentations transforms",
                              "augment=light (or none / strong), or a list of {_target_: albumentations.X, ...}")
        return train


class Duplicates(Section):
    """``data.duplicates``: what to do with identical files (see :mod:`visiontrain.image.duplicates`); the
    defaults are a run config's from before the option existed."""

    across_classes: Literal[ACROSS_CLASSES_POLICIES] = "reject"  # type: ignore[valid-type]
    within_class: Literal[WITHIN_CLASS_POLICIES] = "warn"  # type: ignore[valid-type]


class ImageDataSettings(Section):
    """``data.*`` of an image run as the data code reads it, also from a checkpoint's stored run config (whose
    folder may have moved since: see :class:`ImageData` for the check of a run about to start). Defaults: the
    values of a run config saved before the key existed."""

    batch_size: int = Field(ge=1, examples=["32"])
    val_fraction: float = Field(gt=0, le=0.9, examples=["0.2"])
    num_workers: Any = "auto"
    balance: Literal[IMAGE_BALANCE]  # type: ignore[valid-type]
    format: Literal[IMAGE_FORMATS]  # type: ignore[valid-type]
    duplicates: Duplicates = Duplicates()
    allow_outside_root: bool = False
    pin_memory: Any = "auto"
    prefetch_factor: int | None = Field(None, ge=1, examples=["4"])  # batches each loader worker keeps ready
    builtin: Literal[BUILTIN_DATASETS] | None = None  # type: ignore[valid-type]
    root: Any = None
    max_image_pixels: Any = DEFAULT_MAX_IMAGE_PIXELS

    @field_validator("max_image_pixels")
    @classmethod
    def _a_pixel_limit(cls, pixels: Any) -> Any:
        """The rule serve, stream, predict and drift apply to their ``max_image_pixels`` (core.image_decode)."""
        pixel_limit(pixels, "data.max_image_pixels")
        return pixels

    @field_validator("num_workers")
    @classmethod
    def _auto_or_a_count(cls, workers: Any) -> Any:
        return auto_or_count(workers, "data.num_workers")

    @field_validator("pin_memory")
    @classmethod
    def _auto_or_boolean(cls, pin: Any) -> Any:
        if pin != "auto" and not isinstance(pin, bool):
            raise ConfigError("data.pin_memory", f"must be true or false (or auto), got {pin!r}",
                              "data.pin_memory=true")
        return pin


class ImageData(ImageDataSettings):
    # ``data.*`` of a run about to start: its images are where it says (no docstring: the reference shows the YAML's)

    @model_validator(mode="after")
    def _root_exists(self) -> ImageData:
        """A folder or a CSV manifest; a built-in dataset's root is checked with the dataset (written there)."""
        if self.builtin is not None:
            return self
        path = Path(str(self.root)).expanduser()
        if not path.exists():
            raise ConfigError("data.root", f"{path} does not exist", "data.root=/path/to/images: a folder with "
                              "train/ and val/, a folder of class folders, or a CSV manifest (path,label)")
        if path.is_file() and path.suffix.lower() != ".csv":
            raise ConfigError("data.root", f"{path} is a file but not a .csv manifest",
                              "data.root=/path/to/images")
        return self


class StoredImageData(ImageDataSettings):
    """``data.*`` as `evaluate` and `export` read it: a checkpoint's stored run config (defaults for the keys an
    older one lacks), or ``data_root`` evaluated in full (``val_fraction`` 1)."""

    batch_size: int = Field(32, ge=1, examples=["32"])
    val_fraction: float = Field(0.2, gt=0, le=1, examples=["0.2"])
    balance: Literal[IMAGE_BALANCE] = "none"  # type: ignore[valid-type]
    format: Literal[IMAGE_FORMATS] = "auto"  # type: ignore[valid-type]


class StoredAugment(Section):
    hflip_p: float = 0.5


class StoredImageRun(Section):
    """The keys of a checkpoint's stored run config that `evaluate` and `export` read (absent: the defaults of a
    run from before they were stored); ``data`` is read as :class:`StoredImageData` once ``data_root`` applies."""

    seed: int = 0
    data: dict[str, Any] = Field(default_factory=dict)
    augment: StoredAugment = StoredAugment()


class ImageTrainConfig(Run):
    """``visiontrain train`` of an image classifier, in the order the checks report: model before augment, since
    the input size comes from the backbone."""

    optimizer: Optimizer
    schedule: Schedule
    trainer: Trainer
    model: ImageModel
    augment: Augment
    data: ImageData

    @model_validator(mode="after")
    def _across_keys(self) -> ImageTrainConfig:
        self.monitor.check(MONITORABLE)
        freeze, epochs = self.schedule.freeze_epochs, self.trainer.max_epochs
        if freeze >= epochs and self.schedule.unfreeze != 0:
            raise ConfigError("schedule.freeze_epochs", f"is {freeze} but trainer.max_epochs is {epochs}, so the "
                              "backbone would never be fine-tuned", f"schedule.freeze_epochs={max(0, epochs - 1)} "
                              "or schedule=linear_probe")
        batch = self.data.batch_size
        if self.augment.mixup is not None and self.augment.mixup.mixes and batch % 2:
            raise ConfigError("data.batch_size", f"is {batch}, but mixup/cutmix mix each image with another of "
                              "its batch and need an even batch size", f"data.batch_size={batch + 1}")
        # model.label_smoothing (hymenoptera's 0.1) is not applied on top: mixed targets carry their own smoothing
        return self
