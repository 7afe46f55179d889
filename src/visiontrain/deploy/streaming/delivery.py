"""Results and dead letters produced to Kafka (or rejects to a file), confirmed before an offset is committed.

``flush()`` waits for every delivery report and raises :class:`DeliveryFailed` if any message was refused,
so the consumer commits only what the broker acknowledged (``acks=all``, idempotent producer).
Dead letters keep the original bytes as their value and say why in headers (``visiontrain.reason``) next to
where they came from (``visiontrain.topic``, ``.partition``, ``.offset``, ``.row``).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from visiontrain.core.kafka_records import RejectedMessage
from visiontrain.errors import DeliveryFailed


class Delivery:
    def __init__(self, settings: dict[str, Any]) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(settings)
        self.errors: list[str] = []

    def _report(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(f"{message.topic()}: {error}")

    def send(self, topic: str, key: str | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
             ) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=None if key is None else key.encode(),
                                      headers=headers, on_delivery=self._report)
                break
            except BufferError:  # the local queue is full: let deliveries drain, then retry
                self.producer.poll(0.1)
        self.producer.poll(0)

    def dead_letter(self, topic: str, rejected: RejectedMessage) -> None:
        origin = rejected.origin
        headers = [("visiontrain.reason", rejected.reason.encode()), ("visiontrain.topic", origin.topic.encode()),
                   ("visiontrain.partition", str(origin.partition).encode()),
                   ("visiontrain.offset", str(origin.offset).encode()), ("visiontrain.row", str(origin.row).encode())]
        self.send(topic, origin.key, rejected.original, headers)

    def flush(self, timeout_s: float) -> None:
        remaining = self.producer.flush(timeout_s)
        if remaining or self.errors:
            errors, self.errors = self.errors, []
            raise DeliveryFailed(f"{remaining} messages undelivered after {timeout_s:g} s; "
                                 f"{len(errors)} refused{': ' + errors[0] if errors else ''}")


class RejectsFile:
    """Rejects as JSON lines (origin, reason, the original bytes in base64), synced to disk before a commit."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")

    def write(self, rejected: list[RejectedMessage]) -> None:
        for item in rejected:
            self._file.write(json.dumps({**item.origin.as_dict(), "reason": item.reason,
                                         "original_base64": base64.b64encode(item.original).decode()}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
