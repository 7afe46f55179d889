"""conf/stream.yaml, checked before anything connects: every mistake is a ConfigError naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontrain.config.reading import pixel_limit
from visiontrain.core.image_decode import PixelLimit
from visiontrain.core.kafka import KafkaAddress, flat_settings
from visiontrain.errors import ConfigError


def _positive(cfg: Any, key: str, default: float, kind: type = int, allow_zero: bool = False) -> Any:
    """A number above 0 (or >= 0); a whole one for ``kind=int``: null or 2.5 is a mistake, not 256 or 2."""
    value = cfg.get(key, default)
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not (value >= 0 if allow_zero else value > 0) or (kind is int and value != int(value)):
        whole = "a whole number" if kind is int else "a number"
        raise ConfigError(key, f"must be {whole} {'>= 0' if allow_zero else 'above 0'}, got {value!r}",
                          f"{key}={default}")
    return kind(value)


def _text(cfg: Any, key: str) -> str:
    """A text option that must not be empty (the CLI checks it first; this never falls back to a default)."""
    value = cfg.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be non-empty text, got {value!r}", f"{key}=<text>")
    return value


def _optional_address(cfg: Any, key: str) -> KafkaAddress | None:
    value = cfg.get(key)
    return KafkaAddress.parse(value, key) if value else None


@dataclass(frozen=True)
class StreamSettings:
    source: KafkaAddress
    group: str
    output: KafkaAddress | None
    dead_letter: KafkaAddress | None
    alerts: KafkaAddress | None
    sink: str | None
    sink_table: str
    rejects: Path
    max_batch_size: int = 256
    max_wait_ms: float = 20.0
    image_field: str = "image"
    top_k: int = 5
    pixel_limit: PixelLimit = PixelLimit()  # max_image_pixels
    drift_window: int = 0
    drift_thresholds: tuple[float, float, float] = (0.25, 0.01, 0.1)  # PSI, KS p-value, KS statistic
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    lag_interval_s: float = 5.0
    flush_timeout_s: float = 30.0
    idle_exit_s: float | None = None
    max_messages: int | None = None
    kafka: dict[str, Any] = field(default_factory=dict)
    consumer: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any) -> StreamSettings:
        from omegaconf import OmegaConf

        source = KafkaAddress.parse(cfg.get("source"), "source")
        group = cfg.get("group")
        if not group or not isinstance(group, str):
            raise ConfigError("group", "is required: processes with one group id share the topic's partitions",
                              "group=churn-scoring")
        output, sink = _optional_address(cfg, "output"), cfg.get("sink")
        if output is None and not sink:
            raise ConfigError("output", "is required unless a sink stores the results",
                              "output=kafka://localhost:9092/<results topic> (and/or sink=<folder | file.db | URL>)")
        if output is not None and output.topic == source.topic and output.bootstrap == source.bootstrap:
            raise ConfigError("output", "is the source topic: results would be read back as inputs",
                              "output=kafka://.../<another topic>")
        port = cfg.get("metrics_port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536):
            raise ConfigError("metrics_port", f"must be a port number (0: any free one) or null, got {port!r}",
                              "metrics_port=9108")
        sections = {}
        for key in ("kafka", "consumer", "producer"):
            value = cfg.get(key) or {}
            if not hasattr(value, "items"):
                raise ConfigError(key, f"must be a mapping of librdkafka settings, got {value!r}",
                                  f"{key}.<setting>=<value>, e.g. kafka.security.protocol=SASL_SSL")
            sections[key] = flat_settings(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
        idle = cfg.get("idle_exit_s")
        limit = cfg.get("max_messages")
        rejects = Path(str(cfg.rejects)) if cfg.get("rejects") else Path(str(cfg.paths.run_dir)) / "rejects.jsonl"
        return cls(source=source, group=group, output=output, dead_letter=_optional_address(cfg, "dead_letter"),
                   alerts=_optional_address(cfg, "alerts"), sink=str(sink) if sink else None,
                   sink_table=_text(cfg, "sink_table"), rejects=rejects.expanduser(),
                   max_batch_size=_positive(cfg, "max_batch_size", 256),
                   max_wait_ms=_positive(cfg, "max_wait_ms", 20.0, float),
                   image_field=_text(cfg, "image_field"), top_k=_positive(cfg, "top_k", 5),
                   pixel_limit=pixel_limit(cfg.get("max_image_pixels"), "max_image_pixels"),
                   drift_window=_positive(cfg, "drift_window", 0, allow_zero=True), metrics_port=port,
                   drift_thresholds=(_positive(cfg, "psi_threshold", 0.25, float),
                                     _positive(cfg, "ks_pvalue", 0.01, float),
                                     _positive(cfg, "ks_statistic", 0.1, float)),
                   metrics_host=_text(cfg, "metrics_host"),
                   lag_interval_s=_positive(cfg, "lag_interval_s", 5.0, float),
                   flush_timeout_s=_positive(cfg, "flush_timeout_s", 30.0, float),
                   idle_exit_s=None if idle is None else _positive(cfg, "idle_exit_s", 10.0, float),
                   max_messages=None if limit is None else _positive(cfg, "max_messages", 1000), **sections)
