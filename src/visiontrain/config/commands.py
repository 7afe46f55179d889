"""The options of `evaluate`, `export`, `predict`, `serve`, `stream`, `drift`, `models` and `retrain` as pydantic
models.

`visiontrain` checks them on the composed config before it imports the command (so before torch or onnxruntime
loads), as it checks `train`'s: each option's type, range or choices, with an example that becomes the fix.
Files an option names are checked after every type and range, so one run reports a typo in ``top_k`` even when
the model path is wrong too. Rules that need the model or the broker (a manifest's split, the output topic vs the
source) stay with the command, which runs them before any work.

These models are the settings the commands receive: the CLI parses the composed config once and passes the
model on (no command reads the raw config again). Defaults live in one place, conf/<command>.yaml: users read
and override them there (`--help`, `--cfg job`, the config reference), so every option here is required and a
key missing from a user's own config file fails naming it rather than falling back to a second default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from visiontrain.config.choices import (
    EXPORTERS,
    PREDICTION_OUTPUTS,
    PROVIDER_CHOICES,
    RETRAIN_PROMOTE_TO,
    SERVE_LOG_LEVELS,
    TTA_MODES,
)
from visiontrain.config.reading import Section, auto_or_count, existing_file
from visiontrain.config.reading import pixel_limit as read_pixel_limit
from visiontrain.config.overrides import check_no_secrets, check_override_syntax
from visiontrain.core.image_decode import DEFAULT_MAX_IMAGE_PIXELS
from visiontrain.core.kafka import KafkaAddress, flat_settings
from visiontrain.core.manifest import SPLITS
from visiontrain.errors import ConfigError

if TYPE_CHECKING:
    from visiontrain.core.image_decode import PixelLimit

MODEL_EXAMPLE = "outputs/<experiment>/runs/<time>/model.onnx"
CHECKPOINT_EXAMPLE = "outputs/<experiment>/runs/<time>/checkpoints/last.ckpt"
MAX_PORT = 65535


class CommandOptions(Section):
    """A command's top-level options. ``FILES`` / ``PATHS``: options naming a file / a file or folder that must
    exist (option -> what it names, the fix), checked once every other option has passed."""

    FILES: ClassVar[dict[str, tuple[str, str]]] = {}
    PATHS: ClassVar[dict[str, tuple[str, str]]] = {}

    @model_validator(mode="after")
    def _named_files_exist(self) -> CommandOptions:
        for name, (what, fix) in self.FILES.items():
            existing_file(self._local(name), name, what, fix)
        for name, (what, fix) in self.PATHS.items():
            existing_file(self._local(name), name, what, fix, folders=True)
        return self

    def _local(self, name: str) -> str | None:
        """The option's path; None when unset or a URL (read, and refused, by the command that reads it)."""
        path = getattr(self, name)
        return None if path is None or "://" in path else path


class FromCheckpoint(CommandOptions):
    """`evaluate` and `export`: a checkpoint, and optionally other images (or a table) to run it on."""

    ckpt: str = Field(examples=[CHECKPOINT_EXAMPLE])
    data_root: str | None = Field(examples=["/path/to/images"])
    batch_size: int = Field(ge=1, examples=["64"])

    FILES: ClassVar[dict[str, tuple[str, str]]] = {"ckpt": ("checkpoint", f"ckpt={CHECKPOINT_EXAMPLE}")}
    PATHS: ClassVar[dict[str, tuple[str, str]]] = {
        "data_root": ("data", "data_root=/path/to/images (a folder, or a manifest .csv such as a run's split.csv)")}


class EvaluateOptions(FromCheckpoint):
    """`visiontrain evaluate` (the checkpoint's own settings are checked when it is read)."""

    split: Literal["val", "test"]
    tta: Literal[TTA_MODES]  # type: ignore[valid-type]
    allow_outside_root: bool


class ExportOptions(FromCheckpoint):
    """`visiontrain export`; ``opset`` is checked against the installed torch exporter in the library checks."""

    output: str | None = Field(min_length=1, examples=["model.onnx"])
    opset: int = Field(examples=["17"])
    exporter: Literal[EXPORTERS]  # type: ignore[valid-type]
    parity_images: int = Field(ge=0, examples=["32"])
    atol: float = Field(gt=0, examples=["1e-3"])
    quantize: Literal["int8"] | None
    calibration_images: int = Field(ge=1, examples=["128"])


