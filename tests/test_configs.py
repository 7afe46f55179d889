"""Every experiment and every option of every config group composes, validates and instantiates."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from conftest import TINY_BACKBONE, compose_train
from visiontrain.commands.train import instantiate_callbacks, instantiate_loggers
from visiontrain.commands.validation import validate_train_config
from visiontrain.config import config_dir
from visiontrain.config.choices import TABULAR_MODELS
from visiontrain.errors import ConfigError
from visiontrain.image.transforms import build_train_transform, resolve_input_spec
from visiontrain.registry import task_for_config
from visiontrain.training.hardware import build_trainer

CONF = config_dir()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if p.stem != "default")


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_builds_a_working_model(experiment, tiny_hymenoptera, tmp_path):
    overrides = [f"experiment={experiment}", f"paths.run_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"]
    image = compose_train(*overrides).task == "image_classification"
    if image:
        overrides += ["data.num_workers=0"]
        if compose_train(*overrides).data.builtin is None:
            overrides.append(f"data.root={tiny_hymenoptera}")
    cfg = compose_train(*overrides)
    validate_train_config(cfg)
    loggers = instantiate_loggers(cfg.logger)
    trainer = build_trainer(cfg.trainer, instantiate_callbacks(cfg.callbacks, bool(loggers)), logger=loggers or False)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    task = task_for_config(cfg)
    data = task.prepare(tmp_path, True)
    built = task.build(data, data.final_split)
    datamodule, module = built.datamodule, built.module
    inputs, labels = next(iter(datamodule.train_dataloader()))
    if image:
        size = task.info(data, built)["input_spec"]["image_size"]
        assert inputs.shape[1:] == (3, size, size) and inputs.dtype == torch.uint8  # normalised on the device
        images, _ = module.model_batch((inputs, labels))
        assert images.dtype == torch.float32 and module(images).shape == (len(labels), len(module.class_names))
    else:
        assert inputs.shape[1] == len(module.feature_names) and module.scores(inputs).shape == (len(labels),)


TABLE_DATA = {"churn": "experiment=churn", "diabetes": "experiment=diabetes"}


@pytest.mark.parametrize("group", ["augment", "schedule", "optimizer", "logger", "callbacks", "data", "model",
                                   "features"])
def test_every_group_option_composes_and_validates(group, tiny_hymenoptera, tmp_path):
    for option in options(group):
        if option in TABLE_DATA or option in TABULAR_MODELS or group == "features":
            context = [TABLE_DATA.get(option, "experiment=churn")]
        else:
            context = ["model.weights=null", f"model.backbone={TINY_BACKBONE}"]
        cfg = compose_train(*context, f"{group}={option}", f"paths.run_dir={tmp_path}",
                            f"paths.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=5")
        if cfg.task == "image_classification" and cfg.data.builtin is None:
            cfg.data.root = str(tiny_hymenoptera)
        validate_train_config(cfg)
        if group == "augment":
            spec = resolve_input_spec(TINY_BACKBONE, image_size=48)
            sized = compose_train(f"augment={option}", "model.input.image_size=48", f"paths.run_dir={tmp_path}").augment
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
        cfg.trainer.accelerator, cfg.trainer.devices = "cpu", 2
    validate_train_config(cfg)
    trainer = build_trainer(cfg.trainer, logger=False)
    assert trainer.num_devices == cfg.trainer.devices


def test_builtin_data_never_overwrites_a_folder_of_the_users(tiny_hymenoptera, tmp_path):
    """`data.root=my_photos` with the default built-in data must stop, not replace the photos with digits."""
    from visiontrain.errors import DataError
    from visiontrain.image.builtin import materialise_builtin

    before = sorted(p.relative_to(tiny_hymenoptera) for p in tiny_hymenoptera.rglob("*"))
    cfg = compose_train(f"data.root={tiny_hymenoptera}", f"paths.run_dir={tmp_path}")
    with pytest.raises(ConfigError) as error:
        validate_train_config(cfg)
    assert error.value.key == "data.root" and "data=image_folder" in error.value.fix
    with pytest.raises(DataError, match="left untouched"):
        materialise_builtin("digits", tiny_hymenoptera)
    assert sorted(p.relative_to(tiny_hymenoptera) for p in tiny_hymenoptera.rglob("*")) == before


@pytest.mark.parametrize("overrides, key, fix", [
    (["data=churn"], "data", "experiment=churn"),  # a table for an image run: switch the experiment
    (["model=mlp"], "model", "model=timm"),  # a tabular model for an image run: the image backbone
    (["experiment=churn", "model=timm"], "model", "model=mlp"),  # an image backbone for a table: a tabular model
])
def test_mixing_image_and_table_groups_names_the_group(tmp_path, overrides, key, fix):
    cfg = compose_train(*overrides, f"paths.run_dir={tmp_path}")
    with pytest.raises(ConfigError) as error:
        validate_train_config(cfg)
    assert error.value.key == key, error.value
    assert fix in error.value.fix, error.value


def _compose_with_hydra(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("search, experiment", [("churn_optuna", "churn"), ("image_optuna", "hymenoptera")])
def test_hparams_search_configs_are_optuna_sweeps_over_real_keys(search, experiment):
    from omegaconf import OmegaConf

    cfg = _compose_with_hydra(f"experiment={experiment}", f"hparams_search={search}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert sweeper.direction == {"max": "maximize", "min": "minimize"}[cfg.monitor.mode]
    for key, spec in sweeper.params.items():  # every searched key exists in the experiment (a group counts);
        if OmegaConf.is_dict(spec) and "when" in spec:  # a conditional one under its condition: test_search_spaces
            continue
        assert OmegaConf.select(cfg, key) is not None, key


def test_slurm_launcher_config_composes():
    cfg = _compose_with_hydra("hydra/launcher=slurm")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1


def test_your_own_folder_does_not_inherit_the_quickstarts_settings(tiny_hymenoptera, tmp_path):
    """`data=image_folder data.root=DIR`: the model's own input spec, flips, the default rate, a run named after it."""
    from visiontrain.image.task import input_spec_from

    cfg = compose_train("data=image_folder", f"data.root={tiny_hymenoptera}", f"paths.run_dir={tmp_path}")
    spec = input_spec_from(cfg)
    assert (spec.image_size, spec.mean, spec.interpolation) == (224, (0.5, 0.5, 0.5), "bicubic")  # Lite0's
    assert cfg.augment.hflip_p == 0.5 and list(cfg.augment.crop_scale) == [0.5, 1.0]
    assert cfg.optimizer.lr == 1e-3 and cfg.task_name == "images-hymenoptera"  # named after its folder
    quickstart = compose_train(f"paths.run_dir={tmp_path}")
    assert (input_spec_from(quickstart).image_size, quickstart.augment.hflip_p, quickstart.task_name) == (64, 0.0,
                                                                                                         "digits")


