"""Albumentations pipelines built from config, and the input spec (size, mean, std) they share.

The input spec (``model.input``) defaults to what the weights were trained with: the packaged weights' own
spec, else the backbone's pretrained config, resolved by timm. The eval pipeline is fixed (resize shorter side,
centre crop, normalise) because it is also recorded in the ONNX file for deployment; its arithmetic is
:mod:`visiontrain.core.image_preprocess`, the same function the deploy side calls.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import albumentations as A
import numpy as np
from albumentations.pytorch import ToTensorV2
from hydra.utils import instantiate

from visiontrain.core.image_preprocess import (
    INTERPOLATIONS,
    normalisation_constants,
    resize_and_crop,
    resize_to_for,
)
from visiontrain.errors import ConfigError

if TYPE_CHECKING:
    import torch

_FALLBACK_DEFAULTS = {"interpolation": "bilinear"}  # for a backbone timm has no pretrained config for


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: square input size, normalisation, and how eval images are resized."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float = 0.875
    interpolation: str = "bilinear"

    @property
    def resize_to(self) -> int:
        """Shorter side before the centre crop (timm's convention: floor(size / crop_pct))."""
        return resize_to_for(self.image_size, self.crop_pct)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std), "resize_to": self.resize_to}


def resolve_input_spec(backbone: str, image_size: int | None = None, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None, crop_pct: float | None = None,
                       interpolation: str | None = None, weights: dict[str, Any] | None = None) -> InputSpec:
    """Fill every unset field from the weights' own spec (``weights``), else the backbone's timm pretrained config.

    The spec belongs to the model and its weights: weights trained on [-1, 1] inputs need mean = std = 0.5
    whatever augmentation is chosen. timm's ``resolve_data_config`` does the resolving: set values first,
    then the pretrained config (here with the weights' spec on top), then timm's ImageNet defaults.
    """
    import timm
    from timm.data import resolve_data_config

    pretrained = timm.get_pretrained_cfg(backbone)
    defaults = {**_FALLBACK_DEFAULTS, **(pretrained.to_dict() if pretrained is not None else {})}
    defaults.update({k: v for k, v in (weights or {}).items() if v is not None})
    if "image_size" in defaults:
        defaults["input_size"] = (3, int(defaults["image_size"]), int(defaults["image_size"]))
    chosen = {"img_size": int(image_size) if image_size else None, "mean": mean, "std": std, "crop_pct": crop_pct,
              "interpolation": interpolation}
    config = resolve_data_config(args={k: v for k, v in chosen.items() if v is not None}, pretrained_cfg=defaults)
    if config["interpolation"] not in INTERPOLATIONS:  # training and the ONNX file must use what was asked for
        raise ConfigError("model.input.interpolation", f"must be one of {', '.join(INTERPOLATIONS)}; got "
                          f"{config['interpolation']!r} (from {'the config' if interpolation else backbone})",
                          "model.input.interpolation=bilinear")
    return InputSpec(
        image_size=int(config["input_size"][-1]),
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
        crop_pct=float(config["crop_pct"]),
        interpolation=config["interpolation"],
    )


def _tensor_tail() -> list[A.BasicTransform]:
    """uint8 CHW tensors: normalisation happens on the device, after the copy (:func:`normalise`).

    Normalising in the loader workers cost them about 15% of their time and made every batch four times
    larger (float32) to collate, pass between processes and copy to the GPU; see BENCHMARKS.md.
    """
    return [ToTensorV2()]


def normalisation_tensors(mean: Sequence[float], std: Sequence[float]) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The deploy side's constants (core's :func:`normalisation_constants`) as (1, 3, 1, 1) float32 tensors."""
    import torch

    return tuple(torch.from_numpy(v).view(1, 3, 1, 1) for v in normalisation_constants(mean, std))


def apply_normalisation(images: "torch.Tensor", offset: "torch.Tensor", scale: "torch.Tensor") -> "torch.Tensor":
    """uint8 RGB images ((N,) 3, H, W) to the float32 input the model and the ONNX file take:
    ``(x - offset) * scale``, the deploy side's arithmetic, on whatever device ``images`` live on."""
    import torch

    batched = images if images.dim() == 4 else images.unsqueeze(0)
    result = batched.to(torch.float32, copy=True).sub_(offset).mul_(scale)  # one float copy, not three
    return result if images.dim() == 4 else result.squeeze(0)


def normalise(images: "torch.Tensor", mean: Sequence[float], std: Sequence[float]) -> "torch.Tensor":
    """:func:`apply_normalisation` with constants made for this call (the model keeps its own as buffers)."""
    offset, scale = normalisation_tensors(mean, std)
    return apply_normalisation(images, offset.to(images.device), scale.to(images.device))


class EvalGeometry(A.ImageOnlyTransform):
    """Shorter side to ``resize_to``, centre crop to ``height`` x ``width``: the deploy side's own function
    (:func:`visiontrain.core.image_preprocess.resize_and_crop`) as an albumentations step."""

    def __init__(self, resize_to: int, height: int, width: int, interpolation: str = "bilinear") -> None:
        super().__init__(p=1.0)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        self.resize_to, self.height, self.width, self.interpolation = resize_to, height, width, interpolation

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return resize_and_crop(img, self.resize_to, self.height, self.width, self.interpolation)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("resize_to", "height", "width", "interpolation")


def eval_geometry(spec: InputSpec) -> list[A.BasicTransform]:
    """Resize the shorter side to ``spec.resize_to`` and centre-crop to ``spec.image_size``."""
    return [EvalGeometry(spec.resize_to, spec.image_size, spec.image_size, spec.interpolation)]


def build_eval_transform(spec: InputSpec) -> A.Compose:
    return A.Compose(eval_geometry(spec) + _tensor_tail())


def build_train_transform(spec: InputSpec, steps: Sequence[Any] | None) -> A.Compose:
    """Instantiate the configured augmentation list; an empty list trains on eval-style crops.

    Each step is a Hydra node with ``_target_`` (an albumentations transform); the pipeline must produce
    ``image_size`` x ``image_size`` images, which presets guarantee with a crop as their first step.
    """
    built = []
    for index, step in enumerate(steps or []):
        try:
            built.append(instantiate(step))
        except Exception as error:  # noqa: BLE001 - Hydra wraps import and argument errors alike
            from visiontrain.errors import ConfigError

            target = step.get("_target_", "?") if hasattr(step, "get") else step
            raise ConfigError(f"augment.train[{index}]", f"cannot build {target}: {error}".splitlines()[0],
                              "use an albumentations transform and its arguments, e.g. "
                              "{_target_: albumentations.HorizontalFlip, p: 0.5}") from None
    geometry = built if built else eval_geometry(spec)
    if built and not any(isinstance(t, (A.RandomResizedCrop, A.CenterCrop, A.RandomCrop, A.Resize,
                                        A.RandomSizedCrop, A.CropNonEmptyMaskIfExists)) for t in built):
        geometry = eval_geometry(spec) + built
    return A.Compose(list(geometry) + _tensor_tail())