class OnnxOptions(CommandOptions):
    """What every command that runs an exported model takes: the file, onnxruntime's threads and execution
    providers (whether this machine has them is checked when the model is opened, before any work)."""

    model: str = Field(examples=[MODEL_EXAMPLE])
    threads: int = Field(ge=0, examples=["0"])
    providers: Literal[PROVIDER_CHOICES]  # type: ignore[valid-type]

    FILES: ClassVar[dict[str, tuple[str, str]]] = {"model": ("model", f"model={MODEL_EXAMPLE}")}


class ImageOutputs(Section):
    top_k: int = Field(ge=1, examples=["5"])


class ImagePixels(Section):
    """``max_image_pixels``: the rule every command applies to it, from core (a whole number, under Pillow's cap)."""

    max_image_pixels: Any = Field(examples=[str(DEFAULT_MAX_IMAGE_PIXELS)])

    @field_validator("max_image_pixels")
    @classmethod
    def _a_pixel_limit(cls, pixels: Any) -> Any:
        read_pixel_limit(pixels, "max_image_pixels")
        return pixels

    @property
    def pixel_limit(self) -> PixelLimit:
        """``max_image_pixels`` as core's limit, which decoding applies."""
        return read_pixel_limit(self.max_image_pixels, "max_image_pixels")


class DriftThresholds(Section):
    """When a feature counts as drifted (`drift`, and `stream`'s rolling windows)."""

    psi_threshold: float = Field(gt=0, examples=["0.25"])
    ks_pvalue: float = Field(gt=0, lt=1, examples=["0.01"])
    ks_statistic: float = Field(gt=0, lt=1, examples=["0.1"])

    @property
    def drift_thresholds(self) -> tuple[float, float, float]:
        """PSI, KS p-value, KS statistic: the arguments of monitoring's ``Thresholds``."""
        return self.psi_threshold, self.ks_pvalue, self.ks_statistic


class PredictOptions(OnnxOptions, ImageOutputs, ImagePixels):
    """`visiontrain predict`."""

    input: str = Field(examples=["<an image, image folder, image manifest or table file>"])
    split: Literal[SPLITS] | None = Field(examples=["val"])  # type: ignore[valid-type]
    allow_outside_root: bool
    output: str | None = Field(examples=["predictions.csv"])
    batch_size: int = Field(ge=1, examples=["32"])
    id_columns: list[str] | None = Field(description="a list of column names",
                                         examples=["[customerID]"])
    decode_threads: Any
    progress: bool

    PATHS: ClassVar[dict[str, tuple[str, str]]] = {
        "input": ("input", "input=<an image, image folder, image manifest or table file>")}

    @field_validator("decode_threads")
    @classmethod
    def _auto_or_a_count(cls, threads: Any) -> Any:
        return auto_or_count(threads, "decode_threads")

    @field_validator("output")
    @classmethod
    def _a_known_format(cls, output: str | None) -> str | None:
        if output is not None and not output.lower().endswith(PREDICTION_OUTPUTS):
            raise ConfigError("output", f"{output}: the format comes from the extension, one of "
                              f"{', '.join(PREDICTION_OUTPUTS)}", "output=predictions.csv (or .json, .jsonl)")
        return output


