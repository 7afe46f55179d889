"""Kafka messages as the records a model scores: one per table row or image, or a reject with the reason.

Table models take JSON: one object (a row), a list of objects, or ``{"rows": [...]}``. Image models take the
image's bytes, or JSON with the image base64-encoded under ``image_field`` (other fields of that object are
carried to the result). Whatever cannot be read becomes a :class:`RejectedMessage` holding the original bytes, so the
dead-letter topic gets exactly what arrived.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from visiontrain.core.json_rows import loads
from visiontrain.errors import JsonProblem


@dataclass(frozen=True)
class Origin:
    """Where a record came from: the message's coordinates, key and timestamp, and its row in the message."""

    topic: str
    partition: int
    offset: int
    row: int
    key: str | None
    timestamp_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "row": self.row,
                "key": self.key, "source_timestamp_ms": self.timestamp_ms}


@dataclass(frozen=True)
class Record:
    """One input to score: a table row (dict) or an image's bytes, with fields carried to the result."""

    origin: Origin
    payload: Any
    carried: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RejectedMessage:
    """An input that is not scored: the reason, and the bytes to dead-letter (the message, or the row)."""

    origin: Origin
    reason: str
    original: bytes


def origin_of(message: Any, row: int = 0) -> Origin:
    key = message.key()
    kind, stamp = message.timestamp()
    return Origin(message.topic(), message.partition(), message.offset(), row,
                  key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
                  int(stamp) if kind and stamp is not None and stamp >= 0 else None)


def table_records(message: Any) -> list[Record | RejectedMessage]:
    """A message of JSON rows as records; the whole message rejected when it holds no rows."""
    value = message.value()
    if not value:
        return [RejectedMessage(origin_of(message), "empty message (expected a JSON object or a list of objects)",
                         value or b"")]
    try:
        document = loads(value)
    except JsonProblem as error:
        return [RejectedMessage(origin_of(message), f"the message is {error}", value)]
    if isinstance(document, dict) and isinstance(document.get("rows"), list):
        document = document["rows"]
    rows = document if isinstance(document, list) else [document]
    if not rows:
        return [RejectedMessage(origin_of(message), "an empty list: no rows", value)]
    records: list[Record | RejectedMessage] = []
    for index, row in enumerate(rows):
        if isinstance(row, dict):
            records.append(Record(origin_of(message, index), row))
        else:
            what = "a list" if isinstance(row, list) else type(row).__name__
            records.append(RejectedMessage(origin_of(message, index),
                                    f"row {index} is {what}, not a JSON object of column: value",
                                    _json_bytes(row)))
    return records


def image_records(message: Any, image_field: str) -> list[Record | RejectedMessage]:
    """A message holding an image: its raw bytes, or JSON with the base64 image under ``image_field``."""
    value = message.value() or b""
    origin = origin_of(message)
    if not value:
        return [RejectedMessage(origin, "empty message (expected image bytes or JSON with a base64 image)", value)]
    if value[:1] not in (b"{", b"["):
        return [Record(origin, value)]
    try:
        document = loads(value)
    except JsonProblem:
        return [Record(origin, value)]  # not JSON after all: let the decoder say whether it is an image
    if not isinstance(document, dict) or not isinstance(document.get(image_field), str):
        return [RejectedMessage(origin, f"JSON without a base64 image in field {image_field!r} (image_field)", value)]
    try:
        image = base64.b64decode(document[image_field], validate=True)
    except (binascii.Error, ValueError) as error:
        return [RejectedMessage(origin, f"field {image_field!r} is not valid base64: {error}", value)]
    carried = {name: item for name, item in document.items()
               if name != image_field and not isinstance(item, (dict, list))}
    return [Record(origin, image, carried)]


def _json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value, default=str).encode()
