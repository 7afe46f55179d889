"""The contract between the runner (and the checkpoint commands) and a task: what a task must provide.

A task turns a config into prepared data, a model per split, an evaluation, an ONNX file with its parity check,
reference statistics for drift, and the lines of the end-of-run report. The runner calls these and nothing else,
so it never needs to know which task it runs. Everything a step builds is returned, never left on the task:
``prepare`` returns :class:`PreparedData`, ``build`` returns :class:`BuiltModel`, and later steps take them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from visiontrain.training.results import Evaluation, ExportResult

if TYPE_CHECKING:  # the contract itself imports no training library
    import lightning.pytorch as pl
    import numpy as np
    from omegaconf import DictConfig


@dataclass(frozen=True)
class Split:
    """One fit's rows: train fits, val stops early and picks the best checkpoint, test is scored once."""

    name: str                 # "final" or "fold1".."foldK"
    train: np.ndarray         # positions into the cleaned table
    val: np.ndarray
    test: np.ndarray


@dataclass(frozen=True, kw_only=True)
class PreparedData:
    """What ``prepare`` found, checked once: the report's data section and the splits to fit.

    ``final_split`` is None where the data brings its own train/val (image folders); ``folds`` is empty unless
    cross-validation is on. Tasks subclass it to carry their own data (the inventory, the cleaned table).
    """

    summary: dict[str, Any]
    final_split: Split | None = None
    folds: list[Split] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class BuiltModel:
    """A fresh model and the data it fits on, for one split.

    ``trainer_overrides`` are Trainer arguments the model needs (a scikit-learn baseline fits in one epoch);
    ``has_learning_rate`` is False for a model without an optimizer, whose rate there is nothing to monitor.
    Tasks subclass it to carry what they decided while building (the input size, the weight source).
    """

    datamodule: pl.LightningDataModule
    module: pl.LightningModule
    trainer_overrides: dict[str, Any] = field(default_factory=dict)
    has_learning_rate: bool = True


class Task(Protocol):
    """One kind of model the runner trains: image classification or tabular prediction.

    ``name`` is the task type; it is decided once, by :func:`visiontrain.registry.task_class`, and recorded in every
    checkpoint (:func:`visiontrain.registry.task_name_of`) and in the ONNX metadata.
    """

    name: ClassVar[str]
    curve_metric: str    # the metric plotted next to the loss in curves.png
    report_split: str    # the split whose confusion matrix the report points at

    def __init__(self, cfg: DictConfig, settings: Any) -> None:
        """``cfg`` for what Hydra instantiates; ``settings``, the same config parsed by its pydantic model."""

    def prepare(self, run_dir: Path, is_main_process: bool) -> PreparedData:
        """Read and check the data once; write its rejects and report files into ``run_dir``."""

    def build(self, data: PreparedData, split: Split | None) -> BuiltModel:
        """A fresh model and datamodule for ``split`` (None: the data's own split)."""

    def evaluate(self, trainer: pl.Trainer, data: PreparedData, built: BuiltModel, ckpt_path: str | None,
                 out_dir: Path) -> Evaluation:
        """Score ``ckpt_path`` on each evaluation split: its metrics and the files written for it."""

    def export(self, data: PreparedData, built: BuiltModel, ckpt_path: str, run_dir: Path,
               metric: dict[str, Any], extra_metadata: dict[str, Any]) -> ExportResult:
        """The checkpoint as ONNX in ``run_dir``, checked against PyTorch (its parity), with the time it took."""

    def reference_stats(self, data: PreparedData, built: BuiltModel) -> dict[str, Any]:
        """Input and output distributions of the training data, which `visiontrain drift` compares against."""

    def sample_predictions(self, data: PreparedData, built: BuiltModel) -> list[dict[str, Any]]:
        """A few held-out examples with true and predicted labels, for the experiment tracker."""

    def info(self, data: PreparedData, built: BuiltModel) -> dict[str, Any]:
        """Facts about the model for summary.json (parameters, weights, input size)."""

    def describe_data(self, data: dict[str, Any]) -> str:
        """One line on ``PreparedData.summary``: counts in, used and rejected, and where the rejects are listed."""

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        """The task's lines of the end-of-run report: data, weights, held-out scores, export parity."""

    @classmethod
    def evaluate_checkpoint(cls, cfg: DictConfig, ckpt: Path, checkpoint: dict[str, Any],
                            run_dir: Path) -> float | None:
        """`visiontrain evaluate`: score a finished checkpoint on its own split (or ``data_root``)."""

    @classmethod
    def export_checkpoint(cls, cfg: DictConfig, ckpt: Path, checkpoint: dict[str, Any], output: Path,
                          run_dir: Path) -> ExportResult:
        """`visiontrain export`: a finished checkpoint as ONNX, checked on its own held-out data."""