def _names(value: Any, key: str) -> tuple[str, ...]:
    """A list of names, or one name alone (``log_drop_columns=email``: a list of one, not of letters)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ConfigError(key, f"must be a list of names, got {value!r}", f"{key}=[name1,name2]")


STICKY_SOURCES = ("header", "field")  # sticky_key=header:<name> | field:<column>
HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an HTTP header name (RFC 9110's token)
STICKY_EXAMPLE = "header:X-User-Id"
REGISTRY_EXAMPLE = "registry=<the registry folder, or an fsspec URL such as s3://bucket/models> model=<a registered name>"


@dataclass(frozen=True)
class StickyKey:
    """What keeps one user on one version: an HTTP header of the request, or a field of each table row."""

    source: str  # header | field
    name: str

    @classmethod
    def parse(cls, text: str, key: str = "sticky_key") -> StickyKey:
        source, _, name = str(text).partition(":")
        source, name = source.strip().lower(), name.strip()
        if source not in STICKY_SOURCES or not name:
            raise ConfigError(key, f"must be header:<name> or field:<column>, got {text!r}",
                              f"{key}={STICKY_EXAMPLE} (or field:customerID for table rows)")
        if source == "header" and not HEADER_NAME.fullmatch(name):
            raise ConfigError(key, f"{name!r} is not an HTTP header name", f"{key}={STICKY_EXAMPLE}")
        return cls(source, name)

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


class ServeOptions(OnnxOptions, ImageOutputs, ImagePixels):
    """`visiontrain serve`; the token itself is checked when the server starts (it is never printed).

    With ``registry`` set, ``model`` names a registered model (not a file) and the rollout options apply; without
    it they must stay off. Whether the registry holds the model, its production alias and a field sticky key's
    fit with the model's kind are checked when the command opens the registry, before the server starts."""

    host: str = Field(min_length=1, examples=["127.0.0.1"])
    port: int = Field(ge=1, le=MAX_PORT, examples=["8000"])
    max_batch_size: int = Field(ge=1, examples=["32"])
    max_wait_ms: float = Field(ge=0, examples=["5"])
    max_request_mb: float = Field(gt=0, examples=["10"])
    max_rows: int = Field(ge=1, examples=["1000"])
    max_images: int = Field(ge=1, examples=["64"])
    max_request_pixels: int = Field(ge=1, examples=["100000000"])
    read_timeout_s: float = Field(gt=0, examples=["30"])
    keep_alive_s: float = Field(gt=0, examples=["5"])
    token_file: str | None
    docs: bool
    cors_origins: Any
    log_predictions: str | None = Field(min_length=1, examples=["predictions.jsonl"])
    log_drop_columns: Any
    drift_window: int = Field(ge=0, examples=["1000"])
    log_level: Literal[SERVE_LOG_LEVELS]  # type: ignore[valid-type]
    access_log: bool
    spin: bool
    registry: str | None = Field(min_length=1, examples=["/shared/models"])
    canary_share: float = Field(ge=0, le=1, examples=["0.1"])
    sticky_key: str | None = Field(examples=[STICKY_EXAMPLE])
    shadow: bool
    registry_poll_s: float = Field(gt=0, examples=["1.0"])
    registry_cache: str = Field(min_length=1, examples=["~/.cache/visiontrain/registry"])

    FILES: ClassVar[dict[str, tuple[str, str]]] = {
        **OnnxOptions.FILES, "token_file": ("token file", "token_file=<a file holding the token>, or export "
                                                          "VISIONTRAIN_SERVE_TOKEN=<token>")}
    PATHS: ClassVar[dict[str, tuple[str, str]]] = {"registry": ("model registry", REGISTRY_EXAMPLE)}

    @field_validator("cors_origins", "log_drop_columns")
    @classmethod
    def _a_list_of_names(cls, value: Any, info: Any) -> tuple[str, ...]:
        return _names(value, info.field_name)

    @field_validator("sticky_key")
    @classmethod
    def _header_or_field(cls, value: str | None) -> str | None:
        if value is not None:
            StickyKey.parse(value)
        return value

    @model_validator(mode="after")
    def _rollout_needs_a_registry(self) -> ServeOptions:
        if self.registry is None:
            asked = {"canary_share": self.canary_share > 0, "shadow": self.shadow,
                     "sticky_key": self.sticky_key is not None}
            for key, on in asked.items():
                if on:
                    raise ConfigError(key, "routes requests between registered versions, but no registry is set",
                                      f"{REGISTRY_EXAMPLE}, or leave {key} at its default")
        return self

    def _local(self, name: str) -> str | None:
        if name == "model" and self.registry is not None:
            return None  # a registered model's name, looked up in the registry when the command starts
        return super()._local(name)

    @property
    def sticky(self) -> StickyKey | None:
        return StickyKey.parse(self.sticky_key) if self.sticky_key is not None else None

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)


def _kafka_address(value: str | None, key: str) -> str | None:
    if value is not None:
        KafkaAddress.parse(value, key)  # a ConfigError naming the key; a password in it is refused, not shown
    return value


