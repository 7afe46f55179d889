"""Where each raw row of a stream or API came from, and what arrived that was not a row.

A file or a database needs no more than a row number; a Kafka topic or a paginated API does: a row is traced
to its message (topic, partition, offset) or page (URL) and its index there. ``lineage.csv`` numbers rows as
``rejects.csv`` does (row 1: the first row read), and ``source_rejects.csv`` lists each message or item that
held no row, with its reason, so that ``in = rows kept + rows rejected by cleansing + not rows`` holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

LINEAGE_FILE = "lineage.csv"
NOT_ROWS_FILE = "source_rejects.csv"


@dataclass(frozen=True)
class SourceRead:
    """The raw rows of a remote source, each row's origin, what was not a row, and the report's ``source``."""

    frame: pd.DataFrame
    lineage: pd.DataFrame  # one line per row of ``frame``, in order (``row`` 1, 2, ...): where it came from
    not_rows: pd.DataFrame  # one line per message, or item of one, that held no row: where, reason, value
    report: dict[str, Any]

    def __post_init__(self) -> None:
        numbered = list(self.lineage["row"]) == list(range(1, len(self.frame) + 1))
        if len(self.lineage) != len(self.frame) or not numbered:
            raise RuntimeError(f"lineage lists {len(self.lineage)} rows for {len(self.frame)} rows read")
        if int(self.report["rows"]) != len(self.frame):
            raise RuntimeError(f"the report counts {self.report['rows']} rows, {len(self.frame)} were read")
        if int(self.report["not_rows"]) != len(self.not_rows):
            raise RuntimeError(f"the report counts {self.report['not_rows']} messages that are not rows, the "
                               f"list holds {len(self.not_rows)}")

    def write(self, out_dir: Path) -> dict[str, str]:
        """lineage.csv and source_rejects.csv into ``out_dir`` (beside data_report.md); returns their paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        lineage, not_rows = out_dir / LINEAGE_FILE, out_dir / NOT_ROWS_FILE
        self.lineage.to_csv(lineage, index=False)
        self.not_rows.to_csv(not_rows, index=False)
        return {"lineage": str(lineage), "source_rejects": str(not_rows)}


def describe_not_rows(source: dict[str, Any]) -> str:
    """One line for the log and the end-of-run report: messages or items that held no row."""
    read = f"{source['read']} messages" if source["kind"] == "kafka" else f"{source['pages']} pages"
    return (f"{source['not_rows']} messages or items in the {read} of {source['url']} held no row; listed with "
            f"the reason in {NOT_ROWS_FILE}")


def source_markdown(source: dict[str, Any]) -> list[str]:
    """The report's ``source`` section for data_report.md: what was read, from where, and what was not a row."""
    unit = "messages" if source["kind"] == "kafka" else "items"
    lines = ["", "## Source", "", f"{source['description']}: {source['read']} {unit} read, {source['rows']} rows, "
             f"{source['not_rows']} not rows (a message or an item of a list holding no row: listed in "
             f"{NOT_ROWS_FILE} with the reason). Every row's origin is in {LINEAGE_FILE} (row numbers as in "
             "rejects.csv)."]
    if source["kind"] == "kafka":
        lines += ["", "| partition | offsets read | messages | rows | not rows | high watermark at start |",
                  "| ---: | --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {p['partition']} | {_offsets(p)} | {p['messages']} | {p['rows']} | {p['not_rows']} | "
                  f"{p['high_watermark']} |" for p in source["partitions"]]
    else:
        lines += ["", f"{source['pages']} pages ({source['pagination']} pagination), {source['retries']} retries.",
                  "", "| page | URL | rows | not rows | retries |", "| ---: | --- | ---: | ---: | ---: |"]
        lines += [f"| {p['page']} | {p['url']} | {p['rows']} | {p['not_rows']} | {p['retries']} |"
                  for p in source["page_list"]]
    return lines


def _offsets(partition: dict[str, Any]) -> str:
    first, last = partition["first_offset"], partition["last_offset"]
    return "none (empty)" if first is None else f"{first} .. {last}"
