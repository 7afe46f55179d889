"""Reference statistics of the training data and of the model's outputs, recorded when a run ends.

Stored in the run dir (``reference_stats.json``) and inside the ONNX file's metadata, so ``visiontrain drift``
works from either. Built from plain numpy / pandas / PIL values: the inference side computes the same summaries
of incoming data with the same functions (one image's statistics: :mod:`visiontrain.core.image_statistics`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from visiontrain.core.image_statistics import IMAGE_STATISTICS
from visiontrain.monitoring.statistics import categorical_reference, numeric_reference

MAX_IMAGES = 500  # images decoded for the input statistics: enough for stable deciles, cheap on any dataset


def image_inputs_reference(rows: Iterable[dict[str, float]]) -> dict[str, Any]:
    rows = list(rows)
    return {name: numeric_reference(np.array([row[name] for row in rows])) for name in IMAGE_STATISTICS}


def table_inputs_reference(frame: Any, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    features = {name: numeric_reference(frame[name].to_numpy(dtype=np.float64)) for name in numeric}
    features.update({name: categorical_reference(frame[name].tolist()) for name in categorical})
    return features


def outputs_reference(class_names: list[str], predicted: np.ndarray, confidence: np.ndarray) -> dict[str, Any]:
    """Predicted class shares and the confidence (or probability / prediction) distribution."""
    names = [class_names[int(i)] for i in predicted] if class_names else []
    return {"predicted_class": categorical_reference(names) if names else None,
            "confidence": numeric_reference(np.asarray(confidence, dtype=np.float64))}