class StreamOptions(OnnxOptions, ImageOutputs, ImagePixels, DriftThresholds):
    """`visiontrain stream`; rules across options (an output, not the source topic) are checked at its start."""

    source: str = Field(examples=["kafka://localhost:9092/<topic>"])
    group: str = Field(min_length=1, examples=["churn-scoring"])
    output: str | None = Field(examples=["kafka://localhost:9092/<results topic>"])
    dead_letter: str | None = Field(examples=["kafka://localhost:9092/<dead letter topic>"])
    alerts: str | None = Field(examples=["kafka://localhost:9092/<alerts topic>"])
    sink: str | None = Field(min_length=1, examples=["<folder | file.db | SQLAlchemy URL>"])
    sink_table: str = Field(min_length=1, examples=["stream_results"])
    rejects: str | None = Field(min_length=1, examples=["rejects.jsonl"])
    max_batch_size: int = Field(ge=1, examples=["256"])
    max_wait_ms: float = Field(gt=0, examples=["20"])
    image_field: str = Field(min_length=1, examples=["image"])
    spin: bool
    drift_window: int = Field(ge=0, examples=["1000"])
    metrics_port: int | None = Field(ge=0, le=MAX_PORT, description="a port number (0: any free one) or null",
                                     examples=["9108"])
    metrics_host: str = Field(min_length=1, examples=["127.0.0.1"])
    lag_interval_s: float = Field(gt=0, examples=["5"])
    flush_timeout_s: float = Field(gt=0, examples=["30"])
    idle_exit_s: float | None = Field(gt=0, examples=["10"])
    max_messages: int | None = Field(ge=1, examples=["1000"])
    kafka: dict[str, Any] = Field(description="a mapping of librdkafka settings",
                                  examples=["{security.protocol: SASL_SSL}"])
    consumer: dict[str, Any] = Field(description="a mapping of librdkafka settings",
                                     examples=["{session.timeout.ms: 6000}"])
    producer: dict[str, Any] = Field(description="a mapping of librdkafka settings", examples=["{acks: all}"])

    @field_validator("source", "output", "dead_letter", "alerts")
    @classmethod
    def _kafka_topics(cls, value: str | None, info: Any) -> str | None:
        return _kafka_address(value, info.field_name)

    @field_validator("kafka", "consumer", "producer")
    @classmethod
    def _librdkafka_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        """``+kafka.security.protocol=SSL`` arrives nested; librdkafka wants the dotted name."""
        return flat_settings(value)

    @model_validator(mode="after")
    def _somewhere_to_deliver(self) -> StreamOptions:
        if self.output is None and not self.sink:
            raise ConfigError("output", "is required unless a sink stores the results",
                              "output=kafka://localhost:9092/<results topic> (and/or sink=<folder | file.db | URL>)")
        if self.output is not None and self.output_address == self.source_address:
            raise ConfigError("output", "is the source topic: results would be read back as inputs",
                              "output=kafka://.../<another topic>")
        return self

    @property
    def source_address(self) -> KafkaAddress:
        return KafkaAddress.parse(self.source, "source")

    @property
    def output_address(self) -> KafkaAddress | None:
        return _address(self.output, "output")

    @property
    def dead_letter_address(self) -> KafkaAddress | None:
        return _address(self.dead_letter, "dead_letter")

    @property
    def alerts_address(self) -> KafkaAddress | None:
        return _address(self.alerts, "alerts")

    def rejects_path(self, run_dir: Path) -> Path:
        """Where rejects go without a dead letter topic: ``rejects``, or rejects.jsonl in the run dir."""
        return Path(self.rejects).expanduser() if self.rejects else run_dir / "rejects.jsonl"


def _address(value: str | None, key: str) -> KafkaAddress | None:
    return KafkaAddress.parse(value, key) if value else None


class DriftOptions(CommandOptions, ImagePixels, DriftThresholds):
    """`visiontrain drift`."""

    reference: str = Field(examples=["outputs/<experiment>/runs/<time>"])
    current: str = Field(examples=["<table file, image folder or .jsonl log>"])
    output: str | None = Field(min_length=1, examples=["drift"])
    exit_code_on_drift: int = Field(ge=0, le=255, examples=["1"])

    PATHS: ClassVar[dict[str, tuple[str, str]]] = {
        "reference": ("reference", "reference=outputs/<experiment>/runs/<time> (or its model.onnx)"),
        "current": ("data", "current=<table file, image folder or .jsonl log>")}


MODELS_ACTIONS = ("list", "show", "history", "register", "promote", "rollback")


