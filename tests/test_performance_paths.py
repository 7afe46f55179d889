"""Hardware paths a user switches on: channels_last, torch.compile, int8 ONNX, pinned memory, and the
per-epoch throughput and memory every run records. CUDA-only checks skip cleanly where there is no GPU."""

from __future__ import annotations

import csv
import json
import resource
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conftest import TINY_BACKBONE, compose_train, run_cli, tiny_overrides
from visiontrain.image.classifier import ImageClassifier
from visiontrain.image.datamodule import resolve_pin_memory
from visiontrain.registry import task_for_config

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _tiny_classifier() -> ImageClassifier:
    spec = {"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 0.875, "interpolation": "bilinear",
            "resize_to": 37}
    return ImageClassifier(TINY_BACKBONE, ["ants", "bees"], spec).eval()


def _cli(data_root, run_dir, *extra: str) -> list[str]:
    """``tiny_overrides`` for the command line, where Hydra sets the run dir."""
    return [*(o for o in tiny_overrides(data_root, run_dir) if not o.startswith("paths.")), *extra,
            f"hydra.run.dir={run_dir}"]


def _first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def _history(run_dir) -> list[dict[str, str]]:
    with (run_dir / "history.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_channels_last_changes_the_layout_not_the_answer():
    torch.manual_seed(0)
    module = _tiny_classifier()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = module(images)
        module.accelerate(channels_last=True)
        after = module(images)
    weight = _first_conv(module.model).weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert torch.allclose(before, after, atol=1e-5)
    assert set(module.state_dict()) == set(_tiny_classifier().state_dict()), "checkpoints keep their names"


@pytest.fixture(scope="module")
def channels_last_int8_run(tiny_hymenoptera, tmp_path_factory) -> Path:
    """One real run for two independent switches (each test below asserts its own): channels_last training and the
    int8 export of its best checkpoint."""
    run_dir = tmp_path_factory.mktemp("channels_last_int8") / "run"
    result = run_cli("train", *_cli(tiny_hymenoptera, run_dir, "trainer.channels_last=true", "export.quantize=int8",
                                    "trainer.max_epochs=3", "schedule.freeze_epochs=1"), cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_a_channels_last_run_records_speed_and_memory_and_exports_a_matching_onnx(channels_last_int8_run):
    run_dir = channels_last_int8_run
    children_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the kernel's count, KiB
    rows = _history(run_dir)
    assert len(rows) == 3
    for row in rows:
        seconds = float(row["time/train_seconds"])
        assert float(row["time/train_samples_per_second"]) == pytest.approx(16 / seconds, rel=0.02)
        # resident, not virtual (gigabytes with torch), in MiB: never above the peak the kernel saw in a child
        assert 200 < float(row["memory/rss_mib"]) <= children_peak_mib + 1, (row, children_peak_mib)
        # 16 images in batches of 4: 3 step intervals inside the epoch, so two of them fit in its seconds
        assert 2 * float(row["time/step_median_ms"]) / 1000 <= seconds, row
        # data.num_workers=0: the loop decodes every batch itself, so part of each step (never all) is the wait
        assert 0.0 < float(row["time/data_wait_fraction"]) < 1.0, row
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["export"]["parity"]["passed"]


@pytest.mark.slow
def test_a_compiled_run_trains_and_its_checkpoint_loads_uncompiled(tiny_hymenoptera, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", *_cli(tiny_hymenoptera, run_dir, "trainer.compile=true",
                                    "trainer.max_epochs=2", "schedule.freeze_epochs=1"), cwd=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    state = torch.load(summary["checkpoints"]["best"], weights_only=True)["state_dict"]
    assert set(state) == {f"model.{key}" for key in _tiny_classifier().model.state_dict()}
    assert summary["export"]["parity"]["passed"]


def test_int8_export_is_smaller_agrees_with_float_and_predicts(channels_last_int8_run, tiny_hymenoptera, tmp_path):
    run_dir = channels_last_int8_run
    summary = json.loads((run_dir / "summary.json").read_text())
    int8 = summary["export"]["int8"]
    assert int8["onnx"] == str(run_dir / "model.int8.onnx") and int8["images"] == 16
    assert int8["int8_mib"] < int8["float_mib"]
    assert int8["accuracy_change"] == pytest.approx(int8["int8_accuracy"] - int8["float_accuracy"])
    graph_ops = {node.op_type for node in onnx.load(int8["onnx"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= graph_ops
    props = {p.key: p.value for p in onnx.load(int8["onnx"]).metadata_props}
    assert json.loads(props["class_names"]) == ["ants", "bees"]
    assert json.loads(props["quantization"])["calibration_images"] == 16
    predictions = {}
    for name, model in (("int8", int8["onnx"]), ("float", summary["files"]["onnx"])):
        out = tmp_path / f"{name}.csv"
        predicted = run_cli("predict", f"model={model}", f"input={tiny_hymenoptera / 'val'}", f"output={out}",
                            cwd=tmp_path)
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        with out.open() as handle:
            predictions[name] = {row["path"]: row["top1"] for row in csv.DictReader(handle)}
    assert len(predictions["int8"]) == 16 and predictions["int8"].keys() == predictions["float"].keys()
    # the export's figures, counted again from what deploy predicts with each file on the same 16 val photos
    agreement = np.mean([predictions["int8"][path] == predictions["float"][path] for path in predictions["int8"]])
    assert int8["top1_agreement"] == pytest.approx(agreement), predictions
    for name in ("int8", "float"):
        correct = np.mean([Path(path).parent.name == label for path, label in predictions[name].items()])
        assert int8[f"{name}_accuracy"] == pytest.approx(correct), (name, predictions[name])


def test_int8_is_refused_for_churn_models_before_training(tmp_path):
    churn = run_cli("train", "experiment=churn", "export.quantize=int8", f"hydra.run.dir={tmp_path / 'run2'}",
                    cwd=tmp_path)
    assert churn.returncode == 2 and "export.quantize" in churn.stderr and "image models" in churn.stderr
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("setting, accelerator, pinned", [
    ("auto", "cpu", False), ("auto", "gpu", True), ("auto", "cuda", True), (True, "cpu", True), (False, "gpu", False),
    ("auto", "auto", torch.cuda.is_available())])
def test_pinned_memory_follows_the_accelerator(setting, accelerator, pinned):
    assert resolve_pin_memory(setting, accelerator) is pinned


def test_data_prefetch_factor_reaches_the_loaders_and_is_checked(tiny_hymenoptera, tmp_path):
    """A key added through the typed path: the YAML default, the ``data`` model, the datamodule."""
    from visiontrain.config.checks import check_train_config
    from visiontrain.errors import ConfigError

    default = task_for_config(compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path, "data.num_workers=1")))
    built = default.build(default.prepare(tmp_path, True), None)
    assert built.datamodule.train_dataloader().prefetch_factor == 2  # null: PyTorch's default
    task = task_for_config(compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path, "data.num_workers=1",
                                                         "data.prefetch_factor=4")))
    built = task.build(task.prepare(tmp_path, True), None)
    loaders = built.datamodule.train_dataloader(), built.datamodule.val_dataloader()
    assert [loader.prefetch_factor for loader in loaders] == [4, 4]
    no_workers = task_for_config(compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path,
                                                               "data.prefetch_factor=4")))
    built = no_workers.build(no_workers.prepare(tmp_path, True), None)  # in-process loading: nothing to prefetch
    assert built.datamodule.val_dataloader().num_workers == 0
    with pytest.raises(ConfigError, match=r"`data.prefetch_factor`: must be >= 1, got 0"):
        check_train_config(compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path, "data.prefetch_factor=0")))


