"""`--help` and a config mistake answer before any heavy library loads: the command's module is imported only
once its config has passed the library-free checks (see visiontrain.cli)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning", "timm", "sklearn", "albumentations", "onnxruntime")


def imported_modules(*args: str, cwd) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `visiontrain ARGS` with ``-X importtime``; every module it imported, by its top-level package."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "visiontrain", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    names = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in result.stderr.splitlines()
             if line.startswith("import time:") and line.count("|") == 2}
    return result, names


@pytest.mark.parametrize(("args", "returncode", "message"), [
    (["train", "--help"], 0, ""),
    (["predict", "--help"], 0, ""),
    (["train", "trainer.max_epochs=-5"], 2, "config key `trainer.max_epochs`: must be >= 1, got -5"),
    (["train", "optimizer.lr=abc"], 2, "config key `optimizer.lr`: must be a number, got 'abc'"),
    (["train", "experiment=churn", "data.val_fraction=0.7"], 2, "config key `data.val_fraction`: must be <= 0.5"),
    (["train", "optimizer.lrr=0.1"], 2, "did you mean optimizer.lr?"),
    (["train", "model.input.interpolation=cubicx"], 2, "config key `model.input.interpolation`: must be one of"),
    (["train", "experiment=churn", "data.cleaning.outliers=cap"], 2, "config key `data.cleaning.outliers`"),
    (["train", "experiment=churn", "data.source=https://h/api?page=1"], 2, "'data.source=\"https://h/api?page=1\"'"),
    (["predict", "model=m.onnx", "input=.", "top_k=0"], 2, "config key `top_k`: must be >= 1, got 0"),
    (["serve", "model=m.onnx", "port=99999"], 2, "config key `port`: must be <= 65535, got 99999"),
    (["stream", "model=m.onnx", "source=kafka://h:9092/t", "group=g", "max_wait_ms=0"], 2, "config key `max_wait_ms`"),
    (["drift", "reference=.", "current=.", "psi_threshold=0"], 2, "config key `psi_threshold`: must be > 0"),
    (["retrain", "registry=.", "model=churn", "data=.", "holdout_fraction=1.5"], 2,
     "config key `holdout_fraction`: must be < 1"),
    (["models", "promote", "registry=.", "model=churn"], 2, "config key `version`: promote needs the version"),
    (["evaluate", "ckpt=x.ckpt", "split=train"], 2, "config key `split`: must be one of val, test"),
    (["export", "ckpt=x.ckpt", "atol=0"], 2, "config key `atol`: must be > 0"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_help_and_config_errors_import_no_training_library(args, returncode, message, tmp_path):
    result, modules = imported_modules(*args, cwd=tmp_path)

    assert result.returncode == returncode, result.stderr[-3000:]
    assert message in result.stderr
    assert "visiontrain" in modules and "hydra" in modules  # the trace was read
    assert not modules & set(HEAVY), f"{' '.join(args)} imported {sorted(modules & set(HEAVY))}"
    assert not (tmp_path / "outputs").exists()


def test_help_lists_the_groups_and_the_composed_config_like_hydra(tmp_path):
    """Our `--help` fills Hydra's help template from conf/: every group with its options, then the config."""
    from visiontrain.config import config_dir

    result, _ = imported_modules("train", "--help", "experiment=churn", cwd=tmp_path)

    groups = {p.parent.relative_to(config_dir()).as_posix() for p in config_dir().rglob("*.yaml")}
    for group in sorted(g for g in groups if g != "." and not g.startswith("hydra")):
        options = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        assert f"{group}: {', '.join(options)}\n" in result.stdout
    assert "hydra/launcher" not in result.stdout and "Composed config:\ntask: tabular\n" in result.stdout
    assert "run_dir: ${hydra:runtime.output_dir}" in result.stdout  # unresolved unless --resolve
