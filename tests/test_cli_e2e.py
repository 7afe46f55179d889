"""The user's story through the real `visiontrain` command: train on a messy folder, evaluate, export."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
from safetensors.torch import save_file

from conftest import TINY_BACKBONE, run_cli, written_by

TINY = [f"model.backbone={TINY_BACKBONE}", "model.weights=null", "model.input.image_size=32", "data.batch_size=4",
        "data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One real training run on a messy copy of hymenoptera, shared by the tests of its outputs."""
    from conftest import add_bad_files, copy_hymenoptera

    base = tmp_path_factory.mktemp("e2e")
    data = copy_hymenoptera(base / "hymenoptera", per_class=6)
    bad = add_bad_files(data / "train" / "ants")
    shutil.copytree(data / "val", data / "test")  # an optional test split is evaluated too
    torch.manual_seed(7)
    initial = timm.create_model(TINY_BACKBONE, num_classes=2).state_dict()
    save_file(initial, str(base / "init.safetensors"))
    run_dir = base / "run"
    result = run_cli("train", "experiment=hymenoptera", f"data.root={data}", *TINY,
                     f"model.weights_file={base / 'init.safetensors'}", "schedule.freeze_epochs=1",
                     "trainer.max_epochs=3", "callbacks.model_checkpoint.save_top_k=-1",
                     f"hydra.run.dir={run_dir}", cwd=base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"run_dir": run_dir, "data": data, "bad": bad, "initial": initial, "stdout": result.stdout, "base": base}


def test_training_writes_every_promised_output(trained_run):
    run_dir = trained_run["run_dir"]
    summary = json.loads((run_dir / "summary.json").read_text())
    for name in ("model.onnx", "rejects.csv", "history.csv", "curves.png", "confusion_matrix.csv",
                 "confusion_matrix.png", "per_class.csv", "checkpoints/last.ckpt", ".hydra/config.yaml"):
        assert (run_dir / name).is_file(), name
    assert Path(summary["checkpoints"]["best"]).is_file()
    assert summary["classes"] == ["ants", "bees"]
    assert [row["epoch"] for row in summary["history"]] == [0, 1, 2]  # every epoch, not just up to the best
    assert {"val/acc", "val/f1_macro", "val/loss"} <= set(summary["evaluation"]["val"]["metrics"])
    assert [row["class"] for row in summary["evaluation"]["val"]["per_class"]] == ["ants", "bees"]
    assert summary["export"]["parity"]["passed"] and summary["export"]["parity"]["source"] == "validation images"
    assert summary["parameters"]["total"] > 0 and set(summary["timings_seconds"]) >= {"fit", "export", "total"}
    assert summary["versions"]["torch"] == torch.__version__
    assert summary["evaluation"]["test"]["metrics"]["test/acc"] == summary["evaluation"]["val"]["metrics"]["val/acc"]
    assert (run_dir / "test_confusion_matrix.csv").is_file()
    assert "run dir" in trained_run["stdout"] and str(run_dir / "model.onnx") in trained_run["stdout"]


def test_every_file_is_used_or_rejected_with_its_reason(trained_run):
    summary = json.loads((trained_run["run_dir"] / "summary.json").read_text())
    data = summary["data"]
    files_on_disk = sum(1 for p in trained_run["data"].rglob("*") if p.is_file())
    assert data["files_in"] == files_on_disk == data["files_used"] + data["files_rejected"]
    with (trained_run["run_dir"] / "rejects.csv").open() as handle:
        rejects = {Path(row["path"]).name: row["reason"] for row in csv.DictReader(handle)}
    assert set(rejects) == set(trained_run["bad"])
    for name, reason in trained_run["bad"].items():
        assert rejects[name].startswith(reason)
    confusion = np.loadtxt(trained_run["run_dir"] / "confusion_matrix.csv", delimiter=",", skiprows=1,
                           usecols=(1, 2))
    assert confusion.sum() == data["per_split"]["val"]


def test_the_backbone_stays_frozen_in_stage_one_and_trains_after(trained_run):
    checkpoints = trained_run["run_dir"] / "checkpoints"
    initial = trained_run["initial"]

    def backbone(epoch: int) -> dict[str, torch.Tensor]:
        state = torch.load(checkpoints / f"best-epoch{epoch:03d}.ckpt", weights_only=True)["state_dict"]
        return {k[6:]: v for k, v in state.items() if k.startswith("model.") and not k.startswith("model.fc.")}

    after_stage_one = backbone(0)
    assert all(torch.equal(after_stage_one[k], initial[k]) for k in after_stage_one)  # incl. BN statistics
    after_stage_two = backbone(2)
    assert any(not torch.equal(after_stage_two[k], initial[k]) for k in after_stage_two if k.endswith("weight"))


