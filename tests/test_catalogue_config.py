"""Catalogue of config mistakes: each fails before the data scan and before training, naming the key and the fix.

Most cases compose the real config and run the real validation entry point (fast); the ones that only the
command line can see (sweeper settings of a multirun, unknown keys, secrets) and a sample of the others go
through the real `visiontrain` CLI: exit code 2, one clear message, no traceback, no run dir, no checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import compose_train, run_cli
from visiontrain.commands.validation import validate_sweeper, validate_train_config
from visiontrain.config import config_dir
from visiontrain.config.overrides import check_no_secrets, check_override_keys, compose_for_sweep
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
    (["export.exporter=dynamo"], "export.opset", "from 18 to", "export.opset=18"),  # the default 17: torchscript's
    ([*CHURN, "export.exporter=dynamo"], "export.opset", "dynamo exporter writes), got 17", "export.opset=18"),
    (["export.opset=21"], "export.opset", "from 13 to 20", "export.opset=17, or export.exporter=dynamo"),
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
    ["export.exporter=dynamo", "export.opset=18"], [*CHURN, "export.exporter=dynamo", "export.opset=23"],
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
    ([*CHURN, "hparams_search=churn_optuna", "hydra.sweeper.grace_s=10"], "hydra.sweeper.grace_s",
     "hydra.sweeper.grace_s=120"),
    ([*CHURN, "hparams_search=churn_optuna", "hydra.sweeper.workers=0", "optimizer.lr=0.01,0.001"],
     "hydra.sweeper.workers", "hydra.sweeper.workers=2"),
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
     "export.exporter, export.onnx, export.opset,"),
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


# --- every choice: a misspelt value is an error naming the key and the values, never a default --------------

def compose_command(command: str, *overrides: str):
    """``command``'s config composed as the CLI composes it (predict, serve, stream: from the ConfigStore)."""
    from hydra import compose, initialize, initialize_config_dir

    from visiontrain.cli import COMMANDS, STORED_CONFIGS, _store_config

    name = COMMANDS[command][0]
    if name in STORED_CONFIGS:
        with initialize(version_base="1.3", config_path=None):
            return compose(_store_config(name), overrides=list(overrides))
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        return compose(name, overrides=list(overrides))


def _choice_cases():
    """(command, overrides that set the stage, key, the values it accepts): every fixed-choice key there is."""
    from visiontrain.config import choices as c

    table = ["experiment=churn"]
    source = [*table, "data.source=/tables/churn.csv"]
    serve_model = ["model=m.onnx"]
    return [
        ("train", [], "task", c.TASK_NAMES),
        ("train", [], "model.input.interpolation", c.INTERPOLATIONS),
        ("train", [], "schedule.bn_stats", c.BN_STATS),
        ("train", ["augment/mixup=timm"], "augment.mixup.mode", c.MIXUP_MODES),
        ("train", [], "data.balance", c.IMAGE_BALANCE),
        ("train", [], "data.format", c.IMAGE_FORMATS),
        ("train", [], "data.duplicates.across_classes", c.ACROSS_CLASSES_POLICIES),
        ("train", [], "data.duplicates.within_class", c.WITHIN_CLASS_POLICIES),
        ("train", [], "data.builtin", c.BUILTIN_DATASETS),
        ("train", [], "monitor.mode", ("max", "min")),
        ("train", [], "export.quantize", ("int8",)),
        ("train", [], "export.exporter", c.EXPORTERS),
        ("train", table, "export.exporter", c.EXPORTERS),
        ("train", [], "trainer.compile", c.COMPILE_MODES),
        ("train", ["logger=wandb"], "logger.wandb.mode", c.WANDB_MODES),
        ("train", table, "data.task_type", c.TABLE_TASK_TYPES),
        ("train", table, "data.balance", c.TABLE_BALANCE),
        ("train", source, "data.format", ("auto", *c.TABLE_FORMATS)),
        ("train", table, "data.http.pagination", c.HTTP_PAGINATION),
        ("train", table, "decision.threshold_metric", c.THRESHOLD_METRICS),
        ("train", table, "model.kind", ("mlp", "estimator")),
        ("train", table, "data.cleaning.missing_numeric", c.MISSING_VALUE_RULES),
        ("train", table, "data.cleaning.missing_category", c.MISSING_VALUE_RULES),
        ("train", table, "data.cleaning.unknown_category", c.UNKNOWN_CATEGORY_RULES),
        ("train", table, "data.cleaning.outliers", c.OUTLIER_RULES),
        ("train", table, "data.inference.leakage", c.LEAKAGE_RULES),
        ("train", table, "features.impute_numeric", c.NUMERIC_IMPUTERS),
        ("train", table, "features.impute_category", c.CATEGORY_IMPUTERS),
        ("lr_find", [], "lr_find.mode", c.LR_FIND_MODES),
        ("evaluate", ["ckpt=x.ckpt"], "split", ("val", "test")),
        ("evaluate", ["ckpt=x.ckpt"], "tta", c.TTA_MODES),
        ("export", ["ckpt=x.ckpt"], "quantize", ("int8",)),
        ("export", ["ckpt=x.ckpt"], "exporter", c.EXPORTERS),
        ("predict", [*serve_model, "input=x"], "split", ("train", "val", "test")),
        ("serve", serve_model, "log_level", c.SERVE_LOG_LEVELS),
        ("retrain", ["registry=registry", "model=churn", "data=fresh.csv"], "promote_to", c.RETRAIN_PROMOTE_TO),
    ]


