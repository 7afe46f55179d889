"""The prepared GPU check works before any GPU is lent: its dry run here gets as far as a machine without CUDA
can and says why it skips the rest; its rehearsal runs both trainers of the benchmark and reads their real logs;
the commands it will run on the GPU are validated first; the wheels it carries are those the device lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, copy_hymenoptera

sys.path[:0] = [str(REPO / "scripts"), str(REPO / "scripts" / "device")]

from prepare import PEER, PHOTOS, first_existing  # noqa: E402

HAS_PHOTOS = first_existing(PHOTOS) is not None


def device_check(out: Path, *args: str) -> subprocess.CompletedProcess:
    """`bash scripts/device_check.sh` as a developer runs it here, with CUDA hidden even where there is one.

    The budget is the device's (480 s) unless given: a rehearsal gets more, since a loaded machine is slow."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(REPO / "scripts" / "device_check.sh"), "--out", str(out), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)


def test_the_dry_run_skips_each_gpu_step_with_its_reason_and_exits_0(tmp_path):
    result = device_check(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for step in ("gpu_train", "compile", "bench"):
        assert f"SKIP {step}: no CUDA device here" in result.stdout
    results = json.loads((tmp_path / "device_check.json").read_text())
    environment = results["environment"]
    assert environment["status"] == "passed"
    assert environment["versions"]["torch"] and environment["cuda_available"] is False
    assert environment["unmet_requirements"] == [], "this venv meets every requirement"
    if HAS_PHOTOS:  # a clone without ../shared skips the config step, saying so
        assert results["configs"]["validated"] == ["gpu_train", "compile", "bench"]
    else:
        assert results["configs"]["status"] == "skipped" and "no photos" in results["configs"]["reason"]
    tests = results["gpu_tests"]
    assert tests["status"] == "passed" and tests["failed"] == 0 and tests["passed"] == 0
    assert "tests/test_gpu_paths.py" in tests["files"] and tests["skipped"] >= 5
    assert all("CUDA GPU" in reason for reason in tests["skip_reasons"]), tests["skip_reasons"]
    assert {results[step]["status"] for step in ("gpu_train", "compile", "bench")} == {"skipped"}
    assert (tmp_path / "device_check.md").read_text().count("SKIP") == (3 if HAS_PHOTOS else 4)
    packages = (tmp_path / "image_packages.txt").read_text().splitlines()
    assert any(line.lower().startswith("torch==") for line in packages), "the facts to refresh the image list with"


@pytest.mark.slow  # both trainers of the benchmark, several minutes; timm's train.py is in .device or ../shared
@pytest.mark.shared_data(first_existing(PEER) or PEER[-1], first_existing(PHOTOS) or PHOTOS[-1])
def test_the_rehearsal_trains_both_sides_of_the_benchmark_and_reads_their_logs(tmp_path):
    result = device_check(tmp_path, "--rehearse", "--steps", "gpu_train,bench", "--budget", "1500")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "device_check.json").read_text())
    trained = results["gpu_train"]
    assert trained["status"] == "passed" and trained["images_per_second_after_first_epoch"] > 0
    assert trained["export"]["parity"]["passed"] and len(trained["epochs"]) == 2
    assert trained["bf16"], "the stand-in runs bf16 autocast too, and the check reads Lightning's line for it"
    bench = json.loads((tmp_path / "bench_gpu.json").read_text())
    run = bench["runs"][0]
    assert run["visiontrain"] > 0 and run["timm"] > 0 and run["ratio"] == pytest.approx(run["visiontrain"] / run["timm"])
    assert "Train: 1 [" in (tmp_path / "bench_logs" / "timm.log").read_text(), "timm's own log was parsed"
    goals = {goal: (measured, verdict) for goal, measured, verdict in results["goals"]}
    assert goals["visiontrain >= 1.0x timm train.py images/s"][0] == f"{bench['ratio']:.3f}x"
    assert goals["compile >= 1.2x eager after warm-up"][1] == "not measured"


def test_a_config_mistake_in_a_gpu_command_is_caught_before_any_gpu_time(tmp_path):
    photos = copy_hymenoptera(tmp_path / "photos", per_class=2)
    good = ["experiment=hymenoptera", f"data.root={photos}", "model.weights=null", "model.backbone=resnet50",
            "schedule=full_finetune", "trainer=gpu", "trainer.max_epochs=3", f"hydra.run.dir={tmp_path}"]
    # a frozen stage as long as the run: three epochs never fine-tune
    bad = [o for o in good if o != "schedule=full_finetune"] + ["schedule.freeze_epochs=3"]
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "device" / "compose.py")],
                            input=json.dumps([good, bad]), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    verdicts = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdicts[0]["error"] is None
    assert "schedule.freeze_epochs" in verdicts[1]["error"] and "trainer.max_epochs is 3" in verdicts[1]["error"]


def test_the_device_wheels_are_what_the_image_lacks_of_our_requirements():
    from packaging.requirements import Requirement
    from prepare import SWEEP_ONLY, image_packages, top_level_requirements

    image = image_packages()
    assert image["torch"] is not None and "albumentations" not in image
    wanted = {Requirement(text).name for text in top_level_requirements(image)}
    assert {"albumentations", "hydra-core", "omegaconf", "wandb", "skl2onnx", "skops"} <= wanted
    assert not wanted & {"torch", "timm", "lightning", "onnxruntime", "numpy", *SWEEP_ONLY}


def test_replicated_photos_are_hard_links_to_one_copy(tmp_path):
    from bench_gpu import replicated_folder

    source = copy_hymenoptera(tmp_path / "photos", per_class=3)
    photos = [p for p in (source / "train" / "bees").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    target = replicated_folder(source, tmp_path / "replicated", copies=3)
    train = sorted((target / "train" / "bees").iterdir())
    assert len(train) == 3 * len(photos) >= 6, "three of each photo in train/"
    assert len(list((target / "val" / "bees").iterdir())) == len(list((source / "val" / "bees").iterdir()))
    first = {p.name[4:]: p.stat().st_ino for p in train if p.name.startswith("000_")}
    assert all(p.stat().st_ino == first[p.name[4:]] for p in train), "the copies share one inode"
