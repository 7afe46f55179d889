"""What the steps of a run return, named: an evaluation, an export with its parity check, a fit, the run's summary.

Both tasks build these and the runner and the checkpoint commands read them, so no caller learns a dict's keys
by convention. :class:`RunSummary` is ``summary.json``: its JSON Schema is published in
``docs/reference/summary.schema.json`` (``python scripts/gen_summary_schema.py`` writes it).

A result written to a file keeps that file's bytes: :meth:`Result.as_dict` gives the keys that were set, in the
order they were given, so optional task-specific keys (a table's ``rows``, an image model's ``int8`` copy) appear
only where a task sets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_serializer, model_validator

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from visiontrain.training.task import BuiltModel

Number = int | float  # an int stays an int in the file (a float field would write 3 as 3.0)


class Result(BaseModel):
    """A named result: frozen, no keys but its fields, dumped with the keys it was given in their order."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True,
                              use_attribute_docstrings=True)  # a field's docstring: its schema description
    _key_order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_key_order(cls, data: Any, handler: Any) -> Any:
        result = handler(data)
        if isinstance(data, dict):
            result._key_order = tuple(data)
        return result

    @model_serializer(mode="wrap")
    def _in_key_order(self, handler: Any) -> Any:
        dumped = handler(self)
        if not isinstance(dumped, dict) or not self._key_order:
            return dumped
        return {**{k: dumped[k] for k in self._key_order if k in dumped}, **dumped}

    def as_dict(self) -> dict[str, Any]:
        """The keys that were set, as written to a file."""
        return self.model_dump(exclude_unset=True)


# ----- evaluation ------------------------------------------------------------------------------------------
class SplitEvaluation(Result):
    """One split scored with the best checkpoint: its metrics and the files written for it."""

    split: str
    """``val`` or ``test``."""
    rows: int | None = None
    """Tables: the split's row count."""
    metrics: dict[str, float]
    """``<split>/<metric>``: its value."""
    per_class: list[dict[str, Any]] | None = None
    """Precision, recall, F1 and support of each class."""
    files: dict[str, str] | None = None
    """The files written for the split: confusion matrix (csv, png), per-class csv; tables' ROC and PR curves."""
    confusion_matrix: list[list[int]] | None = None
    """Rows: the true class; columns: the predicted class."""
    threshold: float | None = None
    """Binary tables: the decision threshold."""
    feature_importance: dict[str, Any] | None = None
    """Tables, the final model's ``val`` split: permutation importance of each raw column, and its csv."""
    timings_seconds: dict[str, Number] | None = None
    """Steps timed inside the evaluation (feature importance)."""


class Evaluation(Result):
    """Every split the best checkpoint was scored on: ``val``, and ``test`` where the data holds one out."""

    val: SplitEvaluation
    test: SplitEvaluation | None = None

    def split(self, name: str) -> SplitEvaluation | None:
        """The evaluation of split ``name``; None where the run held none out."""
        return getattr(self, name) if name in type(self).model_fields else None


# ----- export ----------------------------------------------------------------------------------------------
class Parity(Result):
    """onnxruntime against PyTorch on the same inputs: images (logits, top-1) or held-out rows (scores, labels)."""

    images: int | None = None
    """Images: how many were compared."""
    rows: int | None = None
    """Tables: how many held-out rows were compared."""
    source: str
    """Where the inputs came from: validation images, random inputs, held-out test rows."""
    max_abs_logit_diff: float | None = None
    """Images: the largest absolute difference of a logit."""
    max_abs_diff: float | None = None
    """Tables: of a probability, or of a prediction relative to the target's scale."""
    top1_agreement: float | None = None
    """Images: the share of inputs whose top-1 class is the same."""
    top1_identical: bool | None = None
    """Images: every top-1 class is the same."""
    atol: float
    """The tolerance the difference must stay within."""
    labels_identical: bool | None = None
    """Classification tables: every label at the threshold is the same."""
    passed: bool
    """The difference within ``atol`` and the same classes or labels."""
    mismatched_images: list[str] | None = None
    """Images: the paths whose top-1 class differs."""


