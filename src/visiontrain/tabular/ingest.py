"""Read a table from any source (CSV, JSON, JSON Lines, Parquet, SQL) into a DataFrame of raw values.

Nothing is repaired here: CSV is read as text so that no value is silently coerced (a blank, " ", or
"0012" reaches cleansing as written), and typed sources keep their native types. Cleansing decides what each
value is.
"""

from __future__ import annotations

import os
from pathlib import Path

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
        raise DataError(f"{masked_url(source) if fmt == 'sql' else source}: the table has no rows (columns: "
                        f"{columns}); point data.source at the data.")
    frame.columns = [str(name) for name in frame.columns]
    return frame


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
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if fmt in ("json", "jsonl"):
            # dtype/convert_dates off: numbers stay numbers, strings stay strings ("0012" is not 12).
            return pd.read_json(path, orient="records", lines=fmt == "jsonl", dtype=False,
                                convert_dates=False)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; a CSV needs a header line and rows.") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason}); re-save the file as UTF-8.") from None
    except (ValueError, OSError) as error:  # parser errors, bad JSON, ArrowInvalid: all ValueError/OSError
        hint = {"json": "a JSON array of objects, one per row", "jsonl": "one JSON object per line",
                "csv": "comma-separated values with a header line", "parquet": "a Parquet file"}[fmt]
        raise DataError(f"{path}: cannot be read as {fmt} ({_first_line(error)}); expected {hint}. If the "
                        f"format is wrong, set data.format to one of {', '.join(FORMATS)}.") from None


def sql_url(source: str) -> str:
    """A SQLAlchemy URL for ``source``: URLs pass through, a SQLite file becomes ``sqlite:///<path>``."""
    if "://" in source:
        return source
    path = _existing_file(source).resolve()
    return sqlalchemy.URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def masked_url(source: str) -> str:
    """``source`` fit to print: the password and any token in its query replaced by ``***``."""
    return redact_url(source)


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
    shown = masked_url(url_text)
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


def _read_sql_table(connection: sqlalchemy.Connection, table: str, shown: str) -> pd.DataFrame:
    names = sqlalchemy.inspect(connection).get_table_names()
    if table not in names:
        raise DataError(f"{shown}: no table {table!r}; the tables are: {', '.join(names) or 'none'}. "
                        "Fix data.table, or use data.query.")
    return pd.read_sql_table(table, connection)


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
