"""Table rows from one JSON message: an object is a row, a list of objects is several.

Shared by training's ``data.source=kafka://`` snapshot and HTTP pages (one item of a page), and torch-free so
the streaming side can read messages by the same rule. Anything else is not a row, with the reason why, for
the caller to list (never to drop).
"""

from __future__ import annotations

import json
from typing import Any


class NotRows(ValueError):
    """A message that holds no table row; ``str()`` is the reason, fit for a rejects file."""


def rows_in_message(value: bytes | str | None) -> list[dict[str, Any]]:
    """The rows of a message value (UTF-8 JSON): one object, or a non-empty list of non-empty objects."""
    if value is None or not value.strip():
        raise NotRows("an empty message")
    try:  # decoded here: json.loads would take a byte-order mark as UTF-16 or UTF-32
        document = json.loads(value.decode("utf-8") if isinstance(value, bytes) else value)
    except UnicodeDecodeError as error:
        raise NotRows(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise NotRows(f"not JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    return rows_in_document(document)


def rows_in_document(document: Any) -> list[dict[str, Any]]:
    """The rows of parsed JSON: an object is one row, a list of objects one row each."""
    if isinstance(document, dict):
        if not document:
            raise NotRows("an empty JSON object (no column values)")
        return [document]
    if not isinstance(document, list):
        raise NotRows(f"a JSON {json_kind(document)}, not an object or a list of objects")
    if not document:
        raise NotRows("an empty JSON list (no rows)")
    for index, item in enumerate(document):
        if not isinstance(item, dict) or not item:
            what = "an empty object" if isinstance(item, dict) else f"a JSON {json_kind(item)}"
            raise NotRows(f"item {index} of the list is {what}, not an object of column values")
    return document


def json_kind(value: Any) -> str:
    """JSON's own name for a parsed value's type (``null``, ``number``...), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"