def test_the_onnx_file_is_self_describing_and_takes_any_batch(trained_run):
    path = trained_run["run_dir"] / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) if v[:1] in "[{" else v for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["class_names"] == ["ants", "bees"] and meta["input_size"] == [3, 32, 32]
    assert meta["backbone"] == TINY_BACKBONE and meta["source_checkpoint"].endswith(".ckpt")
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3 and meta["metric"]["name"] == "val/acc"
    assert written_by(path) == {"torchscript"}, "export.exporter's default"
    for batch in (1, 5):
        logits, probabilities = session.run(None, {"image": np.random.rand(batch, 3, 32, 32).astype(np.float32)})
        assert logits.shape == (batch, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_evaluate_reproduces_the_training_metrics(trained_run):
    summary = json.loads((trained_run["run_dir"] / "summary.json").read_text())
    out = trained_run["base"] / "evaluate"
    result = run_cli("evaluate", f"ckpt={summary['checkpoints']['best']}", f"hydra.run.dir={out}",
                     "trainer.enable_progress_bar=false", cwd=trained_run["base"])
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((out / "evaluation.json").read_text())
    expected = summary["evaluation"]["val"]["metrics"]
    assert evaluation["metrics"]["val/acc"] == pytest.approx(expected["val/acc"])
    assert evaluation["metrics"]["val/f1_macro"] == pytest.approx(expected["val/f1_macro"])
    assert (out / "confusion_matrix.png").is_file()


def test_evaluate_on_another_folder_uses_every_image_of_known_classes(trained_run, tmp_path):
    folder = tmp_path / "new_photos"
    shutil.copytree(trained_run["data"] / "val", folder)  # a class tree: ants/, bees/
    (folder / "wasps").mkdir()
    shutil.copy(next((folder / "ants").iterdir()), folder / "wasps" / "wasp.jpg")
    summary = json.loads((trained_run["run_dir"] / "summary.json").read_text())
    out = tmp_path / "evaluate"
    result = run_cli("evaluate", f"ckpt={summary['checkpoints']['best']}", f"data_root={folder}",
                     f"hydra.run.dir={out}", "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert sum(row["support"] for row in evaluation["per_class"]) == 12  # every ant and bee image
    with (out / "rejects.csv").open() as handle:
        rejects = list(csv.DictReader(handle))
    assert [Path(r["path"]).name for r in rejects] == ["wasp.jpg"] and "class 'wasps'" in rejects[0]["reason"]


def test_standalone_export_checks_onnx_against_pytorch(trained_run):
    """Exported again, by the other exporter (the run's own file came from the default, torchscript)."""
    out = trained_run["base"] / "export"
    result = run_cli("export", f"ckpt={trained_run['run_dir'] / 'checkpoints' / 'last.ckpt'}",
                     f"output={out / 'digits.onnx'}", "exporter=dynamo", "opset=18", f"hydra.run.dir={out}",
                     cwd=trained_run["base"])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "export.json").read_text())
    assert report["parity"]["passed"] and report["parity"]["images"] == 12  # the 12 validation images
    assert report["parity"]["max_abs_logit_diff"] < 1e-3 and (out / "digits.onnx").is_file()
    assert written_by(out / "digits.onnx") == {"dynamo"}
    session = ort.InferenceSession(str(out / "digits.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(["logits"], {"image": np.zeros((7, 3, 32, 32), np.float32)})[0].shape == (7, 2)


@pytest.mark.slow
def test_default_job_learns_the_builtin_digits(tmp_path):
    """`visiontrain train` with no overrides: built-in data, CPU, val accuracy >= 0.95, ONNX written."""
    result = run_cli("train", f"hydra.run.dir={tmp_path / 'run'}", "trainer.enable_progress_bar=false",
                     cwd=tmp_path, env={"VISIONTRAIN_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["files_in"] == 1797 and summary["data"]["files_rejected"] == 0
    assert summary["monitor"]["best"] >= 0.95
    assert summary["weights"]["package"]["name"] == "efficientnet_lite0.in1k"  # fine-tuned, not from scratch
    assert summary["export"]["parity"]["passed"] and (tmp_path / "run" / "model.onnx").is_file()
