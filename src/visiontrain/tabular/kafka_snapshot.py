"""``data.source=kafka://host:port/topic``: a snapshot of a topic as a table for training.

Every partition is read from its earliest offset to where it ended when the read started, with a plain
consumer on assigned partitions: no consumer group is joined and no offset is committed, so a snapshot never
moves anyone's position. Messages are read into rows by the reader `visiontrain stream` uses
(:func:`visiontrain.core.kafka_records.table_records`: one object, a list of objects, or
``{"rows": [...]}``), so a topic a model trains on is one it can score; a message or list item that holds no row
is listed with its partition, offset, index and reason (:mod:`visiontrain.tabular.source_lineage`).

What bounds it: a topic that keeps growing while it is read ends where a message produced after the read started
(its timestamp more than ``LATE_S`` after the start) is reached, past the start's high watermark; the rows in all
are at most ``data.max_rows`` (more is an error, not a cut); a message over ``data.kafka_max_message_bytes`` is
listed in source_rejects.csv with its size, not parsed; one too large for the client to fetch at all (librdkafka's
``receive.message.max.bytes``, 100 MB by default) stops the run naming that setting.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from visiontrain.config.tabular import DEFAULT_MAX_ROWS, KAFKA_MAX_MESSAGE_BYTES, SourceOptions
from visiontrain.core.kafka import CONSUMER_DEFAULTS, KafkaAddress, client_settings, flat_settings
from visiontrain.core.kafka_records import RejectedMessage, origin_of, table_records
from visiontrain.errors import DataError
from visiontrain.tabular.source_limits import size_text, too_many_rows
from visiontrain.tabular.source_lineage import SourceRead

log = logging.getLogger("visiontrain")
DEFAULT_TIMEOUT_S = 30.0
LATE_S = 5.0  # past the start's high watermark, a message stamped this long after the start ends the snapshot
PREVIEW_BYTES = 200  # of a message too large to read, in source_rejects.csv
RECEIVE_LIMIT = "receive.message.max.bytes"
BATCH = 1000  # messages per consume() call
SNAPSHOT_DEFAULTS: dict[str, Any] = {
    **CONSUMER_DEFAULTS,
    "group.id": "visiontrain-training-snapshot",  # librdkafka wants one; assign() never joins the group
    "enable.partition.eof": True,
    "logger": logging.getLogger("visiontrain.kafka"),  # librdkafka's own lines through logging, not stderr
    "log_level": 2,  # critical only: a broker that is down is one DataError, not a line per reconnect
}                    # (data.kafka.log_level=7 to debug the client)


@dataclass
class _Partition:
    """One partition's progress: its start watermarks, what was read, and whether its end was reached."""

    number: int
    low: int
    high: int
    first_offset: int | None = None
    last_offset: int | None = None
    messages: int = 0
    rows: int = 0
    not_rows: int = 0
    at_end: bool = field(init=False)

    def __post_init__(self) -> None:
        self.at_end = self.high <= self.low  # empty when the read started: nothing to wait for

    def describe(self) -> dict[str, Any]:
        return {"partition": self.number, "first_offset": self.first_offset, "last_offset": self.last_offset,
                "messages": self.messages, "rows": self.rows, "not_rows": self.not_rows,
                "low_watermark": self.low, "high_watermark": self.high}


