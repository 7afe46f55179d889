"""A team's model registry: a run registers its verified model, a deployer promotes, rolls back, and reads the
history; versions never change, aliases move atomically even with many writers, and a remote (fsspec) registry
behaves like a folder."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from conftest import run_cli

from visiontrain.errors import ModelError, RegistryError
from visiontrain.model_registry.store import ModelRegistry


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory) -> dict:
    """A real churn run (logistic regression on the generated table) that registered itself as candidate."""
    from visiontrain.tabular.builtin import generate_churn_table

    base = tmp_path_factory.mktemp("registry_churn")
    generate_churn_table(rows=1200, seed=3).to_csv(base / "train.csv", index=False)
    registry = base / "registry"
    result = run_cli("train", "experiment=churn", f"data.source={base / 'train.csv'}", "model=logistic_regression",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={base / 'run'}", "register=churn",
                     f"registry={registry}", "register_alias=candidate", cwd=base)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"base": base, "run": base / "run", "registry": registry, "stdout": result.stdout}


def models_cli(registry: Path, *args: str, cwd: Path):
    return run_cli("models", *args, f"registry={registry}", cwd=cwd)


def test_a_training_run_registers_its_verified_model_with_its_record(churn_run):
    registry = ModelRegistry(churn_run["registry"])
    version = registry.version("churn", "candidate")
    summary = json.loads((churn_run["run"] / "summary.json").read_text())

    assert (version.version, registry.aliases("churn").aliases) == (1, {"candidate": 1})
    assert summary["registered"]["label"] == "churn:v1" and "churn:v1 (candidate)" in churn_run["stdout"]
    record = version.record
    assert record["monitor"]["metric"] == "val/roc_auc"
    assert record["metrics"]["test"]["test/roc_auc"] == summary["evaluation"]["test"]["metrics"]["test/roc_auc"]
    assert record["data_fingerprint"].startswith("source:sha256:")
    assert "model=logistic_regression" in record["overrides"] and record["config"].startswith("task:")
    assert record["code_version"].startswith("visiontrain ")
    assert record["interface"]["kind"] == "table" and "tenure" in record["interface"]["inputs"]
    assert registry.local_model(version).read_bytes() == (churn_run["run"] / "model.onnx").read_bytes()


def test_a_deployer_promotes_rolls_back_and_reads_the_history(churn_run, tmp_path):
    registry_dir = tmp_path / "registry"
    run = churn_run["run"]
    for note in ("first", "second"):
        result = models_cli(registry_dir, "register", "model=churn", f"run={run}", f"note={note}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert "registered churn:v2" in result.stdout

    steps = [("promote", "version=1", "reason=first release"), ("promote", "version=latest", "to=candidate"),
             ("promote", "version=candidate", "reason=canary looked fine"), ("rollback", "reason=errors up")]
    for action, *args in steps:
        result = models_cli(registry_dir, action, "model=churn", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert "production rolled back: v2 -> v1" in result.stdout

    listing = json.loads(models_cli(registry_dir, "list", "format=json", cwd=tmp_path).stdout)
    assert listing[0]["model"] == "churn" and listing[0]["aliases"] == {"production": 1, "candidate": 2}
    history = json.loads(models_cli(registry_dir, "history", "model=churn", "format=json", cwd=tmp_path).stdout)
    assert [(m["action"], m["alias"], m["from_version"], m["to_version"]) for m in history] == [
        ("promote", "production", None, 1), ("promote", "candidate", None, 2), ("promote", "production", 1, 2),
        ("rollback", "production", 2, 1)]
    assert history[2]["reason"] == "canary looked fine" and history[3]["reason"] == "errors up"
    assert all(m["by"] and m["at"] for m in history)
    shown = models_cli(registry_dir, "show", "model=churn", cwd=tmp_path).stdout
    assert "[production]" in shown and "[candidate]" in shown and "val/roc_auc=" in shown


def test_registry_mistakes_name_what_there_is(churn_run, tmp_path):
    registry_dir = churn_run["registry"]
    unknown = models_cli(registry_dir, "show", "model=fraud", cwd=tmp_path)
    assert unknown.returncode == 2 and "has no model 'fraud' (it has churn)" in unknown.stderr
    no_version = models_cli(registry_dir, "promote", "model=churn", cwd=tmp_path)
    assert no_version.returncode == 2 and "config key `version`" in no_version.stderr
    no_alias = models_cli(registry_dir, "promote", "model=churn", "version=staging", cwd=tmp_path)
    assert no_alias.returncode == 2 and "no alias 'staging' (candidate -> v1)" in no_alias.stderr
    first_move = models_cli(registry_dir, "rollback", "model=churn", "alias=candidate", cwd=tmp_path)
    assert first_move.returncode == 2 and "pointed at nothing before v1" in first_move.stderr
    no_registry = run_cli("models", "list", cwd=tmp_path, env={"VISIONTRAIN_REGISTRY": None})
    assert no_registry.returncode == 2 and "config key `registry`" in no_registry.stderr

    registry = ModelRegistry(tmp_path / "other")
    with pytest.raises(RegistryError, match="not a model name"):
        registry.register("churn model", churn_run["run"] / "model.onnx")
    from visiontrain.commands.models import register_model

    text = tmp_path / "model.onnx"
    text.write_text("not a model")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        register_model(registry, "churn", text)
    assert registry.names() == []  # nothing half-registered


def test_training_refuses_a_registration_it_could_not_do_before_it_starts():
    from conftest import compose_train

    from visiontrain.config.checks import check_train_config
    from visiontrain.errors import ConfigError

    cases = {("register=churn", "registry=null"): "registry",
             ("register=churn", "registry=/tmp/r", "register_alias=Production"): "register_alias",
             ("register_alias=candidate",): "register_alias",
             ("register=churn", "registry=/tmp/r", "export.onnx=false"): "register"}
    for overrides, key in cases.items():
        with pytest.raises(ConfigError) as error:
            check_train_config(compose_train("experiment=churn", *overrides))
        assert error.value.key == key, overrides


def _move(args: tuple[str, int]) -> int:
    url, index = args
    return ModelRegistry(url).promote("churn", 1 + index % 2, to=f"alias{index % 3}").revision


def test_concurrent_writers_never_lose_a_move_or_share_a_version(churn_run, tmp_path):
    url = str(tmp_path / "registry")
    onnx = churn_run["run"] / "model.onnx"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        numbers = pool.starmap(_register, [(url, str(onnx))] * 6)
        revisions = pool.map(_move, [(url, index) for index in range(12)])
    registry = ModelRegistry(url)
    assert sorted(numbers) == list(range(1, 7)) and len(registry.versions("churn")) == 6
    assert sorted(revisions) == list(range(1, 13))
    history = registry.history("churn")
    assert [move.revision for move in history] == list(range(1, 13))
    assert registry.aliases("churn").aliases == history[-1].aliases  # aliases.json is the last move's state
    for earlier, later in zip(history, history[1:]):  # each move starts from the state the one before left
        assert later.from_version == earlier.aliases.get(later.alias)


def _register(url: str, onnx: str) -> int:
    return ModelRegistry(url).register("churn", onnx).version


def test_a_remote_registry_downloads_once_and_refuses_a_changed_file(churn_run, tmp_path):
    pytest.importorskip("fsspec.implementations.memory")
    registry = ModelRegistry("memory://team-registry")
    version = registry.register("churn", churn_run["run"] / "model.onnx", {"note": "remote"})
    registry.promote("churn", version.version)
    assert not registry.is_local and registry.names() == ["churn"]

    local = registry.local_model(registry.version("churn", "production"), cache_dir=tmp_path / "cache")
    assert local.parent == tmp_path / "cache" and local.name == f"{version.sha256}.onnx"
    local.write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="changed after registration"):
        registry.local_model(version, cache_dir=tmp_path / "cache")


def test_the_wandb_artifact_carries_the_registry_words():
    from visiontrain.tracking.results import registry_aliases

    assert registry_aliases({"registered": {"model": "churn", "version": 3, "alias": "candidate"}}) == \
        ["churn-v3", "candidate"]
    assert registry_aliases({"registered": {"model": "churn", "version": 3, "alias": None}}) == ["churn-v3"]
    assert registry_aliases({}) == []
