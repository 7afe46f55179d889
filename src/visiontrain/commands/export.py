"""`visiontrain export`: a checkpoint to ONNX, checked with onnxruntime against PyTorch on its own held-out data."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from visiontrain.commands.checkpoint_input import checkpoint_from
from visiontrain.commands.validation import validate_export_config
from visiontrain.registry import task_class, task_name_of


def export(cfg: DictConfig) -> dict:
    """Export a checkpoint to ONNX and check it with onnxruntime on the checkpoint's own held-out data.

    Exits with code 3 when onnxruntime and PyTorch disagree beyond the tolerance.
    """
    validate_export_config(cfg)
    ckpt, checkpoint = checkpoint_from(cfg)
    run_dir = Path(cfg.paths.run_dir)
    output = Path(str(cfg.output)).expanduser() if cfg.get("output") else run_dir / "model.onnx"
    task = task_class(task_name_of(checkpoint, ckpt))
    result = task.export_checkpoint(cfg, ckpt, checkpoint, output, run_dir)
    if not result["parity"]["passed"]:
        raise SystemExit(3)
    return result
