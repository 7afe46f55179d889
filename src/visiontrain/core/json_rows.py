"""JSON table rows as serve's request bodies and stream's messages carry them, checked value by value.

One parser and one set of rules for both: ``NaN``/``Infinity`` (Python's parser accepts them, JSON does not)
and nested values are named problems, integers too long for ``int()`` stay text for the column to judge, and
nesting past the recursion limit is a clear error rather than a crash. The cleansing after this is
:func:`visiontrain.deploy.table_input.prepare_rows`, as for predict.
"""

from __future__ import annotations

import json
from typing import Any

from visiontrain.errors import JsonProblem

LONGEST_INTEGER = 40  # digits; longer JSON integers stay text, and the column decides (float32 or category)


class NotJson(str):
    """``NaN``, ``Infinity`` or ``-Infinity``: Python's parser accepts them, JSON does not."""


def loads(body: bytes | str) -> Any:
    """``json.loads`` without its ways to fail badly: deep nesting, huge integers, invalid text."""
    try:
        return json.loads(body, parse_int=_integer, parse_constant=NotJson)
    except RecursionError:
        raise JsonProblem("JSON nested too deeply to parse: send one level of objects per row") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise JsonProblem(f"not valid JSON: {error}") from None


def _integer(text: str) -> int | str:
    """Short integers as ints; longer ones as their text, which ``int()`` would refuse past 4300 digits
    and ``float()`` turn into inf past 309: the table coercion then rejects them naming row and column."""
    return int(text) if len(text) <= LONGEST_INTEGER else text


def value_problem(value: Any) -> str | None:
    """Why ``value`` cannot be one cell of a row, or None."""
    if isinstance(value, (dict, list)):
        kind = "an object" if isinstance(value, dict) else "an array"
        return f"{kind} is not a value (rows are flat: one number, text, true/false or null per column)"
    if isinstance(value, NotJson):
        return f"{value} is not JSON (send a number, or null for a missing value)"
    return None


def flat_row(row: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``row`` with unusable values replaced by None, and the problems found ("column: reason; ...")."""
    found = {name: reason for name, value in row.items() if (reason := value_problem(value))}
    if not found:
        return row, None
    cleaned = {name: None if name in found else value for name, value in row.items()}
    return cleaned, "; ".join(f"{name}: {reason}" for name, reason in found.items())
