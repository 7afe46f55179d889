"""The loop of `visiontrain stream` (the command: :mod:`visiontrain.commands.stream`): consume a micro-batch,
score it, deliver, store, then commit.

At least once, nothing lost: an offset is committed only after the batch's results and dead letters are
acknowledged by the broker and written to the sink, so a process killed at any moment (kill -9 included) leaves
the uncommitted messages to be scored again by whoever owns the partition next: at most one batch twice, which
the sink absorbs (idempotent on topic, partition, offset, row). SIGTERM and Ctrl-C finish the batch in flight,
commit, leave the group and exit 0. Scaling is Kafka's: processes with one group id share the partitions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from visiontrain.config.commands import StreamOptions
from visiontrain.core.kafka import CONSUMER_DEFAULTS, PRODUCER_DEFAULTS, client_settings, describe_settings
from visiontrain.core.kafka_records import Record, RejectedMessage, image_records, table_records
from visiontrain.deploy.streaming.delivery import Delivery, RejectsFile
from visiontrain.deploy.streaming.scoring import BatchOutcome, Scorer
from visiontrain.deploy.streaming.sinks import open_sink, sink_row
from visiontrain.inference.onnx_model import IMAGE, OnnxModel

log = logging.getLogger("visiontrain.stream")


class PartitionLedger:
    """Per partition: messages read, records scored and rejected (in = scored + rejected, always)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], dict[str, int]] = defaultdict(
            lambda: {"messages": 0, "scored": 0, "rejected": 0})

    def add(self, topic: str, partition: int, what: str, count: int = 1) -> None:
        self.counts[(topic, partition)][what] += count

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {f"{topic}[{partition}]": dict(value) for (topic, partition), value in sorted(self.counts.items())}

    def total(self, what: str) -> int:
        return sum(value[what] for value in self.counts.values())