@pytest.mark.parametrize("schedule", options("schedule"))
@pytest.mark.parametrize("experiment", ["hymenoptera", None])
def test_the_schedule_on_the_command_line_is_the_schedule_that_runs(experiment, schedule, tmp_path):
    """`experiment=hymenoptera schedule=full_finetune` trains from the first epoch: no experiment value outranks it."""
    from omegaconf import OmegaConf

    chosen = [f"experiment={experiment}", "data.root=."] if experiment else []
    cfg = compose_train(*chosen, f"schedule={schedule}", f"paths.run_dir={tmp_path}")
    assert OmegaConf.to_container(cfg.schedule) == OmegaConf.to_container(OmegaConf.load(CONF / "schedule" /
                                                                                          f"{schedule}.yaml"))


def test_an_older_checkpoints_run_config_reads_with_the_defaults_of_the_keys_added_since():
    """evaluate and export read a checkpoint's stored run config through the same data model (StoredImageData)."""
    from visiontrain.config.image import StoredImageData, StoredImageRun
    from visiontrain.config.reading import validate

    stored = validate(StoredImageRun, {"seed": 7, "task_name": "hymenoptera", "data": {
        "root": "/data/ants", "format": "imagefolder", "val_fraction": 0.2, "batch_size": 16, "num_workers": 0,
        "balance": "none"}})  # before duplicates, allow_outside_root, pin_memory, max_image_pixels, prefetch_factor
    data = validate(StoredImageData, stored.data, "data")
    assert (stored.seed, stored.augment.hflip_p) == (7, 0.5)
    assert (data.duplicates.across_classes, data.duplicates.within_class, data.allow_outside_root, data.pin_memory,
            data.prefetch_factor, data.root) == ("reject", "warn", False, "auto", None, "/data/ants")
    assert validate(StoredImageRun, {}).seed == 0 and validate(StoredImageRun, {}).data == {}
    in_full = validate(StoredImageData, {**stored.data, "root": "/new", "format": "auto", "val_fraction": 1.0}, "data")
    assert in_full.val_fraction == 1.0  # data_root: every image evaluated