@pytest.mark.parametrize(("command", "stage", "key", "allowed"), _choice_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_choice_refuses_a_misspelt_value_and_its_fix_passes(command, stage, key, allowed):
    """The library-free check the CLI runs before any import: the key, every accepted value, a fix that works."""
    from visiontrain.config.checks import COMMAND_CHECKS

    check = COMMAND_CHECKS[command]
    with pytest.raises(ConfigError) as raised:
        check(compose_command(command, *stage, f"{key}=bogus"))

    assert raised.value.key == key
    assert ", ".join(map(str, allowed)) in raised.value.problem and "'bogus'" in raised.value.problem
    fix = raised.value.fix
    assert fix.startswith(f"{key}=") and fix.split("=", 1)[1].split()[0] in {str(v).lower() for v in allowed}
    try:
        check(compose_command(command, *stage, fix.split()[0]))
    except ConfigError as other:  # the run may stop later for another reason (a file), never for this key
        assert other.key != key, other


# --- every command's options, through the real command line: exit 2, one line, the fix, nothing written ------

# (command, arguments, the whole error line, the fix line): a file named model.onnx and a folder named images
# exist in the working folder, so each run stops at the option itself
COMMAND_MISTAKES = [
    ("train", ["model.input.interpolation=cubicx"],
     "config key `model.input.interpolation`: must be one of bilinear, bicubic, nearest, area; got 'cubicx'",
     "model.input.interpolation=bilinear"),
    ("predict", ["model=model.onnx", "input=images", "top_k=0"], "config key `top_k`: must be >= 1, got 0",
     "top_k=5"),
    ("predict", ["model=model.onnx", "input=images", "top_k=abc"],
     "config key `top_k`: must be an integer, got 'abc' (str)", "top_k=5"),
    ("predict", ["model=model.onnx", "input=images", "id_columns=customerID"],
     "config key `id_columns`: must be a list of column names, got 'customerID' (str)", "id_columns=[customerID]"),
    ("predict", ["model=model.onnx", "input=nowhere"], "config key `input`: input nowhere does not exist",
     "input=<an image, image folder, image manifest or table file>"),
    ("serve", ["model=model.onnx", "port=99999"], "config key `port`: must be <= 65535, got 99999", "port=8000"),
    ("serve", ["model=model.onnx", "port=-1"], "config key `port`: must be >= 1, got -1", "port=8000"),
    ("serve", ["model=model.onnx", "log_level=loud"],
     "config key `log_level`: must be one of info, warning, error, critical, debug, trace; got 'loud'",
     "log_level=info"),
    ("serve", ["model=model.onnx", "docs=yes"], "config key `docs`: must be true or false, got 'yes'", "docs=true"),
    ("stream", ["model=model.onnx", "source=kafka://localhost:9092/in", "group=g",
                "output=kafka://localhost:9092/out", "top_k=2.5"],
     "config key `top_k`: must be an integer, got 2.5 (float)", "top_k=5"),
    ("stream", ["model=model.onnx", "source=kafka://localhost:9092/in", "group=g",
                "output=kafka://localhost:9092/out", "metrics_port=70000"],
     "config key `metrics_port`: must be <= 65535, got 70000", "metrics_port=9108"),
    ("stream", ["model=model.onnx", "source=kafka://localhost:9092/in", "group=g",
                "output=kafka://localhost:9092/out", "sink_table="], "config key `sink_table`: must not be empty",
     "sink_table=stream_results"),
    ("drift", ["reference=images", "current=images", "ks_pvalue=2"], "config key `ks_pvalue`: must be < 1, got 2",
     "ks_pvalue=0.01"),
    ("drift", ["reference=images", "current=images", "exit_code_on_drift=-1"],
     "config key `exit_code_on_drift`: must be >= 0, got -1", "exit_code_on_drift=1"),
    ("retrain", ["registry=images", "model=churn", "data.source=images"],  # its data is the fresh data itself
     "config key `data.source`: data is a single value in this config, not a section with keys", "data=<value>"),
    ("retrain", ["registry=images", "model=churn", "data=images", "holdout_fraction=0"],
     "config key `holdout_fraction`: must be > 0, got 0", "holdout_fraction=0.2"),
    ("retrain", ["registry=images", "model=churn", "data=images", "extra_overrides=[trainer.max_epochs=3]"],
     "config key `extra_overrides`: `extra_overrides=[trainer.max_epochs=3]` cannot be read as an override: a value "
     "holding `=` must be quoted inside the override, and the override quoted for the shell",
     """'extra_overrides=["trainer.max_epochs=3"]'"""),  # each item quoted, not the list (one string)
    ("evaluate", ["ckpt=x.ckpt", "batch_size=0"], "config key `batch_size`: must be >= 1, got 0", "batch_size=64"),
    ("evaluate", ["ckpt=x.ckpt"], "config key `ckpt`: checkpoint x.ckpt does not exist",
     "ckpt=outputs/<experiment>/runs/<time>/checkpoints/last.ckpt"),
    ("export", ["ckpt=x.ckpt", "quantize=int4"], "config key `quantize`: must be one of int8; got 'int4'",
     "quantize=int8"),
    ("export", ["ckpt=x.ckpt", "exporter=onnxscript"],
     "config key `exporter`: must be one of torchscript, dynamo; got 'onnxscript'", "exporter=torchscript"),
    ("export", ["ckpt=x.ckpt", "parity_images=-1"], "config key `parity_images`: must be >= 0, got -1",
     "parity_images=32"),
    # an unquoted URL: Hydra's grammar reads its `=` as syntax
    ("train", ["experiment=churn", "data.source=https://api.example.com/rows?page=1&size=50"],
     "config key `data.source`: `data.source=https://api.example.com/rows?page=1&size=50` cannot be read as an "
     "override: a value holding `&` `=` must be quoted inside the override, and the override quoted for the shell",
     """'data.source="https://api.example.com/rows?page=1&size=50"'"""),
    ("train", ["experiment=churn", "data.source=postgresql://etl@db/churn?sslmode=require", "data.table=customers"],
     "config key `data.source`: `data.source=postgresql://etl@db/churn?sslmode=require` cannot be read as an "
     "override: a value holding `=` must be quoted inside the override, and the override quoted for the shell",
     """'data.source="postgresql://etl@db/churn?sslmode=require"'"""),
    ("predict", ["model=model.onnx", "input=https://files.example.com/t.csv?page=2"],
     "config key `input`: `input=https://files.example.com/t.csv?page=2` cannot be read as an override: a value "
     "holding `=` must be quoted inside the override, and the override quoted for the shell",
     """'input="https://files.example.com/t.csv?page=2"'"""),
    ("serve", ["model=model.onnx", "host"], "config key `host`: `host` is not an override: each is key=value",
     "host=<value>"),
]


@pytest.fixture()
def command_folder(tmp_path) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"not read: the option is refused first")
    (tmp_path / "images").mkdir()
    return tmp_path


