"""Every experiment and every option of every config group composes, validates and instantiates."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from conftest import TINY_BACKBONE, compose_train
from visiontrain.config import config_dir
from visiontrain.config.validation import validate_train_config
from visiontrain.data.transforms import build_train_transform, resolve_input_spec
from visiontrain.errors import ConfigError
from visiontrain.runner import instantiate_callbacks, instantiate_loggers
from visiontrain.tasks.image import ImageTask

CONF = config_dir()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if p.stem != "default")


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_builds_a_working_model(experiment, tiny_hymenoptera, tmp_path):
    overrides = [f"experiment={experiment}", f"paths.run_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
                 "model.pretrained=false", "data.num_workers=0"]
    if compose_train(*overrides).data.builtin is None:
        overrides.append(f"data.root={tiny_hymenoptera}")
    cfg = compose_train(*overrides)
    validate_train_config(cfg)
    loggers = instantiate_loggers(cfg.logger)
    trainer = instantiate(cfg.trainer, callbacks=instantiate_callbacks(cfg.callbacks, bool(loggers)),
                          logger=loggers or False)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    datamodule, module, info = ImageTask(cfg).build(tmp_path, is_main_process=True)
    images, labels = next(iter(datamodule.train_dataloader()))
    size = info["input_spec"]["image_size"]
    assert images.shape[1:] == (3, size, size) and images.dtype == torch.float32
    assert module(images).shape == (len(labels), len(module.class_names))


@pytest.mark.parametrize("group", ["augment", "schedule", "optimizer", "logger", "callbacks", "data"])
def test_every_group_option_composes_and_validates(group, tiny_hymenoptera, tmp_path):
    for option in options(group):
        cfg = compose_train(f"{group}={option}", f"paths.run_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
                            f"model.backbone={TINY_BACKBONE}", "trainer.max_epochs=5")
        if cfg.data.builtin is None:
            cfg.data.root = str(tiny_hymenoptera)
        validate_train_config(cfg)
        if group == "augment":
            spec = resolve_input_spec(TINY_BACKBONE, image_size=48)
            sized = compose_train(f"augment={option}", "augment.image_size=48", f"paths.run_dir={tmp_path}").augment
            image = torch.randint(0, 255, (70, 90, 3), dtype=torch.uint8).numpy()
            assert build_train_transform(spec, sized.train)(image=image)["image"].shape == (3, 48, 48)
        if group == "optimizer":
            optimizer = instantiate(cfg.optimizer, params=[torch.nn.Parameter(torch.zeros(2))])
            assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr
        if group in ("logger", "callbacks"):
            assert all(obj is not None for obj in instantiate_loggers(cfg.logger) + instantiate_callbacks(cfg.callbacks, True))


@pytest.mark.parametrize("hardware", options("trainer"))
def test_every_trainer_composes_and_fails_clearly_without_its_hardware(hardware, tmp_path):
    cfg = compose_train(f"trainer={hardware}", f"paths.run_dir={tmp_path}", f"paths.cache_dir={tmp_path}")
    needs = {"gpu": torch.cuda.is_available(), "tpu": False}
    if hardware in needs and not needs[hardware]:
        with pytest.raises(ConfigError) as error:
            validate_train_config(cfg)
        assert error.value.key.startswith("trainer")
        return
    if hardware == "ddp":
        cfg.trainer.accelerator = "cpu"
    validate_train_config(cfg)
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.num_devices == cfg.trainer.devices


def test_builtin_data_never_overwrites_a_folder_of_the_users(tiny_hymenoptera, tmp_path):
    """`data.root=my_photos` with the default built-in data must stop, not replace the photos with digits."""
    from visiontrain.data.builtin import materialise_builtin
    from visiontrain.errors import DataError

    before = sorted(p.relative_to(tiny_hymenoptera) for p in tiny_hymenoptera.rglob("*"))
    cfg = compose_train(f"data.root={tiny_hymenoptera}", f"paths.run_dir={tmp_path}")
    with pytest.raises(ConfigError) as error:
        validate_train_config(cfg)
    assert error.value.key == "data.root" and "data=image_folder" in error.value.fix
    with pytest.raises(DataError, match="left untouched"):
        materialise_builtin("digits", tiny_hymenoptera)
    assert sorted(p.relative_to(tiny_hymenoptera) for p in tiny_hymenoptera.rglob("*")) == before
