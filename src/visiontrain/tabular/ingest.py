"""Read a table from any source (CSV, JSON, JSON Lines, Parquet, SQL, a Kafka topic, an HTTP API) into a
DataFrame of raw values.

Files are read by :mod:`visiontrain.core.table_files`, as ``predict`` and ``drift`` read them; this module adds
databases (a URL, or a SQLite file), the remote sources (:mod:`~visiontrain.tabular.kafka_snapshot`,
:mod:`~visiontrain.tabular.http_source`, which also say where each row came from), the checks training needs
(no empty table) and the ``data.*`` keys. Nothing is repaired here: cleansing decides what each value is.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from visiontrain.config.choices import TABLE_FORMATS as FORMATS
from visiontrain.config.tabular import SourceOptions, remote_kind
from visiontrain.core.redaction import redact_text, redact_url, secrets_in_url
from visiontrain.core.table_files import FILE_SUFFIXES, check_unique_columns, first_line, real_suffixes
from visiontrain.core.table_files import read_table as read_file
from visiontrain.errors import ConfigError, DataError
from visiontrain.tabular.source_limits import too_many_rows
from visiontrain.tabular.source_lineage import SourceRead

SUFFIXES = {**FILE_SUFFIXES, ".db": "sql", ".sqlite": "sql", ".sqlite3": "sql"}


def detect_format(source: str) -> str:
    """The format of ``source`` from its shape: kafka:// and http(s):// by their scheme, another URL with
    ``://`` is SQL, a file goes by its extension."""
    if remote_kind(source):
        return str(remote_kind(source))
    if "://" in str(source):
        return "sql"
    suffixes = real_suffixes(source)
    if suffixes and suffixes[-1] in SUFFIXES:
        return SUFFIXES[suffixes[-1]]
    extension = "".join(suffixes) or "(none)"
    raise DataError(f"{source}: cannot tell the format from the extension {extension!r}; known extensions: "
                    f"{', '.join(SUFFIXES)}. Set data.format to one of {', '.join(FORMATS)}.")


def read_table(source: str, fmt: str = "auto", table: str | None = None,
               query: str | None = None, options: SourceOptions | None = None) -> pd.DataFrame:
    """Every row of ``source`` as raw values; ``table``/``query`` pick what to read from a SQL database."""
    return read_source(source, fmt, table, query, options)[0]


def read_source(source: str, fmt: str = "auto", table: str | None = None, query: str | None = None,
                options: SourceOptions | None = None) -> tuple[pd.DataFrame, SourceRead | None]:
    """Every row of ``source`` as raw values, with each row's origin when the source is a topic or an API.

    ``options``: the ``data`` settings (None: the defaults), for the remote sources' keys (``data.kafka``,
    ``data.kafka_timeout_s``,
    ``data.kafka_max_message_bytes``, ``data.http``) and ``data.max_rows``, which bounds every source: a
    database or a remote source stops reading at the first row over it, a file (already read) is refused.
    """
    source = str(source)
    options = options or SourceOptions()
    limit = options.max_rows
    kind = remote_kind(source)
    if kind is not None:
        remote = _read_remote(source, kind, fmt, table, query, options)
        frame = remote.frame
        frame.columns = [str(name) for name in frame.columns]
        check_unique_columns(list(frame.columns), redact_url(source))
        return frame, remote
    if fmt not in FORMATS + ("auto",):
        raise ConfigError("data.format", f"must be auto or one of {', '.join(FORMATS)}, got {fmt!r}",
                          "data.format=auto")
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt != "sql" and (table is not None or query is not None):
        raise ConfigError("data.table" if table is not None else "data.query",
                          f"only applies to SQL sources, and {source} is read as {fmt}",
                          "remove data.table and data.query, or point data.source at a database")
    if fmt == "sql":
        frame = _read_sql(source, table, query, limit)
    else:
        frame = read_file(_existing_file(source), fmt, format_key="data.format")
        if len(frame) > limit:
            raise too_many_rows(source, limit, "point data.source at a smaller extract", counted=len(frame))
    if frame.empty:
        columns = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(f"{redact_url(source) if fmt == 'sql' else source}: the table has no rows (columns: "
                        f"{columns}); point data.source at the data.")
    frame.columns = [str(name) for name in frame.columns]
    check_unique_columns(list(frame.columns), redact_url(source) if fmt == "sql" else source)
    return frame, None


