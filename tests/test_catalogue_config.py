"""Catalogue of config mistakes: each fails before the data scan and before training, naming the key and the fix.

Most cases compose the real config and run the real validation entry point (fast); the ones that only the
command line can see (sweeper settings of a multirun, unknown keys, secrets) and a sample of the others go
through the real `visiontrain` CLI: exit code 2, one clear message, no traceback, no run dir, no checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import compose_train, run_cli
from visiontrain.config import config_dir
from visiontrain.config.overrides import check_no_secrets, check_override_keys, compose_for_sweep
from visiontrain.config.validation import validate_sweeper, validate_train_config
from visiontrain.errors import ConfigError

CHURN = ("experiment=churn",)

# (overrides, the key the error must name, a piece of the problem it must state, a piece of the fix)
VALIDATION_MISTAKES = [
    (["trainer.precision=15-mixed"], "trainer.precision", "got '15-mixed'", "trainer.precision=32-true"),
    ([*CHURN, "trainer.precision=15-mixed"], "trainer.precision", "bf16-mixed", "trainer.precision=32-true"),
    (["trainer.precision=true"], "trainer.precision", "got True", "trainer.precision=32-true"),
    (["trainer.devices=abc"], "trainer.devices", "got 'abc'", "trainer.devices=1"),
    (["trainer.devices=0"], "trainer.devices", "got 0", "trainer.devices=1"),
    (["trainer.devices=[0,-2]"], "trainer.devices", "list of device ids", "trainer.devices=1"),
    (["export.opset=99"], "export.opset", "got 99", "export.opset=17"),
    (["export.opset=9"], "export.opset", "from 13 to", "export.opset=17"),
    ([*CHURN, "export.opset=99"], "export.opset", "got 99", "export.opset=17"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val", "must be >= 0, got -1",
     "trainer.gradient_clip_val=1.0"),
    (["trainer.gradient_clip_val=lots"], "trainer.gradient_clip_val", "must be a number, got 'lots'",
     "trainer.gradient_clip_val=1.0"),
    (["callbacks.early_stopping.patience=-3"], "callbacks.early_stopping.patience", "must be >= 0, got -3",
     "callbacks.early_stopping.patience=10"),
    (["callbacks.early_stopping.patience=2.5"], "callbacks.early_stopping.patience", "must be an integer",
     "callbacks.early_stopping.patience=10"),
    (["callbacks.model_checkpoint.save_top_k=-5"], "callbacks.model_checkpoint.save_top_k", "must be >= -1",
     "callbacks.model_checkpoint.save_top_k=1"),
    (["logger=wandb", "logger.wandb.mode=bogus"], "logger.wandb.mode", "got 'bogus'", "logger.wandb.mode=auto"),
    ([*CHURN, "logger=wandb", "logger.wandb.mode=bogus"], "logger.wandb.mode", "got 'bogus'",
     "logger.wandb.mode=auto"),
    (["schedule.min_lr_ratio=-0.1"], "schedule.min_lr_ratio", "must be >= 0", "schedule.min_lr_ratio=0.01"),
    (["schedule.warmup_epochs=-1"], "schedule.warmup_epochs", "must be >= 0", "schedule.warmup_epochs=1"),
    (["optimizer.lr=0"], "optimizer.lr", "must be > 0", "optimizer.lr=1e-3"),
    (["data.batch_size=0"], "data.batch_size", "must be >= 1, got 0", "data.batch_size=32"),
    ([*CHURN, "data.batch_size=0"], "data.batch_size", "must be >= 1, got 0", "data.batch_size=256"),
    (["trainer.max_epochs=0"], "trainer.max_epochs", "must be >= 1", "trainer.max_epochs=10"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches", "must be >= 1",
     "trainer.accumulate_grad_batches=1"),
    (["seed=1.5"], "seed", "must be an integer", "seed=42"),
    ([*CHURN, "data.source_env=VISIONTRAIN_TEST_UNSET_URL"], "data.source_env",
     "VISIONTRAIN_TEST_UNSET_URL, which is not set", "export VISIONTRAIN_TEST_UNSET_URL="),
    ([*CHURN, "data.source=${oc.env:VISIONTRAIN_TEST_UNSET_URL}"], "data.source",
     "Environment variable 'VISIONTRAIN_TEST_UNSET_URL' not found", "export the environment variable"),
    ([*CHURN, "data.source=/tables/churn.csv", "data.source_env=DB_URL"], "data.source_env", "are both set",
     "data.source=null"),
    ([*CHURN, "data.source=postgresql://u:pw1234@db/churn", "data.table=customers"], "data.source",
     "password or token", "data.source='${oc.env:DB_URL}'"),
]


def _ids(value):
    return " ".join(value) if isinstance(value, list) else None


@pytest.mark.parametrize(("overrides", "key", "problem", "fix"), VALIDATION_MISTAKES, ids=_ids)
def test_validation_rejects_the_mistake_naming_key_problem_and_fix(overrides, key, problem, fix, tmp_path,
                                                                    monkeypatch):
    monkeypatch.delenv("VISIONTRAIN_TEST_UNSET_URL", raising=False)
    cfg = compose_train(*overrides, f"paths.run_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}")

    with pytest.raises(ConfigError) as raised:
        validate_train_config(cfg)

    assert raised.value.key == key
    assert problem in raised.value.problem
    assert fix in raised.value.fix


@pytest.mark.parametrize("overrides", [
    [], [*CHURN], ["trainer.precision=bf16-mixed", "trainer.devices=auto", "trainer.gradient_clip_val=0.5"],
    ["trainer.devices=-1", "export.opset=20", "callbacks.early_stopping.patience=0"], ["trainer.devices='1'"],
    ["logger=wandb", "logger.wandb.mode=offline"], ["trainer.precision=16"],
], ids=_ids)
def test_the_checks_accept_what_lightning_torch_and_wandb_accept(overrides, tmp_path):
    """The other side of each check: the defaults and valid non-defaults pass."""
    cfg = compose_train(*overrides, f"paths.run_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}")
    validate_train_config(cfg)  # raises on a false alarm
    assert cfg.trainer.precision  # composed and checked


# (overrides of a multirun, the key, the fix): settings of the sweeper live in the Hydra config
SWEEPER_MISTAKES = [
    ([*CHURN, "hparams_search=churn_optuna", "hydra.sweeper.n_trials=-1"], "hydra.sweeper.n_trials",
     "hydra.sweeper.n_trials=20"),
    ([*CHURN, "hparams_search=churn_optuna", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials",
     "hydra.sweeper.n_trials=20"),
    ([*CHURN, "hparams_search=churn_optuna", "hydra.sweeper.direction=minimize"], "hydra.sweeper.direction",
     "hydra.sweeper.direction=maximize"),
    ([*CHURN, "hparams_search=churn_optuna", "monitor.metric=val/loss", "monitor.mode=min"],
     "hydra.sweeper.direction", "hydra.sweeper.direction=minimize"),
    (["hparams_search=image_optuna", "hydra.sweeper.direction=upwards"], "hydra.sweeper.direction",
     "hydra.sweeper.direction=maximize"),
    ([*CHURN, "hparams_search=churn_optuna", "hydra.sweeper.max_failure_rate=2"], "hydra.sweeper.max_failure_rate",
     "hydra.sweeper.max_failure_rate=1.0"),
    ([*CHURN, "hparams_search=churn_optuna", "hydra.sweeper.n_jobs=0", "optimizer.lr=0.01,0.001"],
     "hydra.sweeper.n_jobs", "hydra.sweeper.n_jobs=1"),
    ([*CHURN, "hparams_search=churn_optuna", "hydra.sweeper.storage=postgresql://optuna:pw9876@db/studies"],
     "hydra.sweeper.storage", "hydra.sweeper.storage='${oc.env:DB_URL}'"),
]


@pytest.mark.parametrize(("overrides", "key", "fix"), SWEEPER_MISTAKES, ids=_ids)
def test_sweeper_settings_are_checked_on_the_composed_hydra_config(overrides, key, fix):
    cfg = compose_for_sweep("train", overrides, config_dir())

    with pytest.raises(ConfigError) as raised:
        validate_sweeper(cfg)

    assert raised.value.key == key and fix in raised.value.fix


def test_a_sweep_that_matches_its_monitor_passes():
    validate_sweeper(compose_for_sweep("train", [*CHURN, "hparams_search=churn_optuna"], config_dir()))
    minimising = [*CHURN, "hparams_search=churn_optuna", "monitor.metric=val/loss", "monitor.mode=min",
                  "hydra.sweeper.direction=minimize"]
    validate_sweeper(compose_for_sweep("train", minimising, config_dir()))


@pytest.mark.parametrize(("overrides", "key", "fix"), [
    (["trainer.precison=16"], "trainer.precison", "did you mean trainer.precision?"),
    (["callbacks.early_stopping.patiance=3"], "callbacks.early_stopping.patiance",
     "did you mean callbacks.early_stopping.patience?"),
    (["export.opset_version=17"], "export.opset_version", "keys here: export.atol, export.calibration_images, "
     "export.onnx, export.opset,"),
], ids=_ids)
def test_an_unknown_key_gets_the_nearest_real_one(overrides, key, fix):
    with pytest.raises(ConfigError) as raised:
        check_override_keys("train", overrides, config_dir())

    assert raised.value.key == key and fix in raised.value.fix


def test_a_secret_in_any_override_is_refused_naming_the_key():
    with pytest.raises(ConfigError) as raised:
        check_no_secrets(["experiment=churn", "hydra.sweeper.storage=postgresql://optuna:pw9876@db/studies"])

    assert raised.value.key == "hydra.sweeper.storage"
    assert "hydra.sweeper.storage='${oc.env:SECRET_URL}'" in raised.value.fix
    assert "pw9876" not in str(raised.value)


# --- through the real command line --------------------------------------------------------------------------

CLI_MISTAKES = [
    ([*CHURN, "model=logistic_regression", "trainer.precision=15-mixed"], "trainer.precision"),
    ([*CHURN, "model=logistic_regression", "export.opset=99"], "export.opset"),
    ([*CHURN, "model=logistic_regression", "logger=wandb", "logger.wandb.mode=bogus"], "logger.wandb.mode"),
    ([*CHURN, "hparams_search=churn_optuna", "hydra.sweeper.n_trials=-1"], "hydra.sweeper.n_trials"),
    (["-m", *CHURN, "hparams_search=churn_optuna", "hydra.sweeper.direction=minimize", "optimizer.lr=0.01,0.001"],
     "hydra.sweeper.direction"),
]


@pytest.mark.parametrize(("overrides", "key"), CLI_MISTAKES, ids=_ids)
def test_the_cli_stops_before_training_with_one_clear_message(overrides, key, tmp_path):
    result = run_cli("train", *overrides, "trainer.enable_progress_bar=false", cwd=tmp_path, timeout=180,
                     env={"VISIONTRAIN_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline"})

    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.count("visiontrain: config error:") == 1
    assert f"visiontrain: config error: config key `{key}`" in result.stderr and "fix: " in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "Launching" not in result.stdout  # no trial of a sweep started
    assert not (tmp_path / "outputs").exists() and not list(Path(tmp_path).rglob("*.ckpt"))
