"""What an exported ONNX file says about itself: the task it solves, how to feed it, how to read its outputs.

Export writes it into the file's ``metadata_props`` (text as it is, every other value as JSON); ``predict``,
``serve`` and ``drift`` read it back with onnxruntime alone. One typed class for both sides, so a field cannot
be written under one name and read under another, and the task is decided once, here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from visiontrain.core.names import IMAGE_TASK
from visiontrain.core.providers import CPU_ONLY
from visiontrain.errors import MetadataError

Task = Literal["image_classification", "tabular_classification", "tabular_regression"]
METADATA_TASKS: tuple[str, ...] = get_args(Task)
PIXEL_SCALE = "RGB uint8 / 255, then (x - mean) / std, NCHW float32"
MISSING_VALUES = "numbers: NaN; categories: empty string"
# the properties each task writes, in the order they are written (``None`` is written too, as ``null``)
IMAGE_PROPERTIES = ("task", "class_names", "input_name", "input_size", "mean", "std", "resize_to", "crop",
                    "interpolation", "pixel_scale", "backbone", "source_checkpoint", "metric", "weights_averaged",
                    "visiontrain_version")
TABLE_PROPERTIES = ("task", "input_columns", "column_order", "target", "positive_label", "class_names",
                    "threshold", "threshold_metric", "outputs", "missing_values", "model", "estimator",
                    "source_checkpoint", "metric")
OPTIONAL_PROPERTIES = ("reference_stats", "quantization")  # written after the others, when set
TEXT_FIELDS = ("task", "input_name", "crop", "interpolation", "pixel_scale", "backbone", "source_checkpoint",
               "visiontrain_version", "target", "positive_label", "threshold_metric", "missing_values", "model",
               "estimator")  # stored as the text itself, not as JSON


@dataclass(frozen=True)
class ModelMetadata:
    """The metadata of one exported model; image fields stay None for tables and table fields for images."""

    task: Task
    class_names: list[str] = field(default_factory=list)
    source_checkpoint: str | None = None
    metric: dict[str, Any] = field(default_factory=dict)
    # image classifiers: the eval preprocessing (resize the shorter side, centre crop, normalise)
    input_name: str | None = None
    input_size: list[int] | None = None  # [channels, height, width]
    mean: list[float] | None = None
    std: list[float] | None = None
    resize_to: int | None = None
    crop: str | None = None
    interpolation: str | None = None
    pixel_scale: str | None = None
    backbone: str | None = None
    weights_averaged: bool | None = None
    visiontrain_version: str | None = None
    # table models: one [N, 1] input per raw column
    input_columns: dict[str, str] | None = None  # name -> "float" | "string"
    column_order: list[str] | None = None
    target: str | None = None
    positive_label: str | None = None
    threshold: float | None = None
    threshold_metric: str | None = None
    outputs: list[str] | None = None
    missing_values: str | None = None
    model: str | None = None  # "mlp" | "estimator"
    estimator: str | None = None
    # both
    reference_stats: dict[str, Any] | None = None  # for `visiontrain drift`
    quantization: dict[str, Any] | None = None  # set in an int8 copy
    extra: dict[str, Any] = field(default_factory=dict)  # properties this version does not know: kept as read

    def __post_init__(self) -> None:
        if self.task not in METADATA_TASKS:
            raise MetadataError(f"unknown task {self.task!r}: a visiontrain model is one of {', '.join(METADATA_TASKS)}; "
                                "re-export it with `visiontrain export`")
        check_interpolation(self.interpolation)

    @property
    def is_image(self) -> bool:
        return self.task == IMAGE_TASK

    @property
    def is_regression(self) -> bool:
        return self.task == "tabular_regression"

    def as_dict(self) -> dict[str, Any]:
        """The values by property name, as export has always described the file (JSON values decoded)."""
        names = IMAGE_PROPERTIES if self.is_image else TABLE_PROPERTIES
        values = {name: getattr(self, name) for name in names}
        values.update({name: getattr(self, name) for name in OPTIONAL_PROPERTIES
                       if getattr(self, name) is not None})
        return {**values, **self.extra}

    def to_properties(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` mapping: text fields as they are, every other value as JSON."""
        return {name: value if isinstance(value, str) else json.dumps(value)
                for name, value in self.as_dict().items()}

    @classmethod
    def from_properties(cls, properties: dict[str, str], input_names: list[str] | None = None,
                        output_names: list[str] | None = None) -> ModelMetadata:
        """Read ``metadata_props``; a file without ``task`` (older exports) is told by its inputs and outputs."""
        known = {item.name for item in fields(cls)} - {"extra"}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, text in properties.items():
            if name in known:
                values[name] = _decoded(name, text)
            else:
                extra[name] = json_or_text(text)
        if not values.get("task"):
            values["task"] = _task_from_graph(input_names or [], output_names or [])
        if values.get("class_names") is None:
            values["class_names"] = []
        values["class_names"] = [str(name) for name in values["class_names"]]
        values["metric"] = values.get("metric") or {}
        return cls(**values, extra=extra)

    @classmethod
    def read(cls, source: Any) -> ModelMetadata:
        """The metadata of an onnxruntime session, or of the file at a path (opening one session for it)."""
        if isinstance(source, (str, Path)):
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            source = ort.InferenceSession(str(source), options, providers=list(CPU_ONLY))  # reading needs no GPU
        return cls.from_properties(dict(source.get_modelmeta().custom_metadata_map),
                                   [node.name for node in source.get_inputs()],
                                   [node.name for node in source.get_outputs()])


def check_interpolation(interpolation: Any) -> None:
    """An interpolation the deploy side can resize with (None: not recorded, an older export's bilinear).

    Read as something else, the inputs would be resized unlike training's and every score would shift a little.
    """
    if interpolation is None:
        return
    from visiontrain.core.image_preprocess import INTERPOLATIONS  # OpenCV's flags: only for an image model

    if interpolation not in INTERPOLATIONS:
        raise MetadataError(f"the metadata field 'interpolation' is {interpolation!r}, not one of "
                            f"{', '.join(INTERPOLATIONS)}: re-export the model with `visiontrain export`")


def _decoded(name: str, text: str) -> Any:
    """A known property: text fields as stored (``null``: not set), the others from JSON."""
    if name in TEXT_FIELDS:
        return None if text == "null" else text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise MetadataError(f"the metadata field {name!r} is not valid JSON ({text[:60]!r}): the file was not "
                            "written by `visiontrain export`, or was edited; re-export it") from None


def json_or_text(text: str) -> Any:
    """A property of unknown meaning: its JSON value, or the text itself when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _task_from_graph(inputs: list[str], outputs: list[str]) -> str:
    """Files exported before the ``task`` field: an ``image`` input is a classifier, else a table model."""
    if inputs == ["image"]:
        return IMAGE_TASK
    if "image" not in inputs and inputs:
        return "tabular_regression" if "prediction" in outputs and "probability" not in outputs \
            else "tabular_classification"
    raise MetadataError("the file has no `task` metadata and its inputs do not say what it is: re-export it with "
                        "`visiontrain export`")