@dataclass(frozen=True)
class SnapshotLimits:
    """How long to wait for the broker and how much a snapshot may hold (``data.kafka_timeout_s``,
    ``data.max_rows``, ``data.kafka_max_message_bytes``); ``late_s``: see :data:`LATE_S`."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    max_rows: int = DEFAULT_MAX_ROWS
    max_message_bytes: int = KAFKA_MAX_MESSAGE_BYTES
    late_s: float = LATE_S

    @classmethod
    def of(cls, options: SourceOptions) -> SnapshotLimits:
        """The limits ``data`` sets (``data.kafka_timeout_s`` null: the default wait)."""
        timeout = DEFAULT_TIMEOUT_S if options.kafka_timeout_s is None else options.kafka_timeout_s
        return cls(timeout_s=timeout, max_rows=options.max_rows, max_message_bytes=options.kafka_max_message_bytes)


def read_kafka_snapshot(url: str, overrides: Mapping[str, Any] | None = None,
                        timeout_s: float = DEFAULT_TIMEOUT_S, *, limits: SnapshotLimits | None = None) -> SourceRead:
    """Every message of the topic at ``url`` up to its end at the start, as raw rows with their lineage.

    ``overrides``: librdkafka settings (``data.kafka``); ``timeout_s``: how long to wait for the broker (for
    metadata, and with no message and no end of a partition in sight) before failing with a DataError;
    ``limits``, when given, its ``timeout_s`` instead, and the bounds on rows and message sizes.
    """
    limits = limits or SnapshotLimits(timeout_s=timeout_s)
    address = KafkaAddress.parse(url, "data.source")
    settings = client_settings(address.bootstrap, flat_settings(overrides), SNAPSHOT_DEFAULTS, key="data.kafka")
    client_errors = _ClientErrors(address, settings.get(RECEIVE_LIMIT, 100_000_000))
    try:
        consumer = Consumer({**settings, "error_cb": client_errors})
    except KafkaException as error:  # a misspelt or invalid librdkafka setting
        raise DataError(f"{address}: the Kafka client refused its settings ({error.args[0].str()}); check "
                        "data.kafka.") from None
    started_ms = time.time() * 1000
    try:
        partitions = _start_positions(consumer, address, limits.timeout_s)
        reading = _Reading(limits, started_ms, client_errors)
        return _read(consumer, address, partitions, reading)
    finally:
        consumer.close()


def _start_positions(consumer: Consumer, address: KafkaAddress, timeout_s: float) -> list[_Partition]:
    """The topic's partitions with their low and high watermarks now: the snapshot's extent."""
    try:
        metadata = consumer.list_topics(address.topic, timeout=timeout_s)
    except KafkaException as error:
        raise DataError(f"{address}: no answer from the Kafka broker within {timeout_s:g} s "
                        f"({error.args[0].str()}); check the host and port in data.source, that the broker is "
                        "up, or raise data.kafka_timeout_s.") from None
    topic = metadata.topics.get(address.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        reason = topic.error.str() if topic is not None and topic.error is not None else "no partitions"
        raise DataError(f"{address}: cannot read the topic {address.topic!r} ({reason}); check the topic name in "
                        "data.source.")
    positions = []
    for number in sorted(topic.partitions):
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(address.topic, number), timeout=timeout_s)
        except KafkaException as error:
            raise DataError(f"{address}: the broker did not say where partition {number} ends within "
                            f"{timeout_s:g} s ({error.args[0].str()}).") from None
        positions.append(_Partition(number, low, high))
    return positions


class _ClientErrors:
    """librdkafka's own errors (its ``error_cb``). One matters here: a fetch answer larger than
    ``receive.message.max.bytes``, which a single message over it causes; the client then retries for ever, and
    the read would see only "Bad message format" or no progress at all."""

    def __init__(self, address: KafkaAddress, receive_limit: Any) -> None:
        self.address, self.receive_limit = address, receive_limit
        self.too_large: str | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.code() == KafkaError._BAD_MSG and "Invalid response size" in error.str():
            self.too_large = error.str()

    def check(self) -> None:
        if self.too_large is None:
            return
        size = re.search(r"Invalid response size (\d+)", self.too_large)
        answer = f"an answer of {int(size.group(1)):,} bytes" if size else self.too_large
        raise DataError(f"{self.address}: a message is too large for the Kafka client to fetch ({answer}, over "
                        f"its {RECEIVE_LIMIT}={self.receive_limit}); raise data.kafka.{RECEIVE_LIMIT} above the "
                        "message's size if it belongs in the topic (a message over data.kafka_max_message_bytes "
                        "is then listed in source_rejects.csv, not read), or remove it from the topic.")


@dataclass
class _Reading:
    """The limits of one snapshot and what it collected: rows, their origin, and what held no row."""

    limits: SnapshotLimits
    started_ms: float  # when the read started (ms since the epoch, as message timestamps are)
    client_errors: _ClientErrors
    rows: list[dict[str, Any]] = field(default_factory=list)
    lineage: list[tuple[str, int, int, int]] = field(default_factory=list)
    not_rows: list[dict[str, Any]] = field(default_factory=list)

    def take(self, message: Message, partition: _Partition, address: KafkaAddress) -> None:
        """A message's rows, or the reason it holds none (too large to parse, not JSON, ...)."""
        offset = message.offset()
        partition.first_offset = offset if partition.first_offset is None else partition.first_offset
        partition.last_offset, partition.messages = offset, partition.messages + 1
        size, cap = len(message.value() or b""), self.limits.max_message_bytes
        if size > cap:
            partition.not_rows += 1
            self.not_rows.append({
                "topic": address.topic, "partition": partition.number, "offset": offset, "index_in_message": 0,
                "reason": f"a message of {size:,} bytes, over data.kafka_max_message_bytes={cap} "
                          f"({size_text(cap)}): not read; raise data.kafka_max_message_bytes to use it",
                "key": origin_of(message).key, "value": _text(message.value()[:PREVIEW_BYTES]) + "..."})
            return
        for record in table_records(message):
            if isinstance(record, RejectedMessage):
                partition.not_rows += 1
                self.not_rows.append({"topic": address.topic, "partition": partition.number, "offset": offset,
                                      "index_in_message": record.origin.row, "reason": record.reason,
                                      "key": record.origin.key, "value": _text(record.original)})
            else:
                partition.rows += 1
                self.rows.append(record.payload)
                self.lineage.append((address.topic, partition.number, offset, record.origin.row))
        if len(self.rows) > self.limits.max_rows:
            raise too_many_rows(str(address), self.limits.max_rows, "train on a topic holding fewer messages")

    def produced_late(self, message: Message) -> bool:
        """Whether ``message`` was stamped after the read started (and ``LATE_S``), by its timestamp."""
        kind, stamp = message.timestamp()
        return kind != TIMESTAMP_NOT_AVAILABLE and stamp > self.started_ms + self.limits.late_s * 1000


