"""`visiontrain export`: a checkpoint to ONNX, checked with onnxruntime against PyTorch on its own held-out data."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from visiontrain.commands.checkpoint_input import checkpoint_from
from visiontrain.commands.validation import validate_export_config
from visiontrain.config.commands import ExportOptions
from visiontrain.errors import ExportMismatch
from visiontrain.registry import task_class, task_name_of
from visiontrain.training.results import ExportResult


def export(cfg: DictConfig, options: ExportOptions | None = None) -> ExportResult:
    """Export a checkpoint to ONNX and check it with onnxruntime on the checkpoint's own held-out data.

    Raises :class:`~visiontrain.errors.ExportMismatch` (exit code 3) when onnxruntime and PyTorch disagree beyond
    the tolerance; the file stays, for a look at what differs. ``options``: the CLI's parse of ``cfg`` (parsed here
    when not given); ``cfg`` itself goes to the task, which instantiates from it.
    """
    options = validate_export_config(cfg, options)
    ckpt, checkpoint = checkpoint_from(options.ckpt)
    run_dir = Path(cfg.paths.run_dir)
    output = Path(options.output).expanduser() if options.output else run_dir / "model.onnx"
    task = task_class(task_name_of(checkpoint, ckpt))
    result = task.export_checkpoint(cfg, ckpt, checkpoint, output, run_dir)
    if not result.parity.passed:
        raise ExportMismatch(f"onnxruntime and PyTorch disagree on {result.onnx} beyond atol={result.parity.atol:g} "
                             f"(the parity check is in {run_dir / 'export.json'}): try another opset=, or a larger "
                             "atol= if the difference is harmless")
    return result
