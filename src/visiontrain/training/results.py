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
from typing import TYPE_CHECKING, Any, Optional, Union

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_serializer, model_validator

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from visiontrain.training.task import BuiltModel

Number = Union[int, float]  # an int stays an int in the file (a float field would write 3 as 3.0)


class Result(BaseModel):
    """A named result: frozen, no keys but its fields, dumped with the keys it was given in their order."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
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
    rows: Optional[int] = None                    # tables: the split's row count
    metrics: dict[str, float]                     # ``<split>/<name>``: value
    per_class: Optional[list[dict[str, Any]]] = None
    files: Optional[dict[str, str]] = None        # confusion matrix (csv, png), per-class csv, ROC and PR curves
    confusion_matrix: Optional[list[list[int]]] = None
    threshold: Optional[float] = None             # binary tables: the decision threshold
    feature_importance: Optional[dict[str, Any]] = None  # tables, the final model's val split
    timings_seconds: Optional[dict[str, Number]] = None  # steps timed inside the evaluation


class Evaluation(Result):
    """Every split the best checkpoint was scored on: ``val``, and ``test`` where the data holds one out."""

    val: SplitEvaluation
    test: Optional[SplitEvaluation] = None

    def split(self, name: str) -> SplitEvaluation | None:
        """The evaluation of split ``name``; None where the run held none out."""
        return getattr(self, name) if name in type(self).model_fields else None


# ----- export ----------------------------------------------------------------------------------------------
class Parity(Result):
    """onnxruntime against PyTorch on the same inputs: images (logits, top-1) or held-out rows (scores, labels)."""

    images: Optional[int] = None
    rows: Optional[int] = None
    source: str                                   # "validation images", "random inputs", "held-out test rows"
    max_abs_logit_diff: Optional[float] = None
    max_abs_diff: Optional[float] = None          # tables: probability, or prediction relative to the target's scale
    top1_agreement: Optional[float] = None
    top1_identical: Optional[bool] = None
    atol: float
    labels_identical: Optional[bool] = None
    passed: bool
    mismatched_images: Optional[list[str]] = None


class ExportResult(Result):
    """The ONNX file, its parity check, how long it took; the metadata inside it; an int8 copy where asked."""

    onnx: str
    parity: Parity
    metadata: Optional[dict[str, Any]] = None
    int8: Optional[dict[str, Any]] = None
    seconds: float

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
    fold: str
    rows: dict[str, int]          # train, val, test
    metrics: dict[str, float]     # the fold's held-out test metrics, without the ``test/`` prefix
    fit_seconds: float


class CrossValidation(Result):
    """``cross_validation.json``: a fresh model per fold, scored on its held-out part."""

    folds: int
    per_fold: list[FoldResult]
    mean: dict[str, float]
    std: dict[str, float]
    fit_seconds_total: float


class Monitor(Result):
    metric: str
    mode: str                     # min or max
    best: Optional[float]


class Checkpoints(Result):
    best: Optional[str]
    last: Optional[str]


class RunSummary(Result):
    """``summary.json``: the run's record for people and programs (see docs/run-outputs.md)."""

    task: str
    experiment: str
    run_dir: str
    monitor: Monitor
    evaluation: Evaluation
    cross_validation: Optional[CrossValidation]
    classes: Optional[list[str]]
    data: dict[str, Any]          # the data step's counts, warnings and files (task-specific)
    # the task's facts (Task.info): images input_spec, parameters, weights; tables model, parameters
    input_spec: Optional[dict[str, Any]] = None
    model: Optional[dict[str, Any]] = None
    parameters: Optional[dict[str, int]] = None
    weights: Optional[dict[str, Any]] = None
    checkpoints: Checkpoints
    epochs_trained: int
    history: list[dict[str, Any]]
    export: Optional[ExportResult]
    timings_seconds: dict[str, Number]
    files: dict[str, Optional[str]]
    versions: dict[str, Optional[str]]


__all__ = ["Checkpoints", "CrossValidation", "Evaluation", "ExportResult", "FitResult", "FoldResult", "Monitor",
           "Parity", "Result", "RunSummary", "SplitEvaluation"]
