"""What `trainer=gpu` promises, seen inside a real fit on a CUDA GPU: uint8 batches in pinned memory, normalised
on the device, bf16 autocast, channels_last convolutions, TF32 for what stays in fp32; torch.compile and DDP on
GPUs end to end. Skipped where there is no GPU; `scripts/device_check.sh` runs them on a lent one."""

from __future__ import annotations

import json
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from conftest import compose_train, run_cli, tiny_overrides
from visiontrain.registry import task_for_config
from visiontrain.training.hardware import build_trainer

pytestmark = pytest.mark.gpu


class FirstConvProbe(pl.Callback):
    """Records what reaches the first convolution during training, and the TF32 switches while fitting."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}
        self._handle = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        conv = next(m for m in pl_module.model.modules() if isinstance(m, torch.nn.Conv2d))

        def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if module.training and "output_dtype" not in self.seen:
                self.seen.update(input_device=inputs[0].device.type, input_dtype=inputs[0].dtype,
                                 output_dtype=output.dtype,
                                 channels_last=output.is_contiguous(memory_format=torch.channels_last))

        self._handle = conv.register_forward_hook(record)
        self.seen.update(tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                         tf32_cudnn=torch.backends.cudnn.allow_tf32)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._handle.remove()


def fit_with_probe(data_root, run_dir, *overrides: str) -> tuple[dict[str, Any], Any]:
    """One epoch of a real fit with ``overrides``; what the probe saw and the datamodule that fed it."""
    cfg = compose_train(*tiny_overrides(data_root, run_dir, "trainer.max_epochs=1", "schedule.freeze_epochs=0",
                                        *overrides))
    task = task_for_config(cfg)
    built = task.build(task.prepare(run_dir, True), None)
    datamodule, module = built.datamodule, built.module
    probe = FirstConvProbe()
    trainer = build_trainer(cfg.trainer, callbacks=[probe], logger=False, enable_checkpointing=False)
    trainer.fit(module, datamodule=datamodule)
    return probe.seen, datamodule


def test_a_gpu_fit_feeds_pinned_uint8_and_runs_bf16_channels_last_with_tf32(tiny_hymenoptera, tmp_path):
    seen, datamodule = fit_with_probe(tiny_hymenoptera, tmp_path, "trainer=gpu")
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.dtype == torch.uint8 and images.is_pinned(), "the loader hands pinned uint8 batches over"
    assert seen["input_device"] == "cuda" and seen["input_dtype"] == torch.float32, "normalised on the GPU"
    assert seen["output_dtype"] == torch.bfloat16, "bf16-mixed autocasts the convolutions"
    assert seen["channels_last"], "the convolutions run in NHWC"
    assert seen["tf32_matmul"] and seen["tf32_cudnn"], "TF32 is on for what stays in fp32"


def test_a_compiled_gpu_run_trains_and_exports_a_matching_onnx(tiny_hymenoptera, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides(tiny_hymenoptera, run_dir) if not o.startswith("paths.")]
    result = run_cli("train", *overrides, "trainer=gpu", "trainer.compile=true", "trainer.max_epochs=2",
                     "schedule.freeze_epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["export"]["parity"]["passed"], summary["export"]["parity"]


@pytest.mark.ddp
@pytest.mark.parametrize("gpus", [1, 2])
def test_ddp_on_gpus_runs_the_schedule_and_exports(gpus, tiny_hymenoptera, tmp_path):
    """NCCL, DistributedDataParallel and the frozen stage's unused parameters; on one GPU a world of one."""
    if torch.cuda.device_count() < gpus:
        pytest.skip(f"needs {gpus} CUDA GPUs")
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides(tiny_hymenoptera, run_dir) if not o.startswith("paths.")]
    result = run_cli("train", *overrides, "trainer=ddp", f"trainer.devices={gpus}", "trainer.max_epochs=2",
                     "schedule.freeze_epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    logs = "".join(path.read_text() for path in sorted(run_dir.glob("*.log")))  # Lightning's info lines: logs only
    output = result.stdout + result.stderr + logs
    assert result.returncode == 0, output[-5000:]
    assert f"MEMBER: {gpus}/{gpus}" in output, "every process must have joined the process group"
    assert json.loads((run_dir / "summary.json").read_text())["export"]["parity"]["passed"]