class ModelsOptions(CommandOptions):
    """`visiontrain models`: which action, on which registry and model; each action's own needs are checked here
    so a missing ``model=`` fails before anything is read or written."""

    action: Literal[MODELS_ACTIONS]  # type: ignore[valid-type]
    registry: str | None = Field(min_length=1, examples=["/mnt/models", "s3://bucket/models"])
    model: str | None = Field(min_length=1, examples=["churn"])
    version: str | int | None = Field(examples=["3", "candidate", "latest"])
    to: str = Field(min_length=1, examples=["production"])
    alias: str = Field(min_length=1, examples=["production"])
    run: str | None = Field(min_length=1, examples=["outputs/churn/runs/<time>"])
    onnx: str | None = Field(min_length=1, examples=[MODEL_EXAMPLE])
    note: str
    reason: str
    format: Literal["text", "json"]

    PATHS: ClassVar[dict[str, tuple[str, str]]] = {"run": ("run dir", "run=outputs/<experiment>/runs/<time>")}
    FILES: ClassVar[dict[str, tuple[str, str]]] = {"onnx": ("model", f"onnx={MODEL_EXAMPLE}")}

    @model_validator(mode="after")
    def _what_the_action_needs(self) -> ModelsOptions:
        if self.registry is None:
            raise ConfigError("registry", "is not set (and $VISIONTRAIN_REGISTRY is empty)",
                              "registry=<a shared folder or an fsspec URL>, or export VISIONTRAIN_REGISTRY=...")
        if self.action != "list" and self.model is None:
            raise ConfigError("model", f"`models {self.action}` needs the registered model's name",
                              f"visiontrain models {self.action} model=<name>")
        if self.action == "register" and (self.run is None) == (self.onnx is None):
            raise ConfigError("run" if self.run is None else "onnx", "register takes one of run= (a finished run "
                              "dir: its model.onnx and record) or onnx= (a file alone)", "run=outputs/<experiment>"
                              "/runs/<time>")
        if self.action == "promote" and self.version is None:
            raise ConfigError("version", "promote needs the version to point at", "version=candidate (or 3, latest)")
        return self


class RetrainOptions(CommandOptions, ImagePixels, DriftThresholds):
    """`visiontrain retrain`; the registry, the champion and the fresh data's columns are checked when the command
    opens them, before any training."""

    registry: str = Field(min_length=1, examples=["<a folder, or a URL such as s3://bucket/models>"])
    model: str = Field(min_length=1, examples=["churn"])
    data: str = Field(examples=["<fresh table with the target column, or an image folder of class subfolders>"])
    champion_alias: str = Field(min_length=1, examples=["production"])
    holdout_fraction: float = Field(gt=0, lt=1, examples=["0.2"])
    train_fraction: float = Field(gt=0, le=1, examples=["1.0"])
    seed: int = Field(examples=["42"])
    min_improvement: float = Field(examples=["0.0"])
    promote_to: Literal[RETRAIN_PROMOTE_TO]  # type: ignore[valid-type]
    fail_on_refuse: bool
    extra_overrides: list[str] = Field(description="a list of `visiontrain train` overrides",
                                       examples=['\'["trainer.max_epochs=3"]\''])
    trigger: str | None = Field(min_length=1, examples=["drift/drift.json"])
    batch_size: int = Field(ge=1, examples=["256"])

    FILES: ClassVar[dict[str, tuple[str, str]]] = {
        "trigger": ("drift report", "trigger=<the drift.json `visiontrain drift` wrote>, or trigger=null")}
    PATHS: ClassVar[dict[str, tuple[str, str]]] = {
        "registry": ("registry", "registry=<the registry folder> (or its URL, e.g. s3://bucket/models)"),
        "data": ("data", "data=<a table file with the target column, or an image folder of class subfolders>")}

    @field_validator("extra_overrides", mode="before")
    @classmethod
    def _one_or_a_list(cls, overrides: Any) -> Any:
        """One override alone (``extra_overrides="trainer.max_epochs=3"``) is a list of one."""
        return [overrides] if isinstance(overrides, str) else overrides

    @field_validator("extra_overrides")
    @classmethod
    def _readable_overrides(cls, overrides: list[str]) -> list[str]:
        """Each one as the command line of `visiontrain train` reads it, and no secret among them (they are written
        into the challenger's run dir)."""
        try:
            check_override_syntax(overrides)
            check_no_secrets(overrides)
        except ConfigError as error:  # named as the key it came in, with the override's own fix
            raise ConfigError("extra_overrides", f"{error.key}: {error.problem}", error.fix) from None
        return overrides