@pytest.mark.parametrize(("command", "arguments", "line", "fix"), COMMAND_MISTAKES,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v if len(v) < 12 else None)
def test_each_command_refuses_a_bad_option_in_one_line_before_it_starts(command, arguments, line, fix,
                                                                         command_folder):
    result = run_cli(command, *arguments, cwd=command_folder, timeout=120,
                     env={"VISIONTRAIN_CACHE_DIR": str(command_folder / "cache")})

    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines() == [f"visiontrain: config error: {line}", f"  fix: {fix}"], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (command_folder / "outputs").exists() and not (command_folder / "cache").exists()


@pytest.mark.parametrize(("command", "arguments", "printed"), [
    ("train", ["experiment=churn"], "  source: https://api.example.com/rows?page=1&size=50\n"),
    ("train", ["experiment=churn", "data.table=customers"], "  source: postgresql://etl@db/churn?sslmode=require\n"),
    ("predict", ["model=model.onnx"], "input: https://files.example.com/t.csv?page=2\n"),
], ids=["train-http", "train-sql", "predict"])
def test_the_quoting_the_error_suggests_is_accepted_as_typed(command, arguments, printed, command_folder):
    """The fix line of the grammar error, split as a shell splits it, composes to the URL itself."""
    import shlex

    key, url = (part.strip() for part in printed.split(": ", 1))
    key = f"data.{key}" if command == "train" else key  # printed inside its section
    fix = next(f for c, _, line, f in COMMAND_MISTAKES if c == command and url in line)
    (override,) = shlex.split(fix)

    result = run_cli(command, *arguments, override, "--cfg", "job", cwd=command_folder, timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    assert printed in result.stdout
    assert override == f'{key}="{url}"'


# --- what a refused value used to fall back to: never any more ----------------------------------------------

def test_an_unknown_interpolation_is_an_error_wherever_it_is_read():
    """The input spec (training, the ONNX file it writes) and an ONNX file's metadata (predict, serve, stream)."""
    from visiontrain.core.image_preprocess import ImageSpec
    from visiontrain.core.model_metadata import ModelMetadata
    from visiontrain.errors import MetadataError
    from visiontrain.image.transforms import resolve_input_spec

    with pytest.raises(ConfigError) as raised:
        resolve_input_spec("resnet18", image_size=32, interpolation="cubicx")
    assert raised.value.key == "model.input.interpolation" and "got 'cubicx'" in raised.value.problem
    assert resolve_input_spec("resnet18", image_size=32, interpolation="nearest").interpolation == "nearest"

    recorded = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "resize_to": 36}
    with pytest.raises(MetadataError, match="'interpolation' is 'cubicx'"):
        ImageSpec.from_metadata({**recorded, "interpolation": "cubicx"})
    with pytest.raises(MetadataError, match="re-export the model"):
        ModelMetadata(task="image_classification", interpolation="cubicx")
    assert ImageSpec.from_metadata({**recorded, "interpolation": "area"}).interpolation == "area"
    assert ImageSpec.from_metadata(recorded).interpolation == "bilinear"  # exports from before it was recorded


