"""Kafka addresses and client settings shared by `visiontrain stream` and training's ``data.source=kafka://``.

An address is ``kafka://host:port[,host:port...]/topic``. Client settings are librdkafka's own names (the
``kafka:`` config section passes them through), on top of defaults chosen so a consumer joins its group and
takes over a stopped member's partitions within a few seconds. Secrets never come from config: a SASL or
SSL-key password is read from ``VISIONTRAIN_KAFKA_SASL_PASSWORD`` / ``VISIONTRAIN_KAFKA_SSL_KEY_PASSWORD``.

Production points these at a real Kafka cluster; the tests run the same client code against Tansu, a
Kafka-compatible broker (see tests/kafka_broker.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from visiontrain.errors import ConfigError

SCHEME = "kafka://"
SECRET_SETTINGS = {"sasl.password": "VISIONTRAIN_KAFKA_SASL_PASSWORD",
                   "ssl.key.password": "VISIONTRAIN_KAFKA_SSL_KEY_PASSWORD"}

# Group timing. librdkafka's session timeout (45 s) makes a new member wait about that long for its first
# partitions on a broker that delays the join until every member has rejoined (Tansu does); 6 s is the smallest
# session timeout Apache Kafka brokers accept by default (group.min.session.timeout.ms), so it works on both.
# fetch.wait.max.ms bounds how long the broker may hold a fetch open: Tansu holds it for the whole wait even when
# records arrive (librdkafka's 500 ms made the median end-to-end latency 230 ms at 1,000 rows/s; 20 ms: 75 ms).
# Apache Kafka answers as soon as records arrive, so there it only sets how often an idle partition is asked.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "fetch.wait.max.ms": 20,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,        # offsets are committed by hand, after results are safe
    "enable.auto.offset.store": False,
}
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
}


def is_kafka_url(value: Any) -> bool:
    return isinstance(value, str) and value.lower().startswith(SCHEME)


@dataclass(frozen=True)
class KafkaAddress:
    """Where a topic lives: the bootstrap servers and the topic's name."""

    bootstrap: str
    topic: str

    @classmethod
    def parse(cls, url: Any, key: str) -> KafkaAddress:
        """``kafka://host:port[,host:port]/topic``, or a ConfigError naming ``key``."""
        example = f"{key}=kafka://localhost:9092/<topic>"
        if not is_kafka_url(url):
            raise ConfigError(key, f"must be a kafka:// address, got {url!r}", example)
        parts = urlsplit(str(url))
        if parts.username or parts.password:
            raise ConfigError(key, "holds a user name or password; credentials never go in an address",
                              "set kafka.sasl.username=<user> and export VISIONTRAIN_KAFKA_SASL_PASSWORD")
        topic = parts.path.strip("/")
        servers = [server for server in parts.netloc.split(",") if server]
        if not servers or any(":" not in server or not server.rsplit(":", 1)[1].isdigit() for server in servers):
            raise ConfigError(key, f"needs host:port servers before the topic, got {parts.netloc or '(none)'!r}",
                              example)
        if not topic or "/" in topic:
            raise ConfigError(key, f"needs exactly one topic after the servers, got {parts.path or '(none)'!r}",
                              example)
        if parts.query or parts.fragment:
            raise ConfigError(key, "takes no ?options: client settings go in the kafka: section",
                              "kafka.<librdkafka setting>=<value>")
        return cls(",".join(servers), topic)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bootstrap}/{self.topic}"


def client_settings(bootstrap: str, overrides: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                    key: str = "kafka") -> dict[str, Any]:
    """librdkafka settings: ``defaults``, then the ``kafka:`` section, then secrets from the environment."""
    settings: dict[str, Any] = {**defaults}
    for name, value in (overrides or {}).items():
        name = str(name)
        if name in SECRET_SETTINGS:
            raise ConfigError(f"{key}.{name}", "is a secret and never goes in config or on the command line",
                              f"export {SECRET_SETTINGS[name]}=<the value> instead")
        if name == "bootstrap.servers":
            raise ConfigError(f"{key}.{name}", "comes from the kafka:// address",
                              "put the servers in the address: kafka://host:port/topic")
        settings[name] = value
    for name, variable in SECRET_SETTINGS.items():
        if os.environ.get(variable):
            settings[name] = os.environ[variable]
    settings["bootstrap.servers"] = bootstrap
    return settings


def describe_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as they may be printed or logged: secret values replaced."""
    return {name: "***" if name in SECRET_SETTINGS else value for name, value in settings.items()}


def flat_settings(settings: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """librdkafka's dotted names from a config section: ``+kafka.security.protocol=SSL`` on the command line
    arrives as ``{"security": {"protocol": "SSL"}}``, and librdkafka wants ``security.protocol``."""
    flat: dict[str, Any] = {}
    for name, value in (settings or {}).items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flat_settings(value, key + "."))
        else:
            flat[key] = value
    return flat