class ExportResult(Result):
    """The ONNX file, its parity check, how long it took; the metadata inside it; an int8 copy where asked."""

    onnx: str
    """The ONNX file."""
    parity: Parity
    metadata: dict[str, Any] | None = None
    """The metadata inside the ONNX file (left out of summary.json, which has its facts already)."""
    int8: dict[str, Any] | None = None
    """Images with ``export.quantize=int8``: the int8 copy, its calibration and its agreement with the float file."""
    seconds: float
    """The export and its parity check."""

    def without_metadata(self) -> ExportResult:
        """As summary.json records it: the metadata is in the ONNX file already."""
        return ExportResult(**{k: v for k, v in self.as_dict().items() if k != "metadata"})


# ----- a fit and the run -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FitResult:
    """One fit of a fresh model: its trainer and model, its checkpoints, its epochs and its evaluation."""

    trainer: pl.Trainer
    built: BuiltModel
    best: str | None              # the best checkpoint (the last where none was monitored)
    last: str | None
    epochs: list[dict[str, Any]]  # history.csv's rows, before evaluation restores the best checkpoint
    evaluation: Evaluation
    fit_seconds: float
    evaluate_seconds: float


class FoldResult(Result):
    """One cross-validation fold: its rows, and its model's scores on its held-out part."""

    fold: str
    """``fold1`` .. ``foldK``."""
    rows: dict[str, int]
    """Rows of ``train``, ``val`` and ``test``."""
    metrics: dict[str, float]
    """The fold's held-out test metrics, without the ``test/`` prefix."""
    fit_seconds: float


class CrossValidation(Result):
    """``cross_validation.json``: a fresh model per fold, scored on its held-out part."""

    folds: int
    per_fold: list[FoldResult]
    mean: dict[str, float]
    """Each metric's mean over the folds."""
    std: dict[str, float]
    """Each metric's standard deviation over the folds (0 for one fold)."""
    fit_seconds_total: float


class Monitor(Result):
    """The metric that picks the best checkpoint."""

    metric: str
    """e.g. ``val/acc``."""
    mode: str
    """``min`` or ``max``."""
    best: float | None
    """Its value on the validation split with the best checkpoint."""


class Checkpoints(Result):
    """The best checkpoint by the monitored metric and the latest finished epoch's (one file when the same)."""

    best: str | None
    last: str | None


class RunSummary(Result):
    """``summary.json``: the run's record for people and programs (see docs/run-outputs.md)."""

    task: str
    """The task type: ``image_classification`` or ``tabular``."""
    experiment: str
    """The run's name (``task_name``)."""
    run_dir: str
    monitor: Monitor
    evaluation: Evaluation
    cross_validation: CrossValidation | None
    """With ``cv.folds``: the folds' scores, their mean and std (also in cross_validation.json); otherwise null."""
    classes: list[str] | None
    """The class names; null for a regression."""
    data: dict[str, Any]
    """The data step's counts (in, used, rejected; per class and split), warnings and files; task-specific."""
    input_spec: dict[str, Any] | None = None
    """Images: the model's input (size, mean, std, resize, interpolation)."""
    model: dict[str, Any] | None = None
    """Tables: the model's kind and name, its raw and encoded feature counts."""
    parameters: dict[str, int] | None = None
    """Parameter counts: total, trainable, frozen."""
    weights: dict[str, Any] | None = None
    """Images: where the weights came from and what loaded."""
    checkpoints: Checkpoints
    epochs_trained: int
    history: list[dict[str, Any]]
    """Each epoch's row of history.csv."""
    export: ExportResult | None
    """The ONNX file and its parity check; null without export."""
    timings_seconds: dict[str, Number]
    """Seconds of each step: data, cross_validation, fit, evaluate, export, (feature_importance), total."""
    files: dict[str, str | None]
    """The path of every file the run wrote, by name; null where it wrote none."""
    versions: dict[str, str | None]
    """Versions of Python and the libraries that decide whether a result can be reproduced."""


__all__ = ["Checkpoints", "CrossValidation", "Evaluation", "ExportResult", "FitResult", "FoldResult", "Monitor",
           "Parity", "Result", "RunSummary", "SplitEvaluation"]
