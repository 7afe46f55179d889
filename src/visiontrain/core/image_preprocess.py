"""The eval preprocessing, once: shorter side to ``resize_to``, centre crop, normalise.

Training's eval transform (an albumentations step in :mod:`visiontrain.image.transforms`) and the deploy side
(predict, serve) both call :func:`resize_and_crop`, and both take their normalisation constants from
:func:`normalisation_constants`, so the model inputs agree to the bit. The resize is ``cv2.resize``, as
albumentations does it; PIL's own resize antialiases and would differ by up to 2.3 (normalised units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image

from visiontrain.core.image_decode import PixelLimit, Source, decode
from visiontrain.core.model_metadata import check_interpolation

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA}  # the names training records, as albumentations maps them


def resize_to_for(image_size: int, crop_pct: float) -> int:
    """The shorter side before the centre crop: ``floor(image_size / crop_pct)``, as timm's eval transform.

    Never below ``image_size`` (a crop_pct above 1 would otherwise crop outside the image).
    """
    return max(image_size, math.floor(image_size / crop_pct))


def normalisation_constants(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``offset = 255 mean`` and ``scale = 1 / (255 std)``: ``(x - offset) * scale`` normalises uint8.

    Training (on its device, in torch) and deployment (in numpy) both take their constants from this one
    function, so their model inputs are identical to the bit.
    """
    offset = np.asarray(mean, dtype=np.float32) * np.float32(255.0)
    scale = np.float32(1.0) / (np.asarray(std, dtype=np.float32) * np.float32(255.0))
    return offset.astype(np.float32), scale.astype(np.float32)


def resize_and_crop(pixels: np.ndarray, resize_to: int, height: int, width: int,
                    interpolation: str = "bilinear") -> np.ndarray:
    """HxWx3 uint8 -> ``height`` x ``width`` x 3 uint8: shorter side to ``resize_to``, then the centre crop.

    The sizes round as albumentations' SmallestMaxSize rounds them, and the crop starts where its CenterCrop
    starts, so training's eval transform made of this function is the transform albumentations built before.
    """
    flag = INTERPOLATIONS[interpolation]
    rows, columns = pixels.shape[:2]
    scale = resize_to / min(rows, columns)
    size = max(1, round(rows * scale)), max(1, round(columns * scale))
    if size != (rows, columns):
        pixels = cv2.resize(pixels, (size[1], size[0]), interpolation=flag)
    top, left = max(0, (size[0] - height) // 2), max(0, (size[1] - width) // 2)
    crop = pixels[top:top + height, left:left + width]
    if crop.shape[:2] != (height, width):  # resize_to below the input size: never from training
        crop = cv2.resize(crop, (width, height), interpolation=flag)
    return crop


@dataclass(frozen=True)
class ImageSpec:
    """The eval transform recorded in the ONNX metadata: resize shorter side, centre crop, normalise."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_to: int
    interpolation: str = "bilinear"

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ImageSpec:
        _, height, width = (int(v) for v in metadata["input_size"])
        interpolation = metadata.get("interpolation")
        check_interpolation(interpolation)  # never resized some other way than the file says
        recorded = {"interpolation": interpolation} if interpolation is not None else {}  # older exports: bilinear
        return cls(height=height, width=width, mean=tuple(float(v) for v in metadata["mean"]),
                   std=tuple(float(v) for v in metadata["std"]),
                   resize_to=int(metadata.get("resize_to", max(height, width))), **recorded)

    def lookup_table(self) -> np.ndarray:
        """uint8 value -> normalised float per channel, [3, 256] (albumentations' Normalize is a LUT too)."""
        values = np.arange(256, dtype=np.float32)[None, :]
        offset, scale = normalisation_constants(self.mean, self.std)
        return ((values - offset[:, None]) * scale[:, None]).astype(np.float32)


def preprocess(image: Image.Image, spec: ImageSpec, table: np.ndarray | None = None) -> np.ndarray:
    """RGB image -> [3, H, W] float32: :func:`resize_and_crop`, then ``(x / 255 - mean) / std``."""
    crop = resize_and_crop(np.asarray(image, dtype=np.uint8), spec.resize_to, spec.height, spec.width,
                           spec.interpolation)
    table = spec.lookup_table() if table is None else table
    return np.stack([table[channel][crop[..., channel]] for channel in range(3)])


def model_input(source: Source, spec: ImageSpec, table: np.ndarray | None = None, *,
                limit: PixelLimit) -> np.ndarray:
    """An image file or its bytes -> the model's [3, H, W] input (JPEGs decoded at the reduced size first).

    Raises :class:`~visiontrain.core.image_decode.ImageRejected` naming why it is not a usable image (an image
    over ``limit`` from its header, unread). The one path from a file to a model input for predict and drift.
    """
    return preprocess(decode(source, spec.resize_to, limit=limit).image, spec, table)
