"""The two files every sweep leaves, whichever sweeper ran it: ``sweep_summary.csv`` for scripts and
``sweep_summary.md`` for people. The grid summary (:mod:`.summary`) and the Optuna report (:mod:`.report`)
both write through here, so the two tables format a cell the same way; files are replaced atomically, since
several workers may write them as a sweep ends.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visiontrain.core.atomic import write_atomically

CSV_FILE = "sweep_summary.csv"
MARKDOWN_FILE = "sweep_summary.md"


def csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV (values as they are: a script reads full precision)."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def markdown_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
                   formats: Mapping[str, str] | None = None) -> list[str]:
    """The rows as a Markdown table, one line each: floats to 4 decimals unless ``formats`` names the column's
    format (``{"duration_s": "{:.1f}"}``), long cells cut at 200 characters."""
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column), formats.get(column, "{:.4f}")) for column in columns) + " |"
              for row in rows]
    return lines


def cell(value: Any, float_format: str = "{:.4f}") -> str:
    if isinstance(value, float):
        return float_format.format(value)
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")[:200]


def write_text(path: Path, text: str) -> Path:
    write_atomically(text.encode(), path)
    return path
