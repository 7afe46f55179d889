"""What an image run decides from its config before any data is read, decided once and passed on.

The weight source (a package, the hub, a file or none, with its backbone), the input spec it implies and the train
transform built for that spec. The library checks build them (a bad transform fails there, naming its index) and
hand them to the task, so training uses what was checked rather than deciding a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import albumentations as A
from omegaconf import DictConfig, OmegaConf

from visiontrain.config.image import ImageModel, ModelInput
from visiontrain.image.transforms import InputSpec, build_train_transform, resolve_input_spec
from visiontrain.image.weight_source import WeightSource, weight_source


@dataclass(frozen=True)
class ImageDecisions:
    """The weight source, the input spec and the train transform of one run."""

    source: WeightSource
    spec: InputSpec
    train_transform: A.Compose


def input_spec_for(model_input: ModelInput, source: WeightSource) -> InputSpec:
    """``model.input`` with its unset fields filled from the weights (or the backbone's pretrained config)."""
    i = model_input
    return resolve_input_spec(source.backbone, i.image_size, i.mean, i.std, i.crop_pct, i.interpolation,
                              weights=source.input_defaults())


def train_steps_for(cfg: DictConfig, spec: InputSpec) -> Any:
    """The configured augmentation list (albumentations targets, instantiated by Hydra: the raw config) with
    ``${model.input.image_size}`` resolved to the actual input size."""
    return OmegaConf.merge(cfg, {"model": {"input": {"image_size": spec.image_size}}}).augment.train


def decide_image_run(cfg: DictConfig, model: ImageModel, source: WeightSource | None = None) -> ImageDecisions:
    """The run's decisions from ``model`` (``source`` if already resolved) and the augmentation list of ``cfg``."""
    source = source if source is not None else weight_source(model)
    spec = input_spec_for(model.input, source)
    return ImageDecisions(source, spec, build_train_transform(spec, train_steps_for(cfg, spec)))
