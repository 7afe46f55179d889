"""The searches in conf/hparams_search/ are usable: whatever Optuna samples composes and passes the config checks.

Each file's ``hydra.sweeper.params`` is read as the sweeper reads it (:func:`visiontrain.sweeps.space.read_space`),
40 trials are sampled from it by a seeded in-memory study, and each trial's overrides are composed with Hydra on
top of the experiment, as a trial of the sweep composes them, then checked by the checks every run starts with.
Every option of a searched group or choice (the model families, the weights, the schedules) is tried, and a key
with a condition is sampled exactly when its condition holds.
"""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from visiontrain.config import config_dir
from visiontrain.config.checks import check_train_config
from visiontrain.sweeps.space import SearchSpace, as_overrides, read_space

CONF = config_dir()
TRIALS = 40
SEARCHES = {"churn_optuna": ("experiment=churn",), "image_optuna": ("experiment=hymenoptera", "data.root={root}")}


def search_space(name: str) -> SearchSpace:
    """The space of ``hparams_search=<name>``, from its file (composing it needs the sweeper's own config)."""
    node = OmegaConf.load(CONF / "hparams_search" / f"{name}.yaml")
    return read_space(OmegaConf.to_container(node.hydra.sweeper.params, resolve=False))


def sampled_trials(space: SearchSpace, trials: int = TRIALS, seed: int = 0) -> list[dict[str, Any]]:
    """What ``trials`` trials of a seeded random search ask for, define-by-run as the sweeper asks."""
    return space.draw(trials, seed)


def is_group(key: str) -> bool:
    return (CONF / key).is_dir()


def compose_family(family: str) -> Any:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("train", overrides=["experiment=churn", f"model={family}"])


@pytest.fixture(scope="module")
def samples() -> dict[str, list[dict[str, Any]]]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return {name: sampled_trials(search_space(name)) for name in SEARCHES}


@pytest.mark.parametrize("name", SEARCHES)
def test_every_sampled_trial_composes_and_passes_the_config_checks(name, samples, tiny_hymenoptera, tmp_path):
    experiment = [override.format(root=tiny_hymenoptera) for override in SEARCHES[name]]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        for values in samples[name]:
            overrides = [*experiment, f"paths.run_dir={tmp_path}", *as_overrides(values)]
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            choices = cfg.hydra.runtime.choices
            for key, value in values.items():  # each sampled value is the one the trial runs with
                composed = choices[key] if is_group(key) else OmegaConf.select(cfg, key)
                if OmegaConf.is_list(composed):
                    composed, value = OmegaConf.to_container(composed), yaml.safe_load(value)
                assert composed == value, (key, overrides)
            with open_dict(cfg):
                del cfg["hydra"]
            check_train_config(cfg)


@pytest.mark.parametrize("name", SEARCHES)
def test_every_choice_is_tried_and_each_key_only_under_its_condition(name, samples):
    space, trials = search_space(name), samples[name]
    for param in space.params:
        held = [param.applies(values) for values in trials]  # its condition, on what the trial sampled
        sampled = [param.key in values for values in trials]
        assert sampled == held, f"{param.key} is sampled outside its condition {dict(param.when)}"
        assert any(sampled), f"{param.key} was never sampled in {len(trials)} trials"
        if param.kind == "choice":
            tried = {values[param.key] for values in trials if param.key in values}
            assert tried == set(param.choices), f"{param.key}: {set(param.choices) - tried} never tried"


def test_the_churn_search_covers_every_model_family_with_its_own_parameters():
    from visiontrain.config.choices import TABULAR_MODELS

    space = search_space("churn_optuna")
    families = next(param for param in space.params if param.key == "model")
    assert set(families.choices) == set(TABULAR_MODELS)
    for family in TABULAR_MODELS:  # each family has keys of its own, sampled only for it
        own = [param.key for param in space.params if param.when.get("model") == (family,)]
        assert own, f"model={family} has no parameters of its own"
        for key in own:
            assert OmegaConf.select(compose_family(family), key) is not None, (family, key)


def test_the_image_search_keeps_the_schedule_keys_to_the_schedule_that_reads_them():
    space = search_space("image_optuna")
    conditional = {param.key: param.when for param in space.params if param.key.startswith("schedule.")}
    assert conditional == {"schedule.freeze_epochs": {"schedule": ("freeze_then_finetune",)},
                           "schedule.backbone_lr_scale": {"schedule": ("freeze_then_finetune",)}}
    full = OmegaConf.load(CONF / "schedule" / "full_finetune.yaml")
    assert full.freeze_epochs == 0 and full.backbone_lr_scale == 1.0  # nothing to search there


def test_the_searches_are_not_grids_and_name_their_pruning():
    """A grid (choices only) is the sweeper's to run without pruning; these are TPE searches with a pruner set
    (null or a pruner) so that the default is written where the search is."""
    for name in SEARCHES:
        sweeper = yaml.safe_load((CONF / "hparams_search" / f"{name}.yaml").read_text())["hydra"]["sweeper"]
        assert not search_space(name).is_grid() and "pruner" in sweeper
        assert sweeper["sampler"]["_target_"] == "optuna.samplers.TPESampler"