def test_gpu_trainer_turns_on_the_fast_paths(tmp_path):
    cfg = compose_train("trainer=gpu", f"paths.run_dir={tmp_path}")
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.channels_last and cfg.trainer.benchmark
    assert cfg.data.pin_memory == "auto" and cfg.data.num_workers == "auto"
    ddp = compose_train("trainer=ddp", f"paths.run_dir={tmp_path}")
    assert ddp.trainer.strategy.startswith("ddp") and "sync_batchnorm" in ddp.trainer and ddp.trainer.channels_last


@needs_cuda
@pytest.mark.gpu
def test_gpu_run_with_bf16_channels_last_and_pinned_memory(tiny_hymenoptera, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", *_cli(tiny_hymenoptera, run_dir, "trainer=gpu", "trainer.max_epochs=2",
                                    "schedule.freeze_epochs=1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _history(run_dir)
    assert all(float(row["memory/cuda_peak_mib"]) > 0 for row in rows)
    assert json.loads((run_dir / "summary.json").read_text())["export"]["parity"]["passed"]


@needs_cuda
@pytest.mark.gpu
def test_gpu_datamodule_pins_memory(tiny_hymenoptera, tmp_path):
    cfg = compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path, "trainer=gpu"))
    task = task_for_config(cfg)
    built = task.build(task.prepare(tmp_path, True), None)
    datamodule = built.datamodule
    assert datamodule.pin_memory and next(iter(datamodule.train_dataloader()))[0].is_pinned()


