"""Read a table from any source (CSV, JSON, JSON Lines, Parquet, SQL) into a DataFrame of raw values.

Nothing is repaired here: CSV is read as text so that no value is silently coerced (a blank, " ", or
"0012" reaches cleansing as written), and typed sources keep their native types. Cleansing decides what each
value is.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from visiontrain.errors import ConfigError, DataError
from visiontrain.redaction import redact_text, redact_url, secrets_in_url

FORMATS = ("csv", "json", "jsonl", "parquet", "sql")
SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
            ".pq": "parquet", ".db": "sql", ".sqlite": "sql", ".sqlite3": "sql"}
COMPRESSION = (".gz", ".bz2", ".zip", ".xz", ".zst")  # pandas reads these transparently: look past them
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}  # what a CSV may be separated by
SAMPLE_CHARS = 64 * 1024  # enough lines to tell the delimiter, little enough to read twice

log = logging.getLogger("visiontrain")


def detect_format(source: str) -> str:
    """The format of ``source`` from its shape: a URL with ``://`` is SQL, a file goes by its extension."""
    if "://" in str(source):
        return "sql"
    suffixes = [s.lower() for s in Path(source).suffixes]
    while suffixes and suffixes[-1] in COMPRESSION:
        suffixes.pop()
    if suffixes and suffixes[-1] in SUFFIXES:
        return SUFFIXES[suffixes[-1]]
    extension = "".join(suffixes) or "(none)"
    raise DataError(f"{source}: cannot tell the format from the extension {extension!r}; known extensions: "
                    f"{', '.join(SUFFIXES)}. Set data.format to one of {', '.join(FORMATS)}.")


def read_table(source: str, fmt: str = "auto", table: str | None = None,
               query: str | None = None) -> pd.DataFrame:
    """Every row of ``source`` as raw values; ``table``/``query`` pick what to read from a SQL database."""
    source = str(source)
    if fmt not in FORMATS + ("auto",):
        raise ConfigError("data.format", f"must be auto or one of {', '.join(FORMATS)}, got {fmt!r}",
                          "data.format=auto")
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt != "sql" and (table is not None or query is not None):
        raise ConfigError("data.table" if table is not None else "data.query",
                          f"only applies to SQL sources, and {source} is read as {fmt}",
                          "remove data.table and data.query, or point data.source at a database")
    frame = _read_sql(source, table, query) if fmt == "sql" else _read_file(_existing_file(source), fmt)
    if frame.empty:
        columns = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(f"{redact_url(source) if fmt == 'sql' else source}: the table has no rows (columns: "
                        f"{columns}); point data.source at the data.")
    frame.columns = [str(name) for name in frame.columns]
    _check_unique_columns(list(frame.columns), redact_url(source) if fmt == "sql" else source)
    return frame


def _check_unique_columns(names: list[str], shown: str) -> None:
    """Two columns of one name: which one is ``tenure``? Pandas would pick one silently, or fail later."""
    for name in names:
        if names.count(name) > 1:
            places = " and ".join(str(i + 1) for i, other in enumerate(names) if other == name)
            raise DataError(f"{shown}: the column name {name!r} appears more than once (columns {places}); "
                            "give each column its own name in the header (or in the SELECT).")


def _existing_file(source: str) -> Path:
    path = Path(source).expanduser()
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "no such file"
        raise DataError(f"{path}: {where}; check data.source (absolute, or relative to where you run the "
                        "command).")
    return path


def _read_file(path: Path, fmt: str) -> pd.DataFrame:
    try:
        if fmt == "csv":
            return _read_csv(path)
        if fmt == "json":
            return _read_json(path)
        if fmt == "jsonl":
            return _read_json_lines(path)
        return pd.read_parquet(path)
    except DataError:
        raise  # already says what is wrong and where
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; a CSV needs a header line and rows.") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason}); re-save the file as UTF-8 (from Latin-1: "
                        f"iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}).") from None
    except (ValueError, OSError) as error:  # parser errors, bad JSON, ArrowInvalid: all ValueError/OSError
        hint = {"json": "a JSON array of objects, one per row", "jsonl": "one JSON object per line",
                "csv": "comma-separated values with a header line", "parquet": "a Parquet file"}[fmt]
        raise DataError(f"{path}: cannot be read as {fmt} ({_first_line(error)}); expected {hint}. If the "
                        f"format is wrong, set data.format to one of {', '.join(FORMATS)}."
                        f"{_json_lines_hint(path) if fmt == 'json' else ''}") from None


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
    # pandas renames a second "tenure" to "tenure.1"; " tenure" is tenure too, once cleansing strips names
    _check_unique_columns([name.strip() for name in header], str(path))
    return pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False)


def sniff_delimiter(sample: str) -> str:
    """The delimiter that splits every sample line into the same number of fields; a comma if none does."""
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:  # one column, or too irregular to tell: the parser reports what is wrong with it
        return ","


def _read_json(path: Path) -> pd.DataFrame:
    """A JSON array of row objects, or an object that wraps one (``{"data": [...]}``): its rows are read."""
    if _sample(path).lstrip()[:1] != "{":  # dtype off: numbers stay numbers, "0012" stays a string
        return pd.read_json(path, orient="records", dtype=False, convert_dates=False)
    with _open_text(path) as handle:
        try:
            document = json.load(handle)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: cannot be read as json ({error.msg} at line {error.lineno}, column "
                            f"{error.colno}); expected a JSON array of objects, one per row."
                            f"{_json_lines_hint(path)}") from None
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


