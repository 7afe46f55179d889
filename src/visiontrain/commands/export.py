"""`visiontrain export`: a checkpoint to ONNX, checked with onnxruntime against PyTorch on its own held-out data."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from visiontrain.commands.checkpoint_input import checkpoint_from
from visiontrain.commands.validation import validate_export_config
from visiontrain.config.commands import ExportOptions
from visiontrain.registry import task_class, task_name_of


def export(cfg: DictConfig, options: ExportOptions | None = None) -> dict:
    """Export a checkpoint to ONNX and check it with onnxruntime on the checkpoint's own held-out data.

    Exits with code 3 when onnxruntime and PyTorch disagree beyond the tolerance. ``options``: the CLI's parse of
    ``cfg`` (parsed here when not given); ``cfg`` itself goes to the task, which instantiates from it.
    """
    options = validate_export_config(cfg, options)
    ckpt, checkpoint = checkpoint_from(options.ckpt)
    run_dir = Path(cfg.paths.run_dir)
    output = Path(options.output).expanduser() if options.output else run_dir / "model.onnx"
    task = task_class(task_name_of(checkpoint, ckpt))
    result = task.export_checkpoint(cfg, ckpt, checkpoint, output, run_dir)
    if not result["parity"]["passed"]:
        raise SystemExit(3)
    return result