def test_quantized_model_keeps_most_decisions_of_the_float_model(tmp_path):
    """Calibrated on inputs like those it is scored on, int8 changes few top-1 decisions (a stub would not)."""
    from visiontrain.core.model_metadata import ModelMetadata
    from visiontrain.export.onnx_export import export_onnx
    from visiontrain.export.quantize import compare_outputs, quantize_int8

    torch.manual_seed(0)
    model = _tiny_classifier().model.eval()
    float_path = export_onnx(model, tmp_path / "m.onnx", 32,
                             ModelMetadata(task="image_classification", class_names=["a", "b"]))
    generator = np.random.default_rng(0)
    calibration = generator.standard_normal((32, 3, 32, 32), dtype=np.float32)
    quantize_int8(float_path, tmp_path / "m.int8.onnx", calibration)
    images = generator.standard_normal((64, 3, 32, 32), dtype=np.float32)
    report = compare_outputs(float_path, tmp_path / "m.int8.onnx", images)
    assert report["top1_agreement"] >= 0.8, report


def test_large_jpegs_decode_at_reduced_scale_never_below_the_target(tmp_path):
    from PIL import Image

    from visiontrain.image.image_io import read_rgb_array

    photo = Image.effect_mandelbrot((2000, 1500), (-2, -1.5, 1, 1.5), 60).convert("RGB")
    photo.save(tmp_path / "large.jpg", quality=90)
    photo.save(tmp_path / "large.png")
    assert read_rgb_array(tmp_path / "large.jpg").shape == (1500, 2000, 3)
    reduced = read_rgb_array(tmp_path / "large.jpg", reduce_to=235)
    assert reduced.shape == (375, 500, 3)  # DCT scaling by 1/4; 1/8 would go below 235 px
    assert read_rgb_array(tmp_path / "large.png", reduce_to=235).shape == (1500, 2000, 3)  # only JPEG can
    cfg = compose_train("experiment=hymenoptera", "data.root=.", "model.weights=null", "model.backbone=resnet18",
                        "paths.run_dir=.")
    from visiontrain.image.task import input_spec_from

    assert input_spec_from(cfg).resize_to == 235  # floor(224 / 0.95), as timm; what training passes as reduce_to


def test_auto_workers_share_the_cores_between_the_training_processes_of_a_node():
    import os

    from visiontrain.image.datamodule import MAX_AUTO_WORKERS, auto_num_workers, processes_per_node

    cores = len(os.sched_getaffinity(0))
    assert auto_num_workers() == max(1, min(MAX_AUTO_WORKERS, cores - 1))
    assert auto_num_workers(processes=cores) == 1  # never zero: loading stays off the training loop
    assert processes_per_node({"accelerator": "gpu", "devices": 1}) == 1
    assert processes_per_node({"strategy": "ddp_find_unused_parameters_true", "devices": 4}) == 4
    assert processes_per_node({"strategy": "ddp", "devices": [0, 2]}) == 2
    assert processes_per_node({"strategy": "ddp", "devices": "auto", "accelerator": "gpu"}) == \
        (torch.cuda.device_count() if torch.cuda.is_available() else 1)
    ddp = compose_train("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "paths.run_dir=.")
    assert processes_per_node(ddp.trainer) == 2


def test_the_trainer_config_applies_channels_last_to_the_model_it_fits(tiny_hymenoptera, tmp_path):
    """`trainer.channels_last=true` reaches the model through build_trainer's Acceleration callback."""
    from visiontrain.training.hardware import Acceleration, build_trainer

    cfg = compose_train(*tiny_overrides(tiny_hymenoptera, tmp_path, "trainer.channels_last=true",
                                        "trainer.max_epochs=1", "schedule.freeze_epochs=0"))
    task = task_for_config(cfg)
    built = task.build(task.prepare(tmp_path, True), None)
    datamodule, module = built.datamodule, built.module
    trainer = build_trainer(cfg.trainer, logger=False, enable_checkpointing=False)
    assert [c for c in trainer.callbacks if isinstance(c, Acceleration)][0].channels_last
    trainer.fit(module, datamodule=datamodule)
    weight = _first_conv(module.model).weight
    assert module.channels_last and weight.is_contiguous(memory_format=torch.channels_last)
