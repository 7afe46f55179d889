"""Summaries of the incoming data, computed exactly as the reference was: tables, image folders, prediction logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visiontrain.core.files import IMAGE_SUFFIXES, list_images
from visiontrain.core.image_decode import PixelLimit, decode
from visiontrain.core.image_statistics import IMAGE_STATISTICS, image_statistics
from visiontrain.core.table_values import ModelInputs, is_yes_no_column, model_inputs
from visiontrain.errors import ImageRejected


def table_inputs(frame: pd.DataFrame, reference_inputs: dict[str, Any]) -> ModelInputs:
    """The reference's columns of ``frame`` as the model takes them, by the rules predict and serve apply.

    Numbers parsed (blank -> NaN), categories stripped text (yes/no words as Yes/No where training normalised
    them); a row holding a value that is no usable number (``abc``, ``inf``) is left out of every column and
    listed in ``rejects``, as ``predict`` would reject it. Columns the frame lacks are left out.
    """
    present = {name: spec for name, spec in reference_inputs.items() if name in frame.columns}
    yes_no = [name for name, spec in present.items()
              if spec["kind"] != "numeric" and is_yes_no_column(spec.get("proportions", {}))]
    return model_inputs({name: frame[name].tolist() for name in present}, len(frame),
                        {name: spec["kind"] for name, spec in present.items()}, yes_no)


def image_inputs(folder: Path, limit: int | None = None, *, pixel_limit: PixelLimit = PixelLimit(),
                 reduce_to: int | None = None) -> tuple[dict[str, Any], list[Path], list[tuple[str, str]]]:
    """Input statistics of every readable image under ``folder``; unreadable files are listed, not fatal.

    Decoded as the reference was (:meth:`visiontrain.image.task.ImageTask.reference_stats`) and as serve and
    stream decode: JPEGs at reduced DCT scale when ``reduce_to`` (the model's resize size) allows. An image over
    ``pixel_limit`` is listed from its header, undecoded.
    """
    files, skipped = list_images(Path(folder), IMAGE_SUFFIXES)
    rows, used = [], []
    rejected = [(str(path), reason) for path, reason in skipped]
    for path in files[:limit] if limit else files:
        try:
            rows.append(image_statistics(decode(path, reduce_to, limit=pixel_limit)))
            used.append(path)
        except ImageRejected as error:  # the reason, as training's rejects.csv words it
            rejected.append((str(path), str(error)))
    inputs = {name: np.array([row[name] for row in rows]) for name in IMAGE_STATISTICS}
    return inputs, used, rejected


CONFIDENCE_FIELDS = ("confidence", "probability", "prediction", "top1_probability")  # the first one present
CLASS_FIELDS = ("predicted_class", "label", "top1")


def prediction_outputs(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The outputs drift compares (``confidence``, ``predicted_class``) of predictions as serve answers or logs
    them: tables' probability (or prediction) and label, images' top1 and its probability."""
    frame = pd.DataFrame(records)
    outputs: dict[str, Any] = {}
    for name in CONFIDENCE_FIELDS:
        if name in frame:
            outputs["confidence"] = frame[name].to_numpy(dtype=np.float64)
            break
    for name in CLASS_FIELDS:
        if name in frame:
            outputs["predicted_class"] = frame[name].astype(str).tolist()
            break
    return outputs


SHADOW_ROLE = "shadow"  # a log line of a copy a candidate scored in the shadow of production: never answered


def prediction_log(path: Path) -> list[dict[str, Any]]:
    """The JSON lines ``visiontrain serve log_predictions=...`` wrote, less the shadow lines (their inputs are
    production's, already logged once; their outputs were never returned)."""
    lines = (json.loads(line) for line in Path(path).read_text().splitlines() if line.strip())
    return [line for line in lines if line.get("role") != SHADOW_ROLE]
