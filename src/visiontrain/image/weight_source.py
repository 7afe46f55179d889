"""Where a model's starting weights come from, decided once from ``model.*`` before anything is built.

Exactly one source or none: a package (``model.weights``), the hub (``model.pretrained``) or a local file
(``model.weights_file``). Packaged weights also name the backbone and the input spec they were trained
with, so ``model.backbone`` may stay null; naming another backbone next to them is a mistake caught here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visiontrain.errors import ConfigError
from visiontrain.image.packaged_weights import PackagedWeights, packaged_weights

if TYPE_CHECKING:
    from visiontrain.config.image import ImageModel


@dataclass(frozen=True)
class WeightSource:
    backbone: str
    kind: str                          # package | hub | file | none
    packaged: PackagedWeights | None = None
    file: str | None = None

    @property
    def pretrained(self) -> bool:
        return self.kind != "none"

    def input_defaults(self) -> dict[str, Any]:
        """The input spec of packaged weights; empty otherwise (timm's pretrained config fills it)."""
        return dict(self.packaged.input) if self.packaged else {}

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"kind": self.kind, "backbone": self.backbone}
        if self.packaged:
            described["package"] = self.packaged.describe()
        if self.file:
            described["file"] = self.file
        return described


def weight_source(model: ImageModel) -> WeightSource:
    """The one weights source ``model`` asks for, with its backbone; conflicting settings fail naming the fix."""
    name, hub, file, backbone = model.weights, model.pretrained, model.weights_file, model.backbone
    chosen = [key for key, on in (("model.weights", name), ("model.pretrained", hub), ("model.weights_file", file)) if on]
    if len(chosen) > 1:
        keep = chosen[0] if chosen[0] != "model.weights" else chosen[1]
        raise ConfigError(chosen[1], f"{' and '.join(chosen)} both give starting weights; pick one",
                          f"model.weights=null to use {keep}" if "model.weights" in chosen else
                          "model.pretrained=false to use model.weights_file")
    if name:
        packaged = packaged_weights(name)
        if backbone and backbone != packaged.backbone:
            raise ConfigError("model.backbone", f"is {backbone}, but model.weights={name} holds "
                              f"{packaged.backbone} weights",
                              f"model.weights=null to train {backbone} from scratch (model.pretrained=true for "
                              f"the hub's weights), or model.backbone=null to use {name}")
        return WeightSource(packaged.backbone, "package", packaged=packaged)
    if not backbone:
        raise ConfigError("model.backbone", "is not set and no model.weights names one",
                          "model.backbone=<a timm model name>, or model.weights=efficientnet_lite0.in1k")
    if hub:
        return WeightSource(backbone, "hub")
    if file:
        return WeightSource(backbone, "file", file=file)
    return WeightSource(backbone, "none")
