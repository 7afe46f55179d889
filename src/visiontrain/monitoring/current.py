"""Summaries of the incoming data, computed exactly as the reference was: tables, image folders, prediction logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visiontrain.core.table_values import ModelInputs, is_yes_no_column, model_inputs
from visiontrain.deploy.image_input import list_images
from visiontrain.monitoring.reference import IMAGE_STATISTICS, image_statistics

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


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


def image_inputs(folder: Path, limit: int | None = None) -> tuple[dict[str, Any], list[Path], list[tuple[str, str]]]:
    """Input statistics of every readable image under ``folder``; unreadable files are listed, not fatal."""
    from visiontrain.data.image_io import open_rgb

    files, skipped = list_images(Path(folder), IMAGE_SUFFIXES)
    rows, used = [], []
    rejected = [(str(path), reason) for path, reason in skipped]
    for path in files[:limit] if limit else files:
        try:
            rows.append(image_statistics(open_rgb(path)))
            used.append(path)
        except Exception as error:  # noqa: BLE001 - any decoding failure is a reason, not a crash
            rejected.append((str(path), f"{type(error).__name__}: {error}"))
    inputs = {name: np.array([row[name] for row in rows]) for name in IMAGE_STATISTICS}
    return inputs, used, rejected


def prediction_log(path: Path) -> list[dict[str, Any]]:
    """The JSON lines ``visiontrain serve log_predictions=...`` wrote."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
