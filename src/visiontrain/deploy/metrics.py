"""Prometheus metrics of ``serve`` and ``stream`` (prometheus-client): traffic, latency, batches, lag, drift.

Each app or process object owns its own ``CollectorRegistry``, never the library's global one, so several
apps in one process (the tests, a notebook) do not collide and nothing else in the process leaks into the
exposition. Both kinds expose ``visiontrain_model_info`` (which file, which version, its sha256) and the drift
gauges of :class:`visiontrain.monitoring.rolling.RollingDrift` windows.

``serve registry=...`` serves several versions at once: its metrics are *versioned* (:class:`RolloutMetrics`):
every scoring metric and the request counters carry a ``version`` label (``churn:v3``, as responses name it),
``visiontrain_model_info`` has one series per loaded version, and the rollout adds its own (routing by role,
shadow comparisons and drops, registry switches and errors).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import start_http_server

if TYPE_CHECKING:
    from visiontrain.inference.onnx_model import OnnxModel
    from visiontrain.monitoring.rolling import WindowResult

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)  # inputs per scored batch
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # 1 ms .. 10 s
MESSAGE_OUTCOMES = ("scored", "rejected")
REQUEST_PATHS = ("/predict", "/health", "/metadata", "/metrics")  # other paths share the label "other"


def model_labels(model: OnnxModel) -> dict[str, str]:
    """``model_info``'s labels: file name, the version it says it is (its visiontrain release, else the run
    folder its checkpoint came from), its sha256 and task."""
    metadata = model.metadata
    checkpoint = Path(metadata.source_checkpoint) if metadata.source_checkpoint else None
    run = checkpoint.parent.parent.name if checkpoint and checkpoint.parent.name == "checkpoints" else ""
    return {"model": model.path.name, "version": metadata.visiontrain_version or run,
            "sha256": model.version, "task": metadata.task}


def registered_labels(model: OnnxModel, name: str, label: str) -> dict[str, str]:
    """``model_info``'s labels for a registered version: the registered name, the version as responses name it
    (``churn:v3``), its sha256 and task."""
    return {"model": name, "version": label, "sha256": model.version, "task": model.metadata.task}


MODEL_INFO_LABELS = ("model", "version", "sha256", "task")


class ModelMetrics:
    """What serve and stream share: the registry, ``visiontrain_model_info``, model calls and drift windows.

    ``model``: the one model a process scores (its ``model_info`` is set now); ``versioned``: several versions
    at once, each scoring metric labelled by ``version`` (see :meth:`loaded`)."""

    def __init__(self, model: OnnxModel | None = None, versioned: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.versioned = versioned
        by_version = ["version"] if versioned else []
        self.model_info = Gauge("visiontrain_model_info", "The model being served (value always 1; one series per "
                                "loaded version when serving from a registry)", MODEL_INFO_LABELS,
                                registry=self.registry)
        if model is not None:
            self.model_info.labels(**model_labels(model)).set(1)
        self.batch_size = Histogram("visiontrain_batch_size", "Inputs per scored batch (serve: the requests "
                                    "batched together; stream: one micro-batch)", by_version,
                                    buckets=BATCH_SIZES, registry=self.registry)
        self.batch_seconds = Histogram("visiontrain_batch_seconds", "Seconds to score one batch", by_version,
                                       buckets=SECONDS, registry=self.registry)
        self.inputs = Counter("visiontrain_inputs", "Inputs (table rows, images) scored by the model", by_version,
                              registry=self.registry)
        self.drift_psi = Gauge("visiontrain_drift_psi", "PSI of the last drift window against the reference",
                               ["feature"], registry=self.registry)
        self.drift_ks = Gauge("visiontrain_drift_ks_statistic", "KS statistic of the last drift window "
                              "(numeric features)", ["feature"], registry=self.registry)
        self.drift_drifted = Gauge("visiontrain_drift_drifted", "1 when the feature crossed a threshold in the "
                                   "last drift window, else 0", ["feature"], registry=self.registry)
        self.drift_windows = Counter("visiontrain_drift_windows", "Drift windows compared",
                                     registry=self.registry)
        self.drift_alerts = Counter("visiontrain_drift_alerts", "Drift windows in which the feature crossed a "
                                    "threshold", ["feature"], registry=self.registry)
        self.window_inputs = Gauge("visiontrain_window_inputs", "Inputs scored or rejected in the last drift "
                                   "window", ["outcome"], registry=self.registry)

    def scored(self, size: int, seconds: float, version: str = "") -> None:
        """One model call of ``size`` inputs that took ``seconds`` (by ``version`` when versioned)."""
        self._of(self.batch_size, version).observe(size)
        self._of(self.batch_seconds, version).observe(seconds)
        self._of(self.inputs, version).inc(size)

    def loaded(self, labels: dict[str, str]) -> None:
        """A version now served (``labels``: :func:`registered_labels`)."""
        self.model_info.labels(**labels).set(1)

    def unloaded(self, labels: dict[str, str]) -> None:
        """A version no longer served: its ``model_info`` series goes (its counters stay, as counters do)."""
        try:
            self.model_info.remove(*(labels[name] for name in MODEL_INFO_LABELS))
        except KeyError:  # never set
            pass

    def _of(self, metric: Any, version: str) -> Any:
        return metric.labels(version=version) if self.versioned else metric

    def drift(self, result: WindowResult) -> None:
        """Publish a finished window: every feature's PSI (and KS), which drifted, the window's counts."""
        self.drift_windows.inc()
        for feature, value in result.psi.items():
            self.drift_psi.labels(feature=feature).set(value)
            self.drift_drifted.labels(feature=feature).set(1 if feature in result.drifted else 0)
        for feature, value in result.ks_statistic.items():
            self.drift_ks.labels(feature=feature).set(value)
        for feature in result.drifted:
            self.drift_alerts.labels(feature=feature).inc()
        self.window_inputs.labels(outcome="scored").set(result.inputs)
        self.window_inputs.labels(outcome="rejected").set(result.rejected)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format of this registry and its content type, for a ``/metrics`` answer."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def request_outcome(status: int) -> str:
    return "ok" if status < 400 else "client_error" if status < 500 else "server_error"


class ServeMetrics(ModelMetrics):
    """``visiontrain serve``: requests by path, outcome and status code, their latency, plus the shared set
    (versioned: by the ``X-Model-Version`` that answered too, empty where none did)."""

    def __init__(self, model: OnnxModel | None = None, versioned: bool = False) -> None:
        super().__init__(model, versioned)
        by_version = ["version"] if versioned else []
        self.requests = Counter("visiontrain_requests", "HTTP requests answered, by outcome "
                                "(ok, client_error, server_error) and status code",
                                ["path", "outcome", "code", *by_version], registry=self.registry)
        self.request_seconds = Histogram("visiontrain_request_seconds", "Seconds from a request's arrival to "
                                         "its answer", ["path", *by_version], buckets=SECONDS,
                                         registry=self.registry)

    def request(self, path: str, status: int, seconds: float, version: str = "") -> None:
        path = path if path in REQUEST_PATHS else "other"  # a label per unknown path would grow without bound
        by_version = {"version": version} if self.versioned else {}
        self.requests.labels(path=path, outcome=request_outcome(status), code=str(status), **by_version).inc()
        self.request_seconds.labels(path=path, **by_version).observe(seconds)


class RolloutMetrics(ServeMetrics):
    """``visiontrain serve registry=...``: the versioned serve set, plus what the rollout does: inputs by the
    version and role that scored them, shadow comparisons and drops, alias switches and registry errors."""

    def __init__(self) -> None:
        super().__init__(None, versioned=True)
        self.routed = Counter("visiontrain_routed_inputs", "Inputs scored, by version and role (production, "
                              "candidate: answered; shadow: scored on a copy, never returned)", ["version", "role"],
                              registry=self.registry)
        self.shadow_comparisons = Counter("visiontrain_shadow_comparisons", "Shadow predictions compared with "
                                          "production's (classifiers: the same label / top1 or not)",
                                          ["version", "agreed"], registry=self.registry)
        self.shadow_dropped = Counter("visiontrain_shadow_dropped", "Requests whose shadow copy was dropped: the "
                                      "shadow queue was full", ["version"], registry=self.registry)
        self.shadow_failures = Counter("visiontrain_shadow_failures", "Shadow copies the candidate could not "
                                       "score (rows its input rules reject, a model error)", ["version"],
                                       registry=self.registry)
        self.alias_version = Gauge("visiontrain_registry_alias", "Which version each alias serves (value always "
                                   "1)", ["alias", "version"], registry=self.registry)
        self.revision = Gauge("visiontrain_registry_revision", "The alias revision being served",
                              registry=self.registry)
        self.switches = Counter("visiontrain_registry_switches", "Routing switches to a new alias revision",
                                registry=self.registry)
        self.registry_errors = Counter("visiontrain_registry_errors", "Registry reads or version loads that "
                                       "failed (the routing in use was kept)", ["stage"], registry=self.registry)

    def loaded(self, labels: dict[str, str]) -> None:
        """A version now served; its shadow counters start at 0, so a dashboard sees them before any copy."""
        super().loaded(labels)
        self.shadow_dropped.labels(version=labels["version"])
        self.shadow_failures.labels(version=labels["version"])

    def routed_inputs(self, version: str, role: str, count: int) -> None:
        self.routed.labels(version=version, role=role).inc(count)

    def shadow_compared(self, version: str, agreed: int, disagreed: int) -> None:
        self.shadow_comparisons.labels(version=version, agreed="true").inc(agreed)
        self.shadow_comparisons.labels(version=version, agreed="false").inc(disagreed)

    def routing(self, revision: int, aliases: dict[str, str]) -> None:
        """The routing now served: its revision and which version each alias answers with."""
        self.revision.set(revision)
        self.alias_version.clear()
        for alias, label in aliases.items():
            self.alias_version.labels(alias=alias, version=label).set(1)

    def registry_error(self, stage: str) -> None:
        self.registry_errors.labels(stage=stage).inc()


VERSION_HEADER = "X-Model-Version"  # the response header naming the version(s) that answered


class RequestMetrics:
    """ASGI middleware recording every HTTP request's status and time in ``metrics`` (pure ASGI: no buffering),
    with the version the answer names in its ``X-Model-Version`` header when the metrics are versioned.

    An exception that escapes the app is recorded as the 500 Starlette's outer error handler answers with.
    """

    def __init__(self, app: Callable, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, version = time.perf_counter(), 500, ""
        header = VERSION_HEADER.lower().encode()

        async def send_recorded(message: dict[str, Any]) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                status = int(message["status"])
                version = next((value.decode("latin-1") for name, value in message.get("headers", ())
                                if name.lower() == header), "")
            await send(message)

        try:
            await self.app(scope, receive, send_recorded)
        finally:
            self.metrics.request(scope["path"], status, time.perf_counter() - started, version)


class StreamMetrics(ModelMetrics):
    """``visiontrain stream``: messages by outcome and partition, end-to-end latency, consumer lag, plus the
    shared set, exposed on its own HTTP port (:meth:`serve_http`)."""

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(model)
        self.message_count = Counter("visiontrain_messages", "Messages consumed, by outcome (scored, rejected)",
                                     ["outcome", "topic", "partition"], registry=self.registry)
        self.end_to_end = Histogram("visiontrain_end_to_end_seconds", "Seconds from an input message's "
                                    "timestamp to its result being committed", buckets=SECONDS,
                                    registry=self.registry)
        self.consumer_lag = Gauge("visiontrain_consumer_lag", "Messages behind the partition's high watermark",
                                  ["topic", "partition"], registry=self.registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def messages(self, outcome: str, topic: str, partition: int, count: int = 1) -> None:
        if outcome not in MESSAGE_OUTCOMES:
            raise ValueError(f"message outcome must be one of {', '.join(MESSAGE_OUTCOMES)}, got {outcome!r}")
        self.message_count.labels(outcome=outcome, topic=topic, partition=str(partition)).inc(count)

    def batch(self, size: int, seconds: float) -> None:
        """One scored micro-batch: its size and its model and processing time."""
        self.scored(size, seconds)

    def latency(self, seconds: float) -> None:
        self.end_to_end.observe(seconds)

    def lag(self, topic: str, partition: int, messages: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(messages)

    def serve_http(self, host: str, port: int) -> int:
        """Serve ``/metrics`` (any path, as prometheus-client does) on ``host:port`` in a daemon thread; the port
        bound (``port=0``: a free one)."""
        if self._server is not None:
            raise RuntimeError("serve_http was already called: one metrics server per StreamMetrics")
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop the HTTP server, if one runs (a scrape in progress finishes first)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server, self._thread = None, None
