"""``visiontrain drift reference=<run dir | model.onnx> current=<table | image folder | predictions.jsonl>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visiontrain.config.reading import pixel_limit
from visiontrain.core.image_decode import PixelLimit
from visiontrain.core.names import IMAGE_TASK
from visiontrain.core.table_files import read_table
from visiontrain.core.table_values import ModelInputs
from visiontrain.inference.onnx_model import OnnxModel
from visiontrain.monitoring.current import image_inputs, prediction_log, prediction_outputs, table_inputs
from visiontrain.monitoring.drift import Thresholds, compare, load_reference, write_report
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


def drift(cfg: Any) -> dict[str, Any]:
    """Compare, report, and exit 1 when a threshold is crossed (0 when the data looks like the reference)."""
    from visiontrain.errors import ConfigError

    if not cfg.get("reference") or not cfg.get("current"):
        raise ConfigError("reference" if not cfg.get("reference") else "current", "is required",
                          "visiontrain drift reference=<run dir or model.onnx> current=<table, folder or .jsonl>")
    limit = pixel_limit(cfg.get("max_image_pixels"), "max_image_pixels")  # before anything is read
    try:
        reference, model = load_reference(str(cfg.reference))
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError("reference", str(error), "reference=outputs/<experiment>/runs/<time>") from None
    current = Path(str(cfg.current)).expanduser()
    if not current.exists():
        raise ConfigError("current", f"{current} does not exist", "current=<table file, image folder or .jsonl log>")
    thresholds = Thresholds(float(cfg.psi_threshold), float(cfg.ks_pvalue), float(cfg.ks_statistic))
    rejected: list[tuple[str, str]] = []
    if current.suffix.lower() == ".jsonl":
        rows = prediction_log(current)
        inputs, outputs, rejected = _from_log(rows, reference, str(current))
        described = f"{len(rows)} logged predictions in {current}"
    elif reference["task"] == IMAGE_TASK:
        from visiontrain.core.image_preprocess import ImageSpec

        reduce_to = ImageSpec.from_metadata(model.metadata.as_dict()).resize_to if model else None
        inputs, files, rejected = image_inputs(current, pixel_limit=limit, reduce_to=reduce_to)
        outputs = _image_outputs(model, files, limit) if model else None
        described = f"{len(files)} images in {current} ({len(rejected)} not used, each listed with its reason)"
    else:
        frame = read_table(current)
        if frame.empty:
            raise ConfigError("current", f"{current} has no rows", "current=<a table file with rows>")
        table = table_inputs(frame, reference["inputs"])
        inputs, rejected = table.values, _rejected_rows(table, str(current), "row")
        outputs = _table_outputs(model, table) if model else None
        described = f"{len(frame)} rows of {current}" + (
            f" ({len(rejected)} not used, each listed with its reason)" if rejected else "")
    result = compare(reference, inputs, outputs, thresholds)
    result.update(current=described, unreadable=rejected)
    out_dir = Path(str(cfg.output)).expanduser() if cfg.get("output") else Path(str(cfg.paths.run_dir))
    files = write_report(result, reference, inputs, outputs, out_dir)
    verdict = f"drift in {', '.join(result['drifted'])}" if result["drifted"] else "no drift"
    print(f"visiontrain drift: {verdict} ({described})\n  report: {files['report']}", flush=True)
    if result["drifted"]:
        raise SystemExit(int(cfg.get("exit_code_on_drift", 1)))
    return result
