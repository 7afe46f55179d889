"""The image task's config checks that need its libraries: timm's backbone names, the packaged weights,
albumentations' transforms, and a built-in data root that would overwrite a user's folder.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from visiontrain.config.reading import value
from visiontrain.errors import ConfigError, WeightsError
from visiontrain.image.backbone import check_backbone_name
from visiontrain.image.builtin import is_materialised
from visiontrain.image.transforms import build_train_transform
from visiontrain.image.weight_source import weight_source
from visiontrain.training.checks import check_optimizer_class


def check_image_libraries(cfg: DictConfig) -> None:
    """Optimizer class, weights and backbone (timm), the augmentation (albumentations), a built-in data root."""
    from visiontrain.image.task import input_spec_from, train_steps_for  # the task module imports this one

    check_optimizer_class(cfg)
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
