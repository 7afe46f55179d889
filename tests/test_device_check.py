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
from packaging.requirements import Requirement

from conftest import REPO, copy_hymenoptera

sys.path[:0] = [str(REPO / "scripts"), str(REPO / "scripts" / "device")]

from prepare import PEER, PHOTOS, first_existing  # noqa: E402

HAS_PHOTOS = first_existing(PHOTOS) is not None
GPU_STEPS = ("gpu_train", "bench", "compile", "onnx_providers")  # skipped, one line each, without CUDA


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
    for step in GPU_STEPS:
        assert f"SKIP {step}: no CUDA device here" in result.stdout
    results = json.loads((tmp_path / "device_check.json").read_text())
    environment = results["environment"]
    assert environment["status"] == "passed"
    assert environment["versions"]["torch"] and environment["cuda_available"] is False
    assert environment["unmet_requirements"] == [], "this venv meets every requirement"
    if HAS_PHOTOS:  # a clone without ../shared skips the config step, saying so
        assert results["configs"]["validated"] == ["gpu_train", "compile", "bench", "onnx_providers"]
    else:
        assert results["configs"]["status"] == "skipped" and "no photos" in results["configs"]["reason"]
    tests = results["gpu_tests"]
    assert tests["status"] == "passed" and tests["failed"] == 0 and tests["passed"] == 0
    assert "tests/test_gpu_paths.py" in tests["files"] and tests["skipped"] >= 5
    assert all("CUDA GPU" in reason for reason in tests["skip_reasons"]), tests["skip_reasons"]
    assert {results[step]["status"] for step in GPU_STEPS} == {"skipped"}
    assert (tmp_path / "device_check.md").read_text().count("SKIP") == len(GPU_STEPS) + (0 if HAS_PHOTOS else 1)
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


@pytest.mark.slow  # a one-epoch run with its int8 export, then the provider benchmark: about a minute
@pytest.mark.shared_data(first_existing(PHOTOS) or PHOTOS[-1])
def test_the_rehearsal_exports_a_model_and_times_it_on_each_provider(tmp_path):
    result = device_check(tmp_path, "--rehearse", "--steps", "onnx_providers", "--budget", "1200")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    step = json.loads((tmp_path / "device_check.json").read_text())["onnx_providers"]
    assert step["status"] == "passed" and step["results"] == json.loads(
        (tmp_path / "bench_providers.json").read_text())["results"]
    statuses = {(cell["providers"], cell["model"]): cell["status"] for cell in step["results"]}
    assert statuses["cpu", "float"] == statuses["cpu", "int8"] == "measured"
    assert statuses["cuda", "int8"] == "unsupported", "no GPU here: CUDA is recorded with its reason, not timed"
    summary = (tmp_path / "device_check.md").read_text()
    assert "| cpu | int8 |" in summary and "no CUDA execution provider" in summary


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


def _tiny_model(folder: Path) -> tuple[Path, Path]:
    """A small float image classifier (conv, pool, dense; dynamic batch) and its static int8 QDQ copy, quantized
    with the settings of visiontrain.export.quantize (per-channel int8 weights, uint8 activations, min-max)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    generator = np.random.default_rng(0)
    weights = [numpy_helper.from_array(generator.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("w", (8, 3, 3, 3)), ("b", (8,)), ("fw", (8, 2)), ("fb", (2,)))]
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]), helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
             helper.make_node("Flatten", ["pool"], ["flat"]), helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                            ["batch", 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])], weights)
    float_path, int8_path = folder / "model.onnx", folder / "model.int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), float_path)

    class Calibration:
        def __init__(self) -> None:
            self.batches = iter([{"image": generator.standard_normal((4, 3, 16, 16)).astype(np.float32)}])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(float_path), str(int8_path), Calibration(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax)
    return float_path, int8_path


def test_the_provider_benchmark_times_the_cpu_and_says_why_a_gpu_provider_is_unsupported(tmp_path):
    """bench_providers.py as the onnx_providers step runs it, on this machine's onnxruntime: both files timed on the
    CPU at batch 1 and 32, each GPU provider recorded as unsupported with onnxruntime's own reason."""
    import onnxruntime

    float_path, int8_path = _tiny_model(tmp_path)
    figures_file = tmp_path / "bench_providers.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_providers.py"), "--model", str(float_path),
                             "--int8", str(int8_path), "--calls", "5", "--json", str(figures_file)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    cells = {(cell["providers"], cell["model"]): cell for cell in figures["results"]}
    assert set(cells) == {(p, m) for p in ("cpu", "cuda", "tensorrt") for m in ("float", "int8")}
    for model in ("float", "int8"):
        cpu = cells["cpu", model]
        assert cpu["status"] == "measured" and cpu["used"] == ["CPUExecutionProvider"]
        assert cpu["nodes"]["CPUExecutionProvider"] >= 5, "the node placement read from onnxruntime's profile"
        for batch in ("1", "32"):
            figures_at = cpu["batches"][batch]
            assert figures_at["p50_ms"] > 0 and figures_at["x_cpu"] == 1.0
            assert figures_at["images_per_s"] == pytest.approx(int(batch) * 1000 / figures_at["p50_ms"], rel=0.01)
    gpu_build = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    for choice in ("cuda", "tensorrt"):
        for model in ("float", "int8"):
            cell = cells[choice, model]
            assert cell["status"] == "unsupported", cell
            assert ("could not start" if gpu_build else "lacks") in cell["reason"]
    assert figures["markdown"][0].startswith("| providers | model | batch 1 p50 ms")
    assert len(figures["markdown"]) == 2 + len(cells) and "unsupported: cuda" in "\n".join(figures["markdown"])


def test_a_gpu_provider_that_leaves_the_convolutions_to_the_cpu_is_unsupported():
    """What an int8 QDQ file can meet on the CUDA provider: its quantized kernels run on the CPU; the figure would
    be the CPU's, so the cell says so rather than timing it."""
    from bench_providers import gpu_runs_the_compute

    placement = [("QuantizeLinear", "CUDAExecutionProvider"), ("QLinearConv", "CPUExecutionProvider"),
                 ("Conv", "CUDAExecutionProvider"), ("Shape", "CPUExecutionProvider"),
                 ("MatMulInteger", "CPUExecutionProvider")]
    reason = gpu_runs_the_compute(placement, "cuda")
    assert reason.startswith("2 of the 3 convolution and matrix nodes ran on the CPU under providers=cuda")
    assert "QLinearConv x1" in reason and "MatMulInteger x1" in reason
    assert gpu_runs_the_compute(placement[2:4], "cuda") is None, "shape arithmetic on the CPU is expected"
    assert gpu_runs_the_compute(placement, "cpu") is None


def test_onnxruntime_gpu_is_not_carried_beside_the_images_onnxruntime():
    """The device image has the CPU onnxruntime; onnxruntime-gpu must replace it, never sit beside it, and its wheel
    is too large to carry: nothing of onnxruntime travels, and the check says why its CUDA figures are missing."""
    from check import ONNXRUNTIME_GPU_NOTE
    from prepare import TRAVEL_LIMIT_MIB, image_packages, top_level_requirements

    wanted = {Requirement(text).name for text in top_level_requirements(image_packages())}
    assert not {name for name in wanted if name.startswith("onnxruntime")}
    assert f"{TRAVEL_LIMIT_MIB} MiB" in ONNXRUNTIME_GPU_NOTE
