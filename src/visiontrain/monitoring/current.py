"""Summaries of the incoming data, computed exactly as the reference was: tables, image folders, prediction logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visiontrain.core.files import IMAGE_SUFFIXES, list_images
from visiontrain.core.image_decode import ImageRejected, decode
from visiontrain.core.image_statistics import IMAGE_STATISTICS, image_statistics
from visiontrain.tabular.cleansing import YES_NO_WORDS


def table_inputs(frame: pd.DataFrame, reference_inputs: dict[str, Any]) -> dict[str, Any]:
    """Raw columns as the model saw them in training: numbers coerced (blank -> NaN), categories stripped text."""
    values: dict[str, Any] = {}
    for name, spec in reference_inputs.items():
        if name not in frame.columns:
            continue
        column = frame[name]
        if spec["kind"] == "numeric":
            text = column.astype(str).str.strip()
            values[name] = pd.to_numeric(text.where(text != "", None), errors="coerce").to_numpy(dtype=np.float64)
        else:
            text = [("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
                    for v in column.tolist()]
            if set(spec["proportions"]) <= {"No", "Yes", ""}:  # normalised yes/no in training: 0/1, yes, TRUE...
                text = [YES_NO_WORDS.get(v.lower(), v) for v in text]
            values[name] = text
    return values


def image_inputs(folder: Path, limit: int | None = None) -> tuple[dict[str, Any], list[Path], list[tuple[str, str]]]:
    """Input statistics of every readable image under ``folder``; unreadable files are listed, not fatal.

    Decoded at full size, as the reference was (:meth:`visiontrain.tasks.image.ImageTask.reference_stats`).
    """
    files, skipped = list_images(Path(folder), IMAGE_SUFFIXES)
    rows, used = [], []
    rejected = [(str(path), reason) for path, reason in skipped]
    for path in files[:limit] if limit else files:
        try:
            rows.append(image_statistics(decode(path)))
            used.append(path)
        except ImageRejected as error:  # the reason, as training's rejects.csv words it
            rejected.append((str(path), str(error)))
    inputs = {name: np.array([row[name] for row in rows]) for name in IMAGE_STATISTICS}
    return inputs, used, rejected


def prediction_log(path: Path) -> list[dict[str, Any]]:
    """The JSON lines ``visiontrain serve log_predictions=...`` wrote."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