def test_stream_settings_never_fall_back_on_an_empty_or_truncated_value(tmp_path):
    from visiontrain.config.checks import check_stream_config

    (tmp_path / "m.onnx").write_bytes(b"")  # the rules across options come after the files named exist
    stage = [f"model={tmp_path / 'm.onnx'}", "source=kafka://localhost:9092/in", "group=g",
             "output=kafka://localhost:9092/out", "rejects=rejects.jsonl"]
    for override, key in (("sink_table=''", "sink_table"), ("image_field=null", "image_field"),
                          ("top_k=2.5", "top_k"), ("max_batch_size=null", "max_batch_size"),
                          ("output=null", "output"), ("output=kafka://localhost:9092/in", "output")):
        with pytest.raises(ConfigError) as raised:
            check_stream_config(compose_command("stream", *stage, override))
        assert raised.value.key == key, override


def test_the_command_options_hold_no_second_default():
    """Defaults live in conf/<command>.yaml: every option of the models the commands receive is required there."""
    from visiontrain.config import commands

    for model in (commands.EvaluateOptions, commands.ExportOptions, commands.PredictOptions,
                  commands.ServeOptions, commands.StreamOptions, commands.DriftOptions, commands.RetrainOptions):
        defaulted = [name for name, field in model.model_fields.items() if not field.is_required()]
        assert not defaulted, f"{model.__name__}: {defaulted} have a default in the model, not the YAML"


