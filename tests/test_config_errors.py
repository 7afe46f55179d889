"""A user's config mistakes fail before any training starts, naming the key and the fix."""

from __future__ import annotations

import pytest

from conftest import compose_train, run_cli
from visiontrain.commands.validation import validate_train_config
from visiontrain.errors import ConfigError

# (overrides, the key the message must name, a piece of the fix it must give)
MISTAKES = [
    (["optimizer.lrr=0.1"], "optimizer.lrr", "did you mean optimizer.lr?"),
    (["trainer.max_epoch=3"], "trainer.max_epoch", "did you mean trainer.max_epochs?"),
    (["optimizer.lr=-0.1"], "optimizer.lr", "optimizer.lr=1e-3"),
    (["data.batch_size=abc"], "data.batch_size", "data.batch_size=32"),
    (["model.weights=null", "model.backbone=resnet999"], "model.backbone", "resnet50"),
    (["model.backbone=resnet50"], "model.backbone", "model.weights=null to train resnet50 from scratch"),
    (["augment.image_size=32"], "augment.image_size", "model.input.image_size=<value>"),  # moved with the weights
    (["experiment=hymenoptera"], "data.root", "data.root=<value>"),
    (["experiment=hymenoptera", "data.root=/no/such/folder"], "data.root", "a folder with train/ and val/"),
    (["schedule.freeze_epochs=10"], "schedule.freeze_epochs", "schedule.freeze_epochs=7"),
    (["trainer=tpu"], "trainer", "torch_xla"),
    (["trainer.compile=fast"], "trainer.compile", "trainer.compile=true"),
    (["trainer.channels_last=maybe"], "trainer.channels_last", "trainer.channels_last=true"),
    (["data.pin_memory=sometimes"], "data.pin_memory", "data.pin_memory=true"),
    (["export.quantize=int4"], "export.quantize", "export.quantize=int8"),
    (["export.exporter=onnx"], "export.exporter", "export.exporter=torchscript"),
    (["paths.run_dir=/tmp/somewhere"], "paths.run_dir", "hydra.run.dir=/path/to/run"),
]


@pytest.mark.parametrize(("overrides", "key", "fix"), MISTAKES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_config_mistake_fails_before_training_naming_key_and_fix(overrides, key, fix, tmp_path):
    # runs go to outputs/ below the working folder, whatever this machine's environment says
    result = run_cli("train", *overrides, cwd=tmp_path, timeout=120, env={"VISIONTRAIN_OUTPUT_DIR": None})

    assert result.returncode == 2, result.stderr
    assert f"config error: config key `{key}`" in result.stderr
    assert fix in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists(), "a run stopped by a config mistake leaves no run dir behind"


def test_unreachable_hub_fails_naming_the_local_weights_option(tmp_path):
    result = run_cli("train", "model.weights=null", "model.pretrained=true", "model.backbone=resnet18", cwd=tmp_path,
                     timeout=300)

    assert result.returncode == 2
    assert "model hub" in result.stderr and "model.weights_file=" in result.stderr
    assert "Epoch" not in result.stdout


def test_evaluate_and_export_check_their_keys_too(tmp_path):
    result = run_cli("evaluate", "ckptt=model.ckpt", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "did you mean ckpt?" in result.stderr

    result = run_cli("export", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "`ckpt`" in result.stderr


def test_a_typo_in_a_sweep_fails_before_the_first_trial(tmp_path):
    result = run_cli("train", "-m", "optimizer.lr=0.1,0.01", "optimizer.weight_decy=0", cwd=tmp_path, timeout=120)

    assert result.returncode == 2 and "did you mean optimizer.weight_decay?" in result.stderr
    assert "Launching" not in result.stdout


def test_help_lists_commands_and_config_groups(tmp_path):
    top = run_cli("--help", cwd=tmp_path, timeout=60)
    assert top.returncode == 0
    assert all(command in top.stdout for command in ("train", "evaluate", "export"))

    train = run_cli("train", "--help", cwd=tmp_path, timeout=60)
    assert train.returncode == 0
    for group in ("augment", "data", "experiment", "model", "optimizer", "schedule", "trainer", "logger"):
        assert group in train.stdout

    unknown = run_cli("fit", cwd=tmp_path, timeout=60)
    assert unknown.returncode == 2 and "usage: visiontrain" in unknown.stderr


def test_cfg_job_prints_the_composed_experiment_without_running(tmp_path):
    result = run_cli("train", "experiment=hymenoptera", "data.root=/data/ants", "optimizer.lr=0.01", "--cfg", "job",
                     cwd=tmp_path, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "weights: efficientnet_lite0.in1k" in result.stdout and "root: /data/ants" in result.stdout
    assert "lr: 0.01" in result.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(("override", "key"), [
    ("seed=-1", "seed"),
    ("monitor.metric=val/accuracy", "monitor.metric"),
    ("schedule.backbone_lr_scale=-1", "schedule.backbone_lr_scale"),
    ("model.drop_rate=1.5", "model.drop_rate"),
    ("model.label_smoothing=-0.1", "model.label_smoothing"),
    ("data.val_fraction=1.0", "data.val_fraction"),
    ("data.balance=oversample", "data.balance"),
    ("model.input.image_size=0", "model.input.image_size"),
    ("schedule.bn_stats=sometimes", "schedule.bn_stats"),
    ("model.backbone=resnet50", "model.backbone"),            # the default weights are EfficientNet-Lite0's
    ("model.weights=imagenet", "model.weights"),              # not a packaged weights name
    ("model.pretrained=true", "model.pretrained"),            # two sources of weights at once
])
def test_validation_names_the_offending_key(override, key, tmp_path):
    cfg = compose_train(override, f"paths.run_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}")

    with pytest.raises(ConfigError) as raised:
        validate_train_config(cfg)

    assert raised.value.key == key
    assert raised.value.fix
