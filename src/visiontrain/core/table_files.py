"""Read a table file (CSV, JSON, JSON Lines, Parquet; compressed or not) into a DataFrame of raw values.

One reader for training (:mod:`visiontrain.tabular.ingest`, which adds databases) and for ``visiontrain
predict`` and ``drift``, so a file reads the same wherever it is given. Nothing is repaired here: CSV is read
as text so that no value is silently coerced (a blank, " ", or "0012" arrives as written), and typed sources
keep their native types; the table rules (:mod:`visiontrain.core.table_values`) decide what each value is.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd

from visiontrain.errors import DataError

FILE_FORMATS = ("csv", "json", "jsonl", "parquet")
FILE_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
                 ".pq": "parquet"}
COMPRESSION = (".gz", ".bz2", ".zip", ".xz", ".zst")  # pandas reads these transparently: look past them
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}  # what a CSV may be separated by
SAMPLE_CHARS = 64 * 1024  # enough lines to tell the delimiter, little enough to read twice
EXPECTED = {"json": "a JSON array of objects, one per row", "jsonl": "one JSON object per line",
            "csv": "comma-separated values with a header line", "parquet": "a Parquet file"}

log = logging.getLogger("visiontrain")


def real_suffixes(path: str | Path) -> list[str]:
    """The lower-case suffixes of ``path`` without compression ones: ``churn.csv.gz`` -> ``[".csv"]``."""
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    while suffixes and suffixes[-1] in COMPRESSION:
        suffixes.pop()
    return suffixes


def file_format(path: str | Path) -> str | None:
    """"csv", "json", "jsonl" or "parquet" by the extension (past any compression); None if not a table file."""
    suffixes = real_suffixes(path)
    return FILE_SUFFIXES.get(suffixes[-1]) if suffixes else None


def read_table(path: str | Path, fmt: str | None = None, format_key: str | None = None) -> pd.DataFrame:
    """Every row of the file ``path`` as raw values, read as ``fmt`` (None: by its extension).

    Raises DataError naming the file and what is wrong; ``format_key`` (e.g. ``data.format``) is the setting
    the message suggests when the format may be the mistake.
    """
    path = Path(path)
    fmt = fmt or file_format(path)
    if fmt not in FILE_FORMATS:
        raise DataError(f"{path}: not a table file; use one of {', '.join(FILE_SUFFIXES)}"
                        f"{f' or set {format_key}' if format_key else ''}.")
    try:
        frame = _read(path, fmt, format_key)
    except DataError:
        raise  # already says what is wrong and where
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; a CSV needs a header line and rows.") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason}); re-save the file as UTF-8 (from Latin-1: "
                        f"iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}).") from None
    except (ValueError, OSError) as error:  # parser errors, bad JSON, ArrowInvalid: all ValueError/OSError
        retry = f" If the format is wrong, set {format_key} to one of {', '.join(FILE_FORMATS)}." \
            if format_key else ""
        raise DataError(f"{path}: cannot be read as {fmt} ({first_line(error)}); expected {EXPECTED[fmt]}."
                        f"{retry}{_json_lines_hint(path, format_key) if fmt == 'json' else ''}") from None
    frame.columns = [str(name) for name in frame.columns]
    check_unique_columns(list(frame.columns), str(path))
    return frame


def check_unique_columns(names: list[str], shown: str) -> None:
    """Two columns of one name: which one is ``tenure``? Pandas would pick one silently, or fail later."""
    for name in names:
        if names.count(name) > 1:
            places = " and ".join(str(i + 1) for i, other in enumerate(names) if other == name)
            raise DataError(f"{shown}: the column name {name!r} appears more than once (columns {places}); "
                            "give each column its own name in the header (or in the SELECT).")


def first_line(error: BaseException | object) -> str:
    """The first line of an error's message (parsers and drivers write pages), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read(path: Path, fmt: str, format_key: str | None) -> pd.DataFrame:
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "json":
        return _read_json(path, format_key)
    if fmt == "jsonl":
        return _read_json_lines(path)
    return pd.read_parquet(path)


