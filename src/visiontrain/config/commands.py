"""The options of `evaluate`, `export`, `predict`, `serve`, `stream` and `drift` as pydantic models.

`visiontrain` checks them on the composed config before it imports the command (so before torch or onnxruntime
loads), as it checks `train`'s: each option's type, range or choices, with an example that becomes the fix.
Files an option names are checked after every type and range, so one run reports a typo in ``top_k`` even when
the model path is wrong too. Rules that need the model or the broker (a manifest's split, the output topic vs the
source) stay with the command, which runs them before any work. Defaults live in conf/<command>.yaml only.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from visiontrain.config.choices import PREDICTION_OUTPUTS, SERVE_LOG_LEVELS, TTA_MODES
from visiontrain.config.reading import Section, auto_or_count, existing_file, pixel_limit
from visiontrain.core.image_decode import DEFAULT_MAX_IMAGE_PIXELS
from visiontrain.core.kafka import KafkaAddress
from visiontrain.core.manifest import SPLITS
from visiontrain.errors import ConfigError

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
    data_root: str | None = Field(None, examples=["/path/to/images"])
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

    output: str | None = Field(None, min_length=1, examples=["model.onnx"])
    opset: int = Field(examples=["17"])
    parity_images: int = Field(ge=0, examples=["32"])
    atol: float = Field(gt=0, examples=["1e-3"])
    quantize: Literal["int8"] | None = None
    calibration_images: int = Field(ge=1, examples=["128"])


class OnnxOptions(CommandOptions):
    """What every command that runs an exported model takes: the file, and onnxruntime's threads."""

    model: str = Field(examples=[MODEL_EXAMPLE])
    threads: int = Field(ge=0, examples=["0"])

    FILES: ClassVar[dict[str, tuple[str, str]]] = {"model": ("model", f"model={MODEL_EXAMPLE}")}


class ImageOutputs(Section):
    top_k: int = Field(ge=1, examples=["5"])


class ImagePixels(Section):
    """``max_image_pixels``: the rule every command applies to it, from core (a whole number, under Pillow's cap)."""

    max_image_pixels: Any = DEFAULT_MAX_IMAGE_PIXELS

    @field_validator("max_image_pixels")
    @classmethod
    def _a_pixel_limit(cls, pixels: Any) -> Any:
        pixel_limit(pixels, "max_image_pixels")
        return pixels


class DriftThresholds(Section):
    """When a feature counts as drifted (`drift`, and `stream`'s rolling windows)."""

    psi_threshold: float = Field(gt=0, examples=["0.25"])
    ks_pvalue: float = Field(gt=0, lt=1, examples=["0.01"])
    ks_statistic: float = Field(gt=0, lt=1, examples=["0.1"])


class PredictOptions(OnnxOptions, ImageOutputs, ImagePixels):
    """`visiontrain predict`."""

    input: str = Field(examples=["<an image, image folder, image manifest or table file>"])
    split: Literal[SPLITS] | None = Field(None, examples=["val"])  # type: ignore[valid-type]
    allow_outside_root: bool
    output: str | None = Field(None, examples=["predictions.csv"])
    batch_size: int = Field(ge=1, examples=["32"])
    id_columns: list[str] | None = Field(None, description="a list of column names",
                                         examples=["[customerID]"])
    decode_threads: Any = "auto"
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


def _names(value: Any, key: str) -> Any:
    """A list of names, or one name alone (``log_drop_columns=email``)."""
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        return value
    raise ConfigError(key, f"must be a list of names, got {value!r}", f"{key}=[name1,name2]")


