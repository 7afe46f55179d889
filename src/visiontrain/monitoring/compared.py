"""What `visiontrain drift` (:mod:`visiontrain.commands.drift`) compares with the reference: the inputs of new data
(a table, an image folder or a serving log) and the exported model's outputs on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visiontrain.core.image_decode import PixelLimit
from visiontrain.core.names import IMAGE_TASK
from visiontrain.core.table_files import read_table
from visiontrain.core.table_values import ModelInputs
from visiontrain.inference.onnx_model import OnnxModel
from visiontrain.monitoring.current import image_inputs, prediction_log, prediction_outputs, table_inputs
from visiontrain.monitoring.reference import IMAGE_STATISTICS


def _table_outputs(model: OnnxModel, inputs: ModelInputs) -> dict[str, Any] | None:
    """Run the exported table model on the current rows: probability (or prediction) and predicted class."""
    if set(model.input_names) - set(inputs.values):
        return None  # a column the model takes is missing: compare() lists it, and nothing can be scored
    outputs = model.run(inputs.feeds())
    if "probability" in outputs:
        labels = model.class_names
        return {"confidence": outputs["probability"].astype(np.float64),
                "predicted_class": [labels[int(i)] for i in outputs["label"]]}
    return {"confidence": outputs["prediction"].astype(np.float64)}


def _image_outputs(model: OnnxModel, files: list[Path], limit: PixelLimit) -> dict[str, Any]:
    """Predicted class and confidence of each image, through the deploy side's preprocessing."""
    predictions = model.predict_images(files, limit=limit)
    return {"predicted_class": [p["top1"] for p in predictions],
            "confidence": np.array([p["top1_probability"] for p in predictions], dtype=np.float64)}


def _rejected_rows(inputs: ModelInputs, where: str, unit: str) -> list[tuple[str, str]]:
    """The rows left out of the comparison (1-based), each with its reason, as drift.json lists them."""
    return [(f"{where}: {unit} {position + 1}", reason) for position, reason in sorted(inputs.rejects.items())]


def _from_log(rows: list[dict[str, Any]], reference: dict[str, Any],
              where: str) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, str]]]:
    """A serving prediction log: inputs (raw columns, or image statistics), outputs, and unusable lines."""
    import pandas as pd

    frame = pd.DataFrame([row.get("input", row) for row in rows])
    rejected: list[tuple[str, str]] = []
    if reference["task"] == IMAGE_TASK:
        inputs = {name: frame[name].to_numpy(dtype=np.float64) for name in IMAGE_STATISTICS if name in frame}
    else:
        table = table_inputs(frame, reference["inputs"])
        inputs, rejected = table.values, _rejected_rows(table, where, "prediction")
    return inputs, prediction_outputs([row.get("output", row) for row in rows]), rejected


def current_data(current: Path, reference: dict[str, Any], model: OnnxModel | None, limit: PixelLimit
                 ) -> tuple[dict[str, Any], dict[str, Any] | None, list[tuple[str, str]], str]:
    """What `visiontrain drift` compares with ``reference``: the inputs of ``current`` (a serving log, an image
    folder or a table), the model's outputs on them (None without a model), the unusable rows or files with
    their reasons, and a description of what was read."""
    from visiontrain.errors import ConfigError

    rejected: list[tuple[str, str]] = []
    if current.suffix.lower() == ".jsonl":
        rows = prediction_log(current)
        inputs, outputs, rejected = _from_log(rows, reference, str(current))
        return inputs, outputs, rejected, f"{len(rows)} logged predictions in {current}"
    if reference["task"] == IMAGE_TASK:
        from visiontrain.core.image_preprocess import ImageSpec

        reduce_to = ImageSpec.from_metadata(model.metadata.as_dict()).resize_to if model else None
        inputs, files, rejected = image_inputs(current, pixel_limit=limit, reduce_to=reduce_to)
        outputs = _image_outputs(model, files, limit) if model else None
        return inputs, outputs, rejected, (f"{len(files)} images in {current} ({len(rejected)} not used, each "
                                           "listed with its reason)")
    frame = read_table(current)
    if frame.empty:
        raise ConfigError("current", f"{current} has no rows", "current=<a table file with rows>")
    table = table_inputs(frame, reference["inputs"])
    rejected = _rejected_rows(table, str(current), "row")
    outputs = _table_outputs(model, table) if model else None
    described = f"{len(frame)} rows of {current}" + (
        f" ({len(rejected)} not used, each listed with its reason)" if rejected else "")
    return table.values, outputs, rejected, described