def _read_remote(source: str, kind: str, fmt: str, table: str | None, query: str | None,
                 options: SourceOptions) -> SourceRead:
    """A Kafka topic's snapshot or an HTTP API's pages (imported here: a file run needs neither client)."""
    if fmt != "auto":
        raise ConfigError("data.format", f"does not apply to a {kind} source (its messages or pages are JSON), "
                          f"got {fmt!r}", "data.format=auto")
    if table is not None or query is not None:
        raise ConfigError("data.table" if table is not None else "data.query", "only applies to SQL sources",
                          "remove data.table and data.query")
    if kind == "kafka":
        from visiontrain.tabular.kafka_snapshot import SnapshotLimits, read_kafka_snapshot

        return read_kafka_snapshot(source, options.kafka, limits=SnapshotLimits.of(options))
    from visiontrain.tabular.http_source import read_http_source

    return read_http_source(source, options.http, options.max_rows)


def _existing_file(source: str) -> Path:
    path = Path(source).expanduser()
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "no such file"
        raise DataError(f"{path}: {where}; check data.source (absolute, or relative to where you run the "
                        "command).")
    return path


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


def _read_sql(source: str, table: str | None, query: str | None, limit: int) -> pd.DataFrame:
    """The table or the query's rows, at most ``limit`` (``data.max_rows``): more is an error, not a cut."""
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
        reason = _hide(first_line(error), url)
        raise DataError(f"{shown}: cannot open this database URL ({reason}).") from None
    if url.get_backend_name() == "sqlite":
        sqlalchemy.event.listen(engine, "connect", _read_only_sqlite)
    try:
        with engine.connect() as connection:
            # a server-side cursor where the driver has one (PostgreSQL, MySQL): rows arrive as they are
            # fetched, so a query returning far more than data.max_rows is stopped after limit + 1 of them
            connection = connection.execution_options(stream_results=True)
            if table is not None:
                frame = _read_sql_table(connection, table, shown, limit + 1)
            else:  # a plain string runs as written: no ":name" binding
                frame = next(iter(pd.read_sql(query, connection, chunksize=limit + 1)))
    except (SQLAlchemyError, pd.errors.DatabaseError) as error:  # pandas wraps what SQLAlchemy raises
        cause = error.__cause__ if isinstance(error, pd.errors.DatabaseError) and error.__cause__ else error
        reason = _hide(first_line(getattr(cause, "orig", None) or cause), url)
        raise DataError(f"{shown}: the database could not be read ({reason}); check the URL in data.source "
                        f"and data.{'table' if table else 'query'}.") from None
    finally:
        engine.dispose()
    if len(frame) > limit:
        what, fix = (f"table {table!r}", "read fewer with data.query (a SELECT with a WHERE clause)") \
            if table is not None else ("data.query", "add a WHERE clause to data.query")
        raise too_many_rows(f"{shown} ({what})", limit, fix)
    return frame


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


def _read_sql_table(connection: sqlalchemy.Connection, table: str, shown: str, rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of ``table`` (one chunk: the same column types as reading it whole)."""
    names = sqlalchemy.inspect(connection).get_table_names()
    if table not in names:
        raise DataError(f"{shown}: no table {table!r}; the tables are: {', '.join(names) or 'none'}. "
                        "Fix data.table, or use data.query.")
    try:
        return next(iter(pd.read_sql_table(table, connection, chunksize=rows)))
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


def _hide(message: str, url: str | sqlalchemy.URL) -> str:
    """Drivers may echo connection details: make sure no password or token of the URL reaches a message."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return redact_text(message, *secrets_in_url(text))