class StopSignal:
    """SIGTERM / SIGINT set a flag the loop checks between batches: the batch in flight always finishes."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._set)

    def _set(self, number: int, _frame: Any) -> None:
        self.signal_name = signal.Signals(number).name
        self.event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()


class StreamWorker:
    """One consumer of the group: the batch cycle, its ledger, and the optional metrics and drift windows."""

    def __init__(self, model: OnnxModel, settings: StreamOptions, rejects: Path) -> None:
        """``rejects``: the file rejects go to without a dead letter topic."""
        from confluent_kafka import Consumer

        self.model, self.settings = model, settings
        self.source, self.output = settings.source_address, settings.output_address
        self.dead_letter, self.alerts_topic = settings.dead_letter_address, settings.alerts_address
        self.scorer = Scorer(model, settings.max_batch_size, settings.top_k, settings.pixel_limit)
        self.read = (lambda m: image_records(m, settings.image_field)) if model.kind == IMAGE else table_records
        self.version = f"sha256:{model.version}"
        consumer_settings = client_settings(self.source.bootstrap, {**settings.kafka, **settings.consumer},
                                            {**CONSUMER_DEFAULTS, "group.id": settings.group})
        self.consumer = Consumer(consumer_settings)
        self.deliveries: dict[str, Delivery] = {}
        for address in (self.output, self.dead_letter, self.alerts_topic):
            if address is not None and address.bootstrap not in self.deliveries:
                self.deliveries[address.bootstrap] = Delivery(client_settings(
                    address.bootstrap, {**settings.kafka, **settings.producer}, PRODUCER_DEFAULTS))
        self.rejects_file = None if self.dead_letter else RejectsFile(rejects)
        self.sink = open_sink(settings.sink, settings.sink_table)
        self.ledger = PartitionLedger()
        self.batches = 0
        self.metrics_port: int | None = None
        self.metrics = self._metrics()
        self.drift = self._drift()
        self.alerts = 0
        self._last_lag = 0.0
        self.stopped_by = "SIGTERM or Ctrl-C"
        self._joined, self._last_activity = False, time.monotonic()  # idle_exit_s counts from the first assignment
        log.debug("consumer settings: %s", describe_settings(consumer_settings))

    def _metrics(self) -> Any:
        if self.settings.metrics_port is None:
            return None
        from visiontrain.deploy.metrics import StreamMetrics

        metrics = StreamMetrics(self.model)
        self.metrics_port = metrics.serve_http(self.settings.metrics_host, self.settings.metrics_port)
        return metrics

    def _drift(self) -> Any:
        if not self.settings.drift_window:
            return None
        reference = self.model.metadata.reference_stats
        if not reference:
            log.warning("drift_window is set but %s carries no reference statistics: no drift windows",
                        self.model.path.name)
            return None
        from visiontrain.monitoring.drift import Thresholds
        from visiontrain.monitoring.rolling import RollingDrift

        return RollingDrift(reference, self.settings.drift_window, Thresholds(*self.settings.drift_thresholds))

    # --- the loop ----------------------------------------------------------------------------------------

    def run(self, stop: StopSignal) -> None:
        settings = self.settings
        self.consumer.subscribe([self.source.topic], on_assign=self._assigned, on_revoke=self._revoked)
        try:
            while not stop.stopped:
                if settings.max_messages is not None and self.ledger.total("messages") >= settings.max_messages:
                    self.stopped_by = f"max_messages ({settings.max_messages})"
                    break
                wanted = settings.max_batch_size if settings.max_messages is None else \
                    min(settings.max_batch_size, settings.max_messages - self.ledger.total("messages"))
                messages = self.consumer.consume(wanted, settings.max_wait_ms / 1000.0)
                messages = [m for m in messages if self._usable(m)]
                self._maybe_report_lag()
                if not messages:
                    idle = time.monotonic() - self._last_activity
                    if settings.idle_exit_s is not None and self._joined and idle > settings.idle_exit_s:
                        self.stopped_by = f"idle_exit_s ({settings.idle_exit_s:g} s without a message)"
                        break
                    continue
                self._last_activity = time.monotonic()
                self.process(messages)
        finally:
            self.close()

    def _usable(self, message: Any) -> bool:
        error = message.error()
        if error is None:
            return True
        from confluent_kafka import KafkaError, KafkaException

        if error.code() == KafkaError._PARTITION_EOF:
            return False
        if error.fatal():
            raise KafkaException(error)
        log.warning("kafka: %s", error)
        return False

    def process(self, messages: list[Any]) -> None:
        """One batch, in the order that makes it at-least-once: score, deliver, store, commit."""
        started = time.perf_counter()
        records: list[Record] = []
        rejected: list[RejectedMessage] = []
        for message in messages:
            self.ledger.add(message.topic(), message.partition(), "messages")
            for item in self.read(message):
                (records if isinstance(item, Record) else rejected).append(item)
        outcome = self.scorer.score(records)
        rejected += outcome.rejected
        scored_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        outputs = [self._output_message(item) for item in outcome.scored]
        self._deliver(outputs, outcome, rejected)
        if self.sink is not None:
            self.sink.write([sink_row(message, item.result, scored_at)
                             for message, item in zip(outputs, outcome.scored)])
        self._commit(messages)
        self._account(outcome, rejected, time.perf_counter() - started)

    def _output_message(self, item: Any) -> dict[str, Any]:
        return {**item.carried, **item.origin.as_dict(), "model": self.model.path.name,
                "model_version": self.version, **item.result}

    def _deliver(self, outputs: list[dict[str, Any]], outcome: BatchOutcome, rejected: list[RejectedMessage]) -> None:
        settings = self.settings
        if self.output is not None:
            delivery = self.deliveries[self.output.bootstrap]
            for message, item in zip(outputs, outcome.scored):
                delivery.send(self.output.topic, item.origin.key, json.dumps(message, default=str).encode())
        if self.dead_letter is not None:
            delivery = self.deliveries[self.dead_letter.bootstrap]
            for item in rejected:
                delivery.dead_letter(self.dead_letter.topic, item)
        elif rejected and self.rejects_file is not None:
            self.rejects_file.write(rejected)
        for delivery in self.deliveries.values():
            delivery.flush(settings.flush_timeout_s)

    def _commit(self, messages: list[Any]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        ends: dict[tuple[str, int], int] = {}
        for message in messages:
            place = (message.topic(), message.partition())
            ends[place] = max(ends.get(place, -1), message.offset() + 1)
        offsets = [TopicPartition(topic, partition, end) for (topic, partition), end in ends.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:  # e.g. the group rebalanced while the batch ran
            log.warning("commit refused (%s): the partition's next owner scores this batch again; the sink "
                        "keeps one result per offset", error.args[0])

    def _account(self, outcome: BatchOutcome, rejected: list[RejectedMessage], seconds: float) -> None:
        self.batches += 1
        for item in outcome.scored:
            self.ledger.add(item.origin.topic, item.origin.partition, "scored")
        for item in rejected:
            self.ledger.add(item.origin.topic, item.origin.partition, "rejected")
        if self.metrics is not None:
            self._measure(outcome, rejected, seconds)
        if self.drift is not None and (outcome.scored or rejected):
            for window in self.drift.add(outcome.inputs, outcome.outputs, len(rejected)):
                self._window(window)

    def _measure(self, outcome: BatchOutcome, rejected: list[RejectedMessage], seconds: float) -> None:
        counts: Counter[tuple[str, str, int]] = Counter()
        now_ms = time.time() * 1000.0
        for item in outcome.scored:
            counts["scored", item.origin.topic, item.origin.partition] += 1
            if item.origin.timestamp_ms is not None:
                self.metrics.latency(max(0.0, now_ms - item.origin.timestamp_ms) / 1000.0)
        for item in rejected:
            counts["rejected", item.origin.topic, item.origin.partition] += 1
        for (outcome_name, topic, partition), count in counts.items():
            self.metrics.messages(outcome_name, topic, partition, count)
        self.metrics.batch(len(outcome.scored) + len(rejected), seconds)

    def _window(self, window: Any) -> None:
        if self.metrics is not None:
            self.metrics.drift(window)
        if not window.alert:
            log.info("%s", window.describe())
            return
        self.alerts += 1
        log.warning("%s", window.describe())
        if self.alerts_topic is not None:
            delivery = self.deliveries[self.alerts_topic.bootstrap]
            payload = {**window.as_dict(), "model": self.model.path.name, "model_version": self.version,
                       "source": str(self.source)}
            delivery.send(self.alerts_topic.topic, None, json.dumps(payload, default=float).encode())
            delivery.flush(self.settings.flush_timeout_s)

    # --- the group ---------------------------------------------------------------------------------------

    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        self._joined, self._last_activity = True, time.monotonic()
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing")

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        log.info("revoked %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing")

    def _maybe_report_lag(self) -> None:
        if self.metrics is None or time.monotonic() - self._last_lag < self.settings.lag_interval_s:
            return
        self._last_lag = time.monotonic()
        assigned = self.consumer.assignment()
        if not assigned:
            return
        for place in self.consumer.position(assigned):
            low, high = self.consumer.get_watermark_offsets(place, cached=True) or (-1, -1)
            if high >= 0 and place.offset >= 0:
                self.metrics.lag(place.topic, place.partition, max(0, high - place.offset))

    def close(self) -> None:
        self.consumer.close()  # leaves the group: its partitions move to the other members now
        for delivery in self.deliveries.values():
            delivery.flush(self.settings.flush_timeout_s)
        if self.sink is not None:
            self.sink.close()
        if self.rejects_file is not None:
            self.rejects_file.close()
        if self.metrics is not None:
            self.metrics.close()