class ServeOptions(OnnxOptions, ImageOutputs, ImagePixels):
    """`visiontrain serve`; the token itself is checked when the server starts (it is never printed)."""

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
    token_file: str | None = None
    docs: bool
    cors_origins: Any = None
    log_predictions: str | None = Field(None, min_length=1, examples=["predictions.jsonl"])
    log_drop_columns: Any = None
    drift_window: int = Field(ge=0, examples=["1000"])
    log_level: Literal[SERVE_LOG_LEVELS]  # type: ignore[valid-type]
    access_log: bool
    spin: bool

    FILES: ClassVar[dict[str, tuple[str, str]]] = {
        **OnnxOptions.FILES, "token_file": ("token file", "token_file=<a file holding the token>, or export "
                                                          "VISIONTRAIN_SERVE_TOKEN=<token>")}

    @field_validator("cors_origins", "log_drop_columns")
    @classmethod
    def _a_list_of_names(cls, value: Any, info: Any) -> Any:
        return value if value is None else _names(value, info.field_name)


def _kafka_address(value: str | None, key: str) -> str | None:
    if value is not None:
        KafkaAddress.parse(value, key)  # a ConfigError naming the key; a password in it is refused, not shown
    return value


class StreamOptions(OnnxOptions, ImageOutputs, ImagePixels, DriftThresholds):
    """`visiontrain stream`; rules across options (an output, not the source topic) are checked at its start."""

    source: str = Field(examples=["kafka://localhost:9092/<topic>"])
    group: str = Field(min_length=1, examples=["churn-scoring"])
    output: str | None = Field(None, examples=["kafka://localhost:9092/<results topic>"])
    dead_letter: str | None = Field(None, examples=["kafka://localhost:9092/<dead letter topic>"])
    alerts: str | None = Field(None, examples=["kafka://localhost:9092/<alerts topic>"])
    sink: str | None = Field(None, min_length=1, examples=["<folder | file.db | SQLAlchemy URL>"])
    sink_table: str = Field(min_length=1, examples=["stream_results"])
    rejects: str | None = Field(None, min_length=1, examples=["rejects.jsonl"])
    max_batch_size: int = Field(ge=1, examples=["256"])
    max_wait_ms: float = Field(gt=0, examples=["20"])
    image_field: str = Field(min_length=1, examples=["image"])
    spin: bool
    drift_window: int = Field(ge=0, examples=["1000"])
    metrics_port: int | None = Field(None, ge=0, le=MAX_PORT, description="a port number (0: any free one) or null",
                                     examples=["9108"])
    metrics_host: str = Field(min_length=1, examples=["127.0.0.1"])
    lag_interval_s: float = Field(gt=0, examples=["5"])
    flush_timeout_s: float = Field(gt=0, examples=["30"])
    idle_exit_s: float | None = Field(None, gt=0, examples=["10"])
    max_messages: int | None = Field(None, ge=1, examples=["1000"])
    kafka: dict[str, Any] = Field(description="a mapping of librdkafka settings",
                                  examples=["{security.protocol: SASL_SSL}"])
    consumer: dict[str, Any] = Field(description="a mapping of librdkafka settings",
                                     examples=["{session.timeout.ms: 6000}"])
    producer: dict[str, Any] = Field(description="a mapping of librdkafka settings", examples=["{acks: all}"])

    @field_validator("source", "output", "dead_letter", "alerts")
    @classmethod
    def _kafka_topics(cls, value: str | None, info: Any) -> str | None:
        return _kafka_address(value, info.field_name)


class DriftOptions(CommandOptions, ImagePixels, DriftThresholds):
    """`visiontrain drift`."""

    reference: str = Field(examples=["outputs/<experiment>/runs/<time>"])
    current: str = Field(examples=["<table file, image folder or .jsonl log>"])
    output: str | None = Field(None, min_length=1, examples=["drift"])
    exit_code_on_drift: int = Field(ge=0, le=255, examples=["1"])

    PATHS: ClassVar[dict[str, tuple[str, str]]] = {
        "reference": ("reference", "reference=outputs/<experiment>/runs/<time> (or its model.onnx)"),
        "current": ("data", "current=<table file, image folder or .jsonl log>")}
