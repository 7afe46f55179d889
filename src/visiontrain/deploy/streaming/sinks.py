"""Where results are stored besides the output topic, idempotently on (topic, partition, offset, row).

After a crash the messages since the last commit are scored again; a sink must then hold each result once:
- a Parquet folder: one file per partition and batch, named by its first offset and written atomically. Offsets
  are committed at batch ends, so a replay after a crash starts at the first offset of the one uncommitted file
  and replaces it whole;
- a SQL table (a SQLite file, or any SQLAlchemy URL): an upsert on the primary key (topic, partition, offset, row).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from visiontrain.core.redaction import redact_url
from visiontrain.errors import ConfigError

COLUMNS = ("topic", "partition", "offset", "row", "key", "source_timestamp_ms", "model", "model_version",
           "scored_at", "label", "score", "result")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


class Sink(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


def sink_row(message: dict[str, Any], result: dict[str, Any], scored_at: str) -> dict[str, Any]:
    """The stored form of one output message: its coordinates, the headline label and score, all as JSON."""
    label = result.get("label", result.get("top1"))
    score = result.get("probability", result.get("top1_probability", result.get("prediction")))
    return {"topic": message["topic"], "partition": message["partition"], "offset": message["offset"],
            "row": message["row"], "key": message["key"], "source_timestamp_ms": message["source_timestamp_ms"],
            "model": message["model"], "model_version": message["model_version"], "scored_at": scored_at,
            "label": None if label is None else str(label), "score": None if score is None else float(score),
            "result": json.dumps(message, default=str)}


class ParquetSink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault((row["topic"], row["partition"]), []).append(row)
        for (topic, partition), part in groups.items():
            first = min(row["offset"] for row in part)
            target = self.folder / f"{_safe(topic)}-p{partition:05d}-{first:020d}.parquet"
            temporary = target.with_suffix(".parquet.tmp")
            table = pa.Table.from_pylist(part, schema=_arrow_schema())
            pq.write_table(table, temporary)
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, target)

    def close(self) -> None:
        return None

    def describe(self) -> str:
        return f"parquet files in {self.folder}"


def _arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
                      ("row", pa.int32()), ("key", pa.string()), ("source_timestamp_ms", pa.int64()),
                      ("model", pa.string()), ("model_version", pa.string()), ("scored_at", pa.string()),
                      ("label", pa.string()), ("score", pa.float64()), ("result", pa.string())])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


class SqlSink:
    """Rows upserted into ``table`` (created when absent) through SQLAlchemy, one transaction per batch."""

    def __init__(self, url: str, table: str) -> None:
        import sqlalchemy as sa

        self.url, self.shown = url, redact_url(url)
        self.engine = sa.create_engine(url)
        metadata = sa.MetaData()
        self.table = sa.Table(
            table, metadata,
            sa.Column("topic", sa.String(255), primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True),
            sa.Column("offset", sa.BigInteger, primary_key=True),
            sa.Column("row", sa.Integer, primary_key=True),
            *[sa.Column(name, kind) for name, kind in (
                ("key", sa.Text), ("source_timestamp_ms", sa.BigInteger), ("model", sa.Text),
                ("model_version", sa.Text), ("scored_at", sa.Text), ("label", sa.Text), ("score", sa.Float),
                ("result", sa.Text))])
        metadata.create_all(self.engine)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self.engine.begin() as connection:
            connection.execute(self._upsert(), rows)

    def _upsert(self) -> Any:
        dialect = self.engine.dialect.name
        keys = ("topic", "partition", "offset", "row")
        if dialect in ("sqlite", "postgresql"):
            module = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["insert"])
            statement = module.insert(self.table)
            updates = {name: statement.excluded[name] for name in COLUMNS if name not in keys}
            return statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
        if dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert

            statement = insert(self.table)
            return statement.on_duplicate_key_update({name: statement.inserted[name] for name in COLUMNS
                                                      if name not in keys})
        raise ConfigError("sink", f"{dialect} has no upsert here (sqlite, postgresql, mysql do)",
                          "sink=<a parquet folder, a SQLite file or a postgresql:// URL>")

    def close(self) -> None:
        self.engine.dispose()

    def describe(self) -> str:
        return f"table {self.table.name} in {self.shown}"


def open_sink(value: Any, table: str = "stream_results") -> Sink | None:
    """``sink=``: a folder (Parquet), a SQLite file (.db/.sqlite/.sqlite3) or a SQLAlchemy URL; None: none."""
    if not value:
        return None
    text = str(value)
    if "://" in text:
        if text.startswith("kafka://"):
            raise ConfigError("sink", "is for files and databases; results already go to `output`",
                              "sink=<a parquet folder, a SQLite file or a database URL>")
        return SqlSink(text, table)
    path = Path(text).expanduser()
    if path.suffix.lower() in SQLITE_SUFFIXES:
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqlSink(f"sqlite:///{path.resolve()}", table)
    if path.suffix and not path.is_dir():
        raise ConfigError("sink", f"{path.name}: a sink is a folder (Parquet files), a .db/.sqlite file or a URL",
                          "sink=results/  or  sink=results.db")
    return ParquetSink(path)