def _json_lines_hint(path: Path) -> str:
    with _open_text(path) as handle:
        first = handle.readline()
    try:
        is_row = isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return ""
    return (" Its first line is a row on its own: for JSON Lines use the .jsonl extension or "
            "data.format=jsonl.") if is_row else ""


def _read_json_lines(path: Path) -> pd.DataFrame:
    try:
        return pd.read_json(path, orient="records", lines=True, dtype=False, convert_dates=False)
    except (ValueError, TypeError) as error:  # TypeError: a line that is a JSON list, not an object
        where = _bad_json_line(path) or _first_line(error)
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


def sql_url(source: str) -> str:
    """A SQLAlchemy URL for ``source``: URLs pass through, a SQLite file becomes ``sqlite:///<path>``."""
    if "://" in source:
        return source
    path = _existing_file(source).resolve()
    return sqlalchemy.URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def source_from_environment(variable: str) -> str:
    """``data.source_env``: the URL (or path) kept in an environment variable, so no secret enters the config."""
    value = os.environ.get(str(variable), "").strip()
    if not value:
        raise ConfigError("data.source_env", f"names the environment variable {variable}, which is not set",
                          f"export {variable}='postgresql://user:password@host/db' before the run")
    return value


def _read_sql(source: str, table: str | None, query: str | None) -> pd.DataFrame:
    if (table is None) == (query is None):
        raise ConfigError("data.table", "a SQL source needs exactly one of data.table (a table name) or "
                          f"data.query (a SELECT), got {'both' if table else 'neither'}",
                          "data.table=customers  or  data.query='SELECT * FROM customers'")
    url_text = sql_url(source)
    shown = redact_url(url_text)
    try:
        url = make_url(url_text)
    except ArgumentError:
        example = "sqlite:///churn.db or postgresql+psycopg://user@host/db"
        raise DataError(f"{shown}: not a database URL (data.source); e.g. {example}.") from None
    _check_sqlite_file(url, shown)
    try:
        engine = sqlalchemy.create_engine(url)
    except (ArgumentError, ImportError) as error:  # e.g. the database driver is not installed
        reason = _hide(_first_line(error), url)
        raise DataError(f"{shown}: cannot open this database URL ({reason}).") from None
    if url.get_backend_name() == "sqlite":
        sqlalchemy.event.listen(engine, "connect", _read_only_sqlite)
    try:
        with engine.connect() as connection:
            if table is not None:
                return _read_sql_table(connection, table, shown)
            return pd.read_sql(query, connection)  # a plain string runs as written: no ":name" binding
    except (SQLAlchemyError, pd.errors.DatabaseError) as error:  # pandas wraps what SQLAlchemy raises
        cause = error.__cause__ if isinstance(error, pd.errors.DatabaseError) and error.__cause__ else error
        reason = _hide(_first_line(getattr(cause, "orig", None) or cause), url)
        raise DataError(f"{shown}: the database could not be read ({reason}); check the URL in data.source "
                        f"and data.{'table' if table else 'query'}.") from None
    finally:
        engine.dispose()


_SQLITE_READING = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE,
                   sqlite3.SQLITE_TRANSACTION}
_SQLITE_LOOKUP_PRAGMAS = {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list",
                          "table_list"}  # they take a table name and only describe it


def _read_only_sqlite(connection: sqlite3.Connection, _record: Any) -> None:
    """Let SQLite run only what reads: no write, no ``ATTACH`` (which creates files even on a read-only
    connection), no pragma that sets anything. ``data.query`` may come from a checkpoint someone else made."""
    def authorise(action: int, argument: str | None, value: str | None, *_: Any) -> int:
        reading = action in _SQLITE_READING or (action == sqlite3.SQLITE_PRAGMA and (
            value is None or str(argument).lower() in _SQLITE_LOOKUP_PRAGMAS))
        return sqlite3.SQLITE_OK if reading else sqlite3.SQLITE_DENY

    connection.set_authorizer(authorise)


def _read_sql_table(connection: sqlalchemy.Connection, table: str, shown: str) -> pd.DataFrame:
    names = sqlalchemy.inspect(connection).get_table_names()
    if table not in names:
        raise DataError(f"{shown}: no table {table!r}; the tables are: {', '.join(names) or 'none'}. "
                        "Fix data.table, or use data.query.")
    try:
        return pd.read_sql_table(table, connection)
    except UnicodeDecodeError as error:  # pandas decodes TEXT columns; bytes stored in one may not be UTF-8
        raise DataError(f"{shown}: a text column of table {table!r} holds bytes that are not UTF-8 text "
                        f"({error.reason}); read it with data.query, leaving that column out or decoding it "
                        "in the SELECT.") from None


def _check_sqlite_file(url: sqlalchemy.URL, shown: str) -> None:
    """SQLite creates a missing database file on connect; a typo must fail instead of reading an empty one."""
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and \
            not database.startswith("file:") and not Path(database).is_file():
        raise DataError(f"{shown}: the SQLite database file {database} does not exist; check data.source.")


def _first_line(error: BaseException | object) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _hide(message: str, url: str | sqlalchemy.URL) -> str:
    """Drivers may echo connection details: make sure no password or token of the URL reaches a message."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return redact_text(message, *secrets_in_url(text))