def _read(consumer: Consumer, address: KafkaAddress, partitions: list[_Partition], reading: _Reading) -> SourceRead:
    """Read each partition until its end-of-partition event comes at or past its start high watermark, or a
    message produced after the start is reached past it.

    Why both: the high watermark read at the start says where the snapshot ends, but on Tansu it is the base
    offset of the last record batch + 1, not the last offset + 1, so stopping there would drop the rest of the
    last batch (10 messages produced together move it by 1). The end-of-partition event says the log present
    was read to its end, that batch included; it is not trusted below the start watermark, which is what the
    broker said the partition held when the read started: an end reported short of it (a leader changed to a
    lagging replica, say) would end the snapshot with rows missing, so the read waits on instead.
    Messages produced after the start may be read too; they are rows like the others. But a topic that grows
    faster than it is read would never show its end: past the start watermark, the first message stamped more
    than ``LATE_S`` after the start ends the partition (not read). On Apache Kafka everything past the start
    watermark was produced after the start, so stopping anywhere past it loses nothing; on Tansu the last batch
    present at the start is read whole unless its producer's clock ran ``LATE_S`` ahead of this machine's.
    """
    by_number = {partition.number: partition for partition in partitions}
    consumer.assign([TopicPartition(address.topic, p.number, p.low) for p in partitions if not p.at_end])
    timeout_s = reading.limits.timeout_s
    quiet_since = time.monotonic()
    while not all(p.at_end for p in partitions):
        batch = consumer.consume(BATCH, timeout=0.5)
        reading.client_errors.check()
        if batch:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > timeout_s:
            waiting = [str(p.number) for p in partitions if not p.at_end]
            raise DataError(f"{address}: no message and no end of partition {', '.join(waiting)} within "
                            f"{timeout_s:g} s; check that the broker is up, or raise data.kafka_timeout_s.")
        for message in batch:
            partition = by_number[message.partition()]
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    reading.client_errors.check()
                    raise DataError(f"{address}: reading partition {partition.number} failed ({error.str()}).")
                if message.offset() >= partition.high and not partition.at_end:
                    _end(consumer, address, partition)
                continue
            if partition.at_end:
                continue  # produced after this partition's snapshot ended
            if message.offset() >= partition.high and reading.produced_late(message):
                _end(consumer, address, partition)
                continue
            reading.take(message, partition, address)
    if not reading.rows:
        raise DataError(f"{address}: the topic holds no rows ({sum(p.messages for p in partitions)} messages, "
                        f"{len(reading.not_rows)} of them not rows); point data.source at the data.")
    return SourceRead(frame=pd.DataFrame(reading.rows), lineage=_lineage(reading.lineage),
                      not_rows=_not_rows(reading.not_rows), report=_report(address, partitions, reading.started_ms))


def _end(consumer: Consumer, address: KafkaAddress, partition: _Partition) -> None:
    """The partition's snapshot is complete: fetch no further from it."""
    partition.at_end = True
    consumer.pause([TopicPartition(address.topic, partition.number)])


def _lineage(entries: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(entries, columns=["topic", "partition", "offset", "index_in_message"])
    frame.insert(0, "row", range(1, len(frame) + 1))
    return frame


def _not_rows(entries: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(entries, columns=["topic", "partition", "offset", "index_in_message", "reason", "key",
                                          "value"])


def _report(address: KafkaAddress, partitions: list[_Partition], started_ms: float) -> dict[str, Any]:
    """The data report's ``source``: the topic, when the snapshot started, and, per partition, the offsets read
    and what they held."""
    described = [p.describe() for p in partitions]
    read = sum(p.messages for p in partitions)
    return {"kind": "kafka", "description": f"Kafka topic {address.topic} at {address.bootstrap}",
            "url": str(address), "topic": address.topic, "started_ms": int(started_ms), "read": read,
            "rows": sum(p.rows for p in partitions), "not_rows": sum(p.not_rows for p in partitions),
            "partitions": described}


def _text(value: bytes | None) -> str | None:
    """A message (or an item of it) as text for the rejects file: bytes that are not UTF-8 escaped, not lost."""
    return None if value is None else value.decode("utf-8", errors="backslashreplace")