def test_export_checks_the_opset_against_the_exporter_it_names(tmp_path):
    """`visiontrain export exporter=dynamo` keeps the default opset 17, which dynamo does not write: refused first."""
    from visiontrain.commands.validation import validate_export_config

    ckpt = tmp_path / "x.ckpt"
    ckpt.write_bytes(b"not read: the options are refused first")
    with pytest.raises(ConfigError) as raised:
        validate_export_config(compose_command("export", f"ckpt={ckpt}", "exporter=dynamo"))
    assert raised.value.key == "opset" and "dynamo exporter writes), got 17" in raised.value.problem
    assert raised.value.fix == "opset=18, or exporter=torchscript (which writes opset 17)"
    assert validate_export_config(compose_command("export", f"ckpt={ckpt}", "exporter=dynamo", "opset=18")
                                  ).exporter == "dynamo"


@pytest.fixture(scope="module")
def nearest_image_run(tmp_path_factory) -> Path:
    """A tiny image classifier trained with model.input.interpolation=nearest (not the backbone's bicubic)."""
    from conftest import TINY_BACKBONE, copy_hymenoptera

    base = tmp_path_factory.mktemp("nearest")
    data = copy_hymenoptera(base / "hymenoptera", per_class=4)
    result = run_cli("train", "experiment=hymenoptera", f"data.root={data}", f"model.backbone={TINY_BACKBONE}",
                     "model.weights=null", "model.input.image_size=32", "model.input.interpolation=nearest",
                     "data.batch_size=4", "data.num_workers=0", "trainer.max_epochs=1", "schedule.freeze_epochs=0",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={base / 'run'}", cwd=base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base / "run"


def test_the_interpolation_asked_for_is_the_one_trained_and_recorded(nearest_image_run):
    import json

    from visiontrain.core.model_metadata import ModelMetadata

    summary = json.loads((nearest_image_run / "summary.json").read_text())
    assert ModelMetadata.read(nearest_image_run / "model.onnx").interpolation == "nearest"
    assert "interpolation: nearest" in (nearest_image_run / ".hydra" / "config.yaml").read_text()
    assert summary["export"]["parity"]["passed"]


def test_export_data_root_that_holds_no_images_fails_instead_of_random_parity_inputs(nearest_image_run, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("export", f"ckpt={nearest_image_run / 'checkpoints' / 'last.ckpt'}",
                     f"data_root={tmp_path / 'empty'}", f"output={tmp_path / 'model.onnx'}",
                     f"hydra.run.dir={tmp_path / 'export'}", cwd=tmp_path, timeout=300)

    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "visiontrain: data error:" in result.stderr and "Traceback" not in result.stderr
    assert "random inputs" not in result.stdout + result.stderr and not (tmp_path / "model.onnx").exists()


def test_evaluate_split_test_of_a_run_without_test_rows_is_refused_not_scored_on_val(tmp_path):
    from conftest import TELCO_SAMPLE

    train = run_cli("train", "experiment=churn", "model=logistic_regression", "data.test_fraction=0",
                    f"data.source={TELCO_SAMPLE}", "export.onnx=false",  # the 500 fixture rows: seconds, not a minute
                    "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                    timeout=300, env={"VISIONTRAIN_CACHE_DIR": str(tmp_path / "cache")})
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    (ckpt,) = (tmp_path / "run" / "checkpoints").glob("last.ckpt")

    result = run_cli("evaluate", f"ckpt={ckpt}", "split=test", f"hydra.run.dir={tmp_path / 'evaluate'}",
                     cwd=tmp_path, timeout=300, env={"VISIONTRAIN_CACHE_DIR": str(tmp_path / "cache")})

    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        "visiontrain: config error: config key `split`: the checkpoint's run held out no test rows "
        "(data.test_fraction=0)", "  fix: split=val (or data_root=<a table> to score new rows)"]
    assert not (tmp_path / "evaluate" / "evaluation.json").exists()
