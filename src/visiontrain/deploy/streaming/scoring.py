"""Records scored with onnxruntime by the rules ``predict`` applies, in micro-batches of ``max_batch_size``.

Tables: :func:`~visiontrain.core.json_rows.flat_row` and :func:`~visiontrain.deploy.table_input.prepare_rows`
(serve's and predict's cleansing), then :meth:`OnnxModel.score`. Images: decode and preprocess as predict does
(:mod:`visiontrain.core.image_preprocess`), then :meth:`OnnxModel.classify`. Each scored batch also returns the
cleansed inputs and the outputs, for the rolling drift windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visiontrain.core.image_decode import PixelLimit, decode
from visiontrain.core.image_preprocess import ImageSpec, preprocess
from visiontrain.core.image_statistics import IMAGE_STATISTICS, image_statistics
from visiontrain.core.json_rows import flat_row
from visiontrain.core.kafka_records import Origin, Record, RejectedMessage
from visiontrain.deploy.table_input import TableSpec, prepare_rows, row_ids
from visiontrain.errors import ColumnsError, ImageRejected
from visiontrain.inference.onnx_model import IMAGE, OnnxModel


@dataclass(frozen=True)
class Scored:
    origin: Origin
    result: dict[str, Any]
    carried: dict[str, Any]


@dataclass
class BatchOutcome:
    """What one micro-batch gave: results, rejects, and the values drift monitoring compares."""

    scored: list[Scored] = field(default_factory=list)
    rejected: list[RejectedMessage] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


def _json(row: dict[str, Any]) -> bytes:
    import json

    return json.dumps(row, default=str).encode()


class Scorer:
    """Scores records of one model kind; ``score(records)`` never raises for a bad input, only rejects it."""

    def __init__(self, model: OnnxModel, max_batch_size: int, top_k: int = 5,
                 pixel_limit: PixelLimit = PixelLimit()) -> None:
        self.model, self.max_batch_size, self.top_k = model, max(1, int(max_batch_size)), int(top_k)
        self.pixel_limit = pixel_limit
        self.is_image = model.kind == IMAGE
        if self.is_image:
            self.image_spec = ImageSpec.from_metadata(model.metadata.as_dict())
            self.lookup = self.image_spec.lookup_table()
        else:
            self.table_spec = TableSpec.from_metadata(model.metadata, model.input_columns())

    def score(self, records: list[Record]) -> BatchOutcome:
        if not records:
            return BatchOutcome()
        return self._images(records) if self.is_image else self._rows(records)

    def _rows(self, records: list[Record]) -> BatchOutcome:
        outcome = BatchOutcome()
        usable: list[Record] = []
        rows: list[dict[str, Any]] = []
        for record in records:
            row, problem = flat_row(record.payload)
            if problem is None:
                try:
                    self.table_spec.check_columns(row)
                except ColumnsError as error:
                    problem = str(error)
            if problem:
                outcome.rejected.append(RejectedMessage(record.origin, problem, _json(record.payload)))
            else:
                usable.append(record)
                rows.append(row)
        if not rows:
            return outcome
        prepared = prepare_rows(rows, self.table_spec)
        for position, reason in sorted(prepared.rejects.items()):
            outcome.rejected.append(RejectedMessage(usable[position].origin, reason, _json(usable[position].payload)))
        feeds = prepared.feeds()
        results: list[dict[str, Any]] = []
        for start in range(0, len(prepared.kept), self.max_batch_size):
            results.extend(self.model.score({name: values[start:start + self.max_batch_size]
                                             for name, values in feeds.items()}))
        for position, result in zip(prepared.kept, results):
            record = usable[int(position)]
            outcome.scored.append(Scored(record.origin, result, row_ids(rows[int(position)], self.table_spec)))
        outcome.inputs = dict(prepared.values)
        key = "prediction" if self.model.is_regression else "probability"
        outcome.outputs = {"confidence": np.array([r[key] for r in results], dtype=np.float64)}
        if not self.model.is_regression:
            outcome.outputs["predicted_class"] = [r["label"] for r in results]
        return outcome

    def _images(self, records: list[Record]) -> BatchOutcome:
        outcome = BatchOutcome()
        pixels, used, stats = [], [], []
        for record in records:
            try:
                # the limit is checked from the header: a decompression bomb is never decoded
                decoded = decode(record.payload, self.image_spec.resize_to, limit=self.pixel_limit)
            except ImageRejected as error:
                outcome.rejected.append(RejectedMessage(record.origin, str(error), record.payload))
                continue
            pixels.append(preprocess(decoded.image, self.image_spec, self.lookup))
            stats.append(image_statistics(decoded))
            used.append(record)
        results: list[dict[str, Any]] = []
        for start in range(0, len(pixels), self.max_batch_size):
            results.extend(self.model.classify(np.stack(pixels[start:start + self.max_batch_size]), self.top_k))
        outcome.scored = [Scored(record.origin, result, record.carried) for record, result in zip(used, results)]
        outcome.inputs = {name: np.array([row[name] for row in stats], dtype=np.float64) for name in IMAGE_STATISTICS}
        outcome.outputs = {"confidence": np.array([r["top1_probability"] for r in results], dtype=np.float64),
                           "predicted_class": [r["top1"] for r in results]}
        return outcome