def _open_text(path: Path) -> fsspec.core.OpenFile:
    """``path`` as UTF-8 text (``with _open_text(path) as handle``), decompressed as pandas would."""
    return fsspec.open(str(path), "rt", compression="infer", encoding="utf-8", newline="")


def _sample(path: Path) -> str:
    """The first whole lines of ``path`` (up to SAMPLE_CHARS characters)."""
    with _open_text(path) as handle:
        text = handle.read(SAMPLE_CHARS)
    return text if len(text) < SAMPLE_CHARS else text[: text.rfind("\n") + 1] or text


def _read_csv(path: Path) -> pd.DataFrame:
    """Comma, semicolon, tab or pipe separated, told from the first lines; read as text (see the module)."""
    sample = _sample(path)
    delimiter = sniff_delimiter(sample)
    if delimiter != ",":
        log.info("%s: read as %s-separated values (the delimiter found in its first lines)", path,
                 DELIMITERS[delimiter])
    header = next(csv.reader(io.StringIO(sample), delimiter=delimiter), [])
    # pandas renames a second "tenure" to "tenure.1"; " tenure" is tenure too, once its name is stripped
    check_unique_columns([name.strip() for name in header], str(path))
    return pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False)


def sniff_delimiter(sample: str) -> str:
    """The delimiter that splits every sample line into the same number of fields; a comma if none does."""
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:  # one column, or too irregular to tell: the parser reports what is wrong with it
        return ","


def _read_json(path: Path, format_key: str | None) -> pd.DataFrame:
    """A JSON array of row objects, or an object that wraps one (``{"data": [...]}``): its rows are read."""
    if _sample(path).lstrip()[:1] != "{":  # dtype off: numbers stay numbers, "0012" stays a string
        return pd.read_json(path, orient="records", dtype=False, convert_dates=False)
    with _open_text(path) as handle:
        try:
            document = json.load(handle)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: cannot be read as json ({error.msg} at line {error.lineno}, column "
                            f"{error.colno}); expected a JSON array of objects, one per row."
                            f"{_json_lines_hint(path, format_key)}") from None
    return pd.DataFrame(_wrapped_rows(document, path))


def _wrapped_rows(document: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The one list of row objects inside a JSON object; which key held it is logged."""
    keys = [key for key, value in document.items()
            if isinstance(value, list) and value and all(isinstance(row, dict) for row in value)]
    if len(keys) == 1:
        log.info("%s: the rows are the list under the key %r of the JSON object", path, keys[0])
        return document[keys[0]]
    found = ", ".join(repr(key) for key in document) or "none"
    problem = f"several lists of rows, under {', '.join(map(repr, keys))}" if keys else \
        f"no list of row objects (its keys: {found})"
    raise DataError(f"{path}: the JSON object holds {problem}; save the rows as a JSON array of objects, one "
                    "per row (or a JSON object with just one such list, e.g. {\"data\": [...]}).")


def _json_lines_hint(path: Path, format_key: str | None) -> str:
    with _open_text(path) as handle:
        first = handle.readline()
    try:
        is_row = isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return ""
    setting = f" or {format_key}=jsonl" if format_key else ""
    return (f" Its first line is a row on its own: for JSON Lines use the .jsonl extension{setting}."
            if is_row else "")


def _read_json_lines(path: Path) -> pd.DataFrame:
    try:
        return pd.read_json(path, orient="records", lines=True, dtype=False, convert_dates=False)
    except (ValueError, TypeError) as error:  # TypeError: a line that is a JSON list, not an object
        where = _bad_json_line(path) or first_line(error)
        raise DataError(f"{path}: cannot be read as JSON Lines ({where}); expected one JSON object per line. "
                        "Fix or remove that line.") from None


def _bad_json_line(path: Path) -> str | None:
    """"line 7: ..." for the first line that is not one JSON object; None if every line is one."""
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.rstrip("\r\n"))  # columns count on this line alone
            except json.JSONDecodeError as error:
                return f"line {number}: {error.msg} at column {error.colno}"
            if not isinstance(row, dict):
                return f"line {number}: a JSON {type(row).__name__}, not an object of column values"
    return None
