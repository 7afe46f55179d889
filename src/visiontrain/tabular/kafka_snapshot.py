"""``data.source=kafka://host:port/topic``: a snapshot of a topic as a table for training.

Every partition is read from its earliest offset to where it ended when the read started, with a plain
consumer on assigned partitions: no consumer group is joined and no offset is committed, so a snapshot never
moves anyone's position. Messages are read into rows by the reader `visiontrain stream` uses
(:func:`visiontrain.core.kafka_records.table_records`: one object, a list of objects, or
``{"rows": [...]}``), so a topic a model trains on is one it can score; a message or list item that holds no row
is listed with its partition, offset, index and reason (:mod:`visiontrain.tabular.source_lineage`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from visiontrain.core.kafka import CONSUMER_DEFAULTS, KafkaAddress, client_settings, flat_settings
from visiontrain.core.kafka_records import Rejected, table_records
from visiontrain.errors import DataError
from visiontrain.tabular.source_lineage import SourceRead

log = logging.getLogger("visiontrain")
DEFAULT_TIMEOUT_S = 30.0
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


def read_kafka_snapshot(url: str, overrides: Mapping[str, Any] | None = None,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> SourceRead:
    """Every message of the topic at ``url`` up to its end at the start, as raw rows with their lineage.

    ``overrides``: librdkafka settings (``data.kafka``); ``timeout_s``: how long to wait for the broker (for
    metadata, and with no message and no end of a partition in sight) before failing with a DataError.
    """
    address = KafkaAddress.parse(url, "data.source")
    settings = client_settings(address.bootstrap, flat_settings(overrides), SNAPSHOT_DEFAULTS, key="data.kafka")
    try:
        consumer = Consumer(settings)
    except KafkaException as error:  # a misspelt or invalid librdkafka setting
        raise DataError(f"{address}: the Kafka client refused its settings ({error.args[0].str()}); check "
                        "data.kafka.") from None
    try:
        partitions = _start_positions(consumer, address, timeout_s)
        return _read(consumer, address, partitions, timeout_s)
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


def _read(consumer: Consumer, address: KafkaAddress, partitions: list[_Partition],
          timeout_s: float) -> SourceRead:
    """Read each partition until its end-of-partition event comes at or past its start high watermark.

    Why both: the high watermark read at the start says where the snapshot ends, but on Tansu it is the base
    offset of the last record batch + 1, not the last offset + 1, so stopping there would drop the rest of the
    last batch (10 messages produced together move it by 1). The end-of-partition event says the log present
    was read to its end, that batch included; it is not trusted below the start watermark, which is what the
    broker said the partition held when the read started: an end reported short of it (a leader changed to a
    lagging replica, say) would end the snapshot with rows missing, so the read waits on instead.
    Messages produced after the start may be read too; they are rows like the others.
    """
    by_number = {partition.number: partition for partition in partitions}
    consumer.assign([TopicPartition(address.topic, p.number, p.low) for p in partitions if not p.at_end])
    rows: list[dict[str, Any]] = []
    lineage: list[tuple[str, int, int, int]] = []
    not_rows: list[dict[str, Any]] = []
    quiet_since = time.monotonic()
    while not all(p.at_end for p in partitions):
        batch = consumer.consume(BATCH, timeout=0.5)
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
                    raise DataError(f"{address}: reading partition {partition.number} failed ({error.str()}).")
                if message.offset() >= partition.high and not partition.at_end:
                    partition.at_end = True
                    consumer.pause([TopicPartition(address.topic, partition.number)])  # fetch no further
                continue
            if partition.at_end:
                continue  # produced after this partition's snapshot ended
            offset = message.offset()
            partition.first_offset = offset if partition.first_offset is None else partition.first_offset
            partition.last_offset, partition.messages = offset, partition.messages + 1
            for record in table_records(message):
                if isinstance(record, Rejected):
                    partition.not_rows += 1
                    not_rows.append({"topic": address.topic, "partition": partition.number, "offset": offset,
                                     "index_in_message": record.origin.row, "reason": record.reason,
                                     "key": record.origin.key, "value": _text(record.original)})
                else:
                    partition.rows += 1
                    rows.append(record.payload)
                    lineage.append((address.topic, partition.number, offset, record.origin.row))
    if not rows:
        raise DataError(f"{address}: the topic holds no rows ({sum(p.messages for p in partitions)} messages, "
                        f"{len(not_rows)} of them not rows); point data.source at the data.")
    return SourceRead(frame=pd.DataFrame(rows), lineage=_lineage(lineage), not_rows=_not_rows(not_rows),
                      report=_report(address, partitions))


def _lineage(entries: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(entries, columns=["topic", "partition", "offset", "index_in_message"])
    frame.insert(0, "row", range(1, len(frame) + 1))
    return frame


def _not_rows(entries: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(entries, columns=["topic", "partition", "offset", "index_in_message", "reason", "key",
                                          "value"])


def _report(address: KafkaAddress, partitions: list[_Partition]) -> dict[str, Any]:
    """The data report's ``source``: the topic and, per partition, the offsets read and what they held."""
    described = [p.describe() for p in partitions]
    read = sum(p.messages for p in partitions)
    return {"kind": "kafka", "description": f"Kafka topic {address.topic} at {address.bootstrap}",
            "url": str(address), "topic": address.topic, "read": read,
            "rows": sum(p.rows for p in partitions), "not_rows": sum(p.not_rows for p in partitions),
            "partitions": described}


def _text(value: bytes | None) -> str | None:
    """A message (or an item of it) as text for the rejects file: bytes that are not UTF-8 escaped, not lost."""
    return None if value is None else value.decode("utf-8", errors="backslashreplace")
