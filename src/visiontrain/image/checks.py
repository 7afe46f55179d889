"""The image task's config checks that need its libraries: timm's backbone names, the packaged weights,
albumentations' transforms, and a built-in data root that would overwrite a user's folder.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from visiontrain.config.image import ImageTrainConfig
from visiontrain.errors import ConfigError, WeightsError
from visiontrain.image.backbone import check_backbone_name
from visiontrain.image.builtin import is_materialised
from visiontrain.image.decided import ImageDecisions, decide_image_run
from visiontrain.image.weight_source import weight_source
from visiontrain.training.checks import check_optimizer_class


def check_image_libraries(cfg: DictConfig, settings: ImageTrainConfig) -> ImageDecisions:
    """Optimizer class, weights and backbone (timm), the augmentation (albumentations), a built-in data root;
    returns what it decided on the way (weight source, input spec, train transform) for the run to use."""
    check_optimizer_class(cfg)  # the class Hydra instantiates: the raw config
    source = weight_source(settings.model)  # one weights source, and a backbone that fits it
    check_backbone_name(source.backbone)
    if source.packaged:
        try:
            source.packaged.path()  # a missing package fails now, before any data is read
        except WeightsError as error:
            raise ConfigError("model.weights", str(error), source.packaged.pip_install) from None
    decided = decide_image_run(cfg, settings.model, source)  # a bad transform fails here, naming its index
    data = settings.data
    if data.builtin is not None:
        root = Path(str(data.root)).expanduser()
        if root.exists() and not is_materialised(root) and (not root.is_dir() or any(root.iterdir())):
            raise ConfigError("data.root", f"{root} is an existing folder, but data.builtin={data.builtin} would "
                              "write the built-in dataset there", "to train on your folder add data=image_folder "
                              "(or data.builtin=null); for the built-in data leave data.root unset")
    return decided
