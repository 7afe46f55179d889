"""The tabular config (``task=tabular``) as pydantic models, parsed once into :class:`TabularTrainConfig`.

The root holds the run's keys, the table (:class:`TableData`: its source, the limits and settings of a remote
source, cleaning, inference, the split and the declared schema, read by
:class:`visiontrain.config.table_schema.SchemaDeclaration`), the model, the features, and the optimizer and
trainer. Each section's defaults are the ones ``conf/`` states, and apply where a stored config (an older
checkpoint's) lacks a key. The estimator's class and where the source points are checked afterwards, with the
libraries that use them (:mod:`visiontrain.commands.validation`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from visiontrain.config.choices import (
    BUILTIN_TABLES,
    CATEGORY_IMPUTERS,
    CLASSIFICATION_MONITORS,
    HTTP_PAGINATION,
    LEAKAGE_RULES,
    MISSING_VALUE_RULES,
    NUMERIC_IMPUTERS,
    OUTLIER_RULES,
    REGRESSION_MONITORS,
    REMOTE_SCHEMES,
    TABLE_BALANCE,
    TABLE_FORMATS,
    TABLE_TASK_TYPES,
    THRESHOLD_METRICS,
    UNKNOWN_CATEGORY_RULES,
)
from visiontrain.config.reading import Section
from visiontrain.config.sections import Optimizer, Run, Trainer
from visiontrain.config.table_schema import SchemaDeclaration, check_option_names
from visiontrain.core.kafka import KafkaAddress, client_settings, flat_settings
from visiontrain.errors import ConfigError

ENVIRONMENT_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")  # what a variable name looks like, and a token does not

# the limits on what a training source may deliver (tabular/source_limits.py enforces them)
DEFAULT_MAX_ROWS = 5_000_000  # a churn table of this size is already a few GB of raw values in memory
KAFKA_MAX_MESSAGE_BYTES = 16 << 20  # one message of rows this large parses into a few hundred MB of objects
HTTP_PAGE_TIMEOUT_S = 300.0  # one page, whole: connecting, retries, headers and body
HTTP_MAX_PAGE_BYTES = 64 << 20  # one page's body, decoded: an API's page is KBs to a few MB
HTTP_MAX_TOTAL_BYTES = 1 << 30  # all pages together: about 2.5 million Telco rows as JSON


class TableTask(Section):
    task_type: Literal[TABLE_TASK_TYPES]  # type: ignore[valid-type]


class CrossValidation(Section):
    folds: int = Field(ge=0, examples=["5"])

    @field_validator("folds")
    @classmethod
    def _not_one(cls, folds: int) -> int:
        if folds == 1:
            raise ConfigError("cv.folds", "1 fold is not cross-validation", "cv.folds=5 (or 0 for a single split)")
        return folds


class Decision(Section):
    threshold_metric: Literal[THRESHOLD_METRICS]  # type: ignore[valid-type]


def _known_options(values: Any, model: type[Section], prefix: str, what: str) -> Any:
    """A key of a mapping ``values`` that ``model`` does not declare is a ConfigError naming it and the closest
    option (a typo in a YAML file, which the command-line override check does not see)."""
    if isinstance(values, dict):
        check_option_names(values, list(model.model_fields), prefix, what)
    return values


class Cleaning(Section):
    """``data.cleaning``: what to repair and what to reject (the rules themselves: tabular.cleansing)."""

    strip_whitespace: bool = True
    normalise_yes_no: bool = True  # yes/YES/y/true/1 -> "Yes", no/n/false/0 -> "No" in No/Yes columns
    drop_duplicates: bool = True  # exact duplicates over all columns, ids included: the first is kept
    missing_numeric: Literal[MISSING_VALUE_RULES] = "impute"  # type: ignore[valid-type]  # impute | reject
    missing_category: Literal[MISSING_VALUE_RULES] = "impute"  # type: ignore[valid-type]
    unknown_category: Literal[UNKNOWN_CATEGORY_RULES] = "reject"  # type: ignore[valid-type]  # reject | missing
    outliers: Literal[OUTLIER_RULES] = "clip"  # type: ignore[valid-type]  # outside [min, max]: clip | flag | reject
    warn_reject_share: float = Field(0.05, ge=0, le=1, examples=["0.05"])  # one rule rejecting more warns

    @model_validator(mode="before")
    @classmethod
    def _known(cls, values: Any) -> Any:
        return _known_options(values, cls, "data.cleaning", "a cleaning option")


class Inference(Section):
    """``data.inference``: the thresholds column inference decides by."""

    max_categories: int = Field(50, ge=2, examples=["50"])  # a text column with more values is free text
    leakage: Literal[LEAKAGE_RULES] = "drop"  # type: ignore[valid-type]  # drop (and flag) | keep (flag only)
    leakage_score: float = Field(0.97, gt=0.5, le=1, examples=["0.97"])  # single-column ROC-AUC (|Spearman|)
    range_margin: float = Field(0.5, ge=0, examples=["0.5"])  # training min/max widened by this share of the span

    @model_validator(mode="before")
    @classmethod
    def _known(cls, values: Any) -> Any:
        return _known_options(values, cls, "data.inference", "an inference option")


class Features(Section):
    """``features``: how columns become model inputs."""

    impute_numeric: Literal[NUMERIC_IMPUTERS] = "median"  # type: ignore[valid-type]
    impute_category: Literal[CATEGORY_IMPUTERS] = "most_frequent"  # type: ignore[valid-type]
    scale: bool = True
    pca_components: Any = None  # int: that many components; float in (0, 1): the share of variance kept

    @field_validator("pca_components")
    @classmethod
    def _count_or_share(cls, pca: Any) -> float | int | None:
        if pca is not None and (isinstance(pca, bool) or not isinstance(pca, (int, float)) or pca <= 0
                                or (isinstance(pca, float) and pca >= 1)):
            raise ConfigError("features.pca_components", f"must be null, a count >= 1 or a variance fraction "
                              f"in (0, 1), got {pca!r}", "features.pca_components=0.95")
        return pca


class TabularRun(Run):
    """The run-level keys of a tabular run; the metrics to monitor follow ``data.task_type``."""

    data: TableTask
    cv: CrossValidation
    decision: Decision
    features: Features = Features()  # absent (an older checkpoint's config): the defaults

    @model_validator(mode="after")
    def _fits_the_table(self) -> TabularRun:
        classification = self.data.task_type == "classification"
        self.monitor.check(CLASSIFICATION_MONITORS if classification else REGRESSION_MONITORS)
        if self.export.quantize is not None:
            raise ConfigError("export.quantize", "int8 quantization is for image models; a churn model is already "
                              "a fraction of a millisecond per row", "export.quantize=null")
        return self


class TabularModelKind(Section):
    kind: Literal["mlp", "estimator"]


class EstimatorModel(Section):
    """A scikit-learn model's own keys; its class is checked with scikit-learn in the library checks."""

    kind: Literal["estimator"] = "estimator"
    name: str | None = None  # names the run folder unless an experiment does
    estimator: Any = None  # per task type, the scikit-learn class (``_target_``) and its arguments: instantiated
    scale_features: bool | None = None  # absent: scaled (trees set false); null would silently mean false

    @field_validator("scale_features")
    @classmethod
    def _true_or_false(cls, scale: bool | None) -> bool:
        if scale is None:
            raise ConfigError("model.scale_features", "must be true or false, got None", "model.scale_features=false")
        return scale


class MlpModel(Section):
    """The MLP's keys (its optimizer is ``optimizer.*``)."""

    kind: Literal["mlp"] = "mlp"
    name: str | None = None
    hidden: Any = None
    dropout: float = Field(ge=0, le=0.95, examples=["0.2"])
    cosine: bool

    @field_validator("hidden")
    @classmethod
    def _layer_widths(cls, hidden: Any) -> Any:
        if not isinstance(hidden, list) or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0
                                                   for h in hidden):
            raise ConfigError("model.hidden", f"must be a list of layer widths, got {hidden!r}",
                              "model.hidden=[128,64]")
        return hidden


def remote_kind(source: Any) -> str | None:
    """"kafka" or "http" for a source read by its scheme (``kafka://``, ``http(s)://``); None otherwise."""
    text = str(source or "").lower()
    return next((kind for scheme, kind in REMOTE_SCHEMES.items() if text.startswith(scheme)), None)


class HttpSource(Section):
    """``data.http.*``: how a JSON API is read (``data.source=https://...``)."""

    token_env: str | None = None
    pagination: Literal[HTTP_PAGINATION] = "auto"  # type: ignore[valid-type]  # auto | link | next | page | none
    next_key: str = Field("next", min_length=1, examples=["next"])  # the body's field holding the next page's URL
    page_param: str = Field("page", min_length=1, examples=["page"])  # the query parameter of page-numbered APIs
    rows_key: str = Field("auto", min_length=1, examples=["auto"])  # auto: the body if a list, else HTTP_ROWS_KEYS
    max_pages: int = Field(1000, ge=1, examples=["1000"])
    connect_timeout_s: float = Field(10.0, gt=0, examples=["10"])
    read_timeout_s: float = Field(60.0, gt=0, examples=["60"])
    page_timeout_s: float = Field(HTTP_PAGE_TIMEOUT_S, gt=0, examples=["300"])
    max_page_bytes: int = Field(HTTP_MAX_PAGE_BYTES, ge=1, examples=["67108864"])
    max_total_bytes: int = Field(HTTP_MAX_TOTAL_BYTES, ge=1, examples=["1073741824"])
    retries: int = Field(5, ge=0, examples=["5"])
    backoff_s: float = Field(0.5, ge=0, examples=["0.5"])

    @model_validator(mode="before")
    @classmethod
    def _known(cls, values: Any) -> Any:
        """A misspelt setting (null ones included) is refused, naming the settings there are."""
        if isinstance(values, dict):
            unknown = sorted(str(name) for name in values if name not in cls.model_fields)
            if unknown:
                raise ConfigError(f"data.http.{unknown[0]}", "is not an HTTP source setting",
                                  f"one of {', '.join(cls.model_fields)}")
        return values

    @field_validator("token_env")
    @classmethod
    def _a_variable_name(cls, name: str | None) -> str | None:
        """The token itself typed in here would be stored with the run: refused, and never echoed."""
        if name is not None and not ENVIRONMENT_NAME.fullmatch(name):
            raise ConfigError("data.http.token_env", "must be the NAME of an environment variable holding the "
                              f"token (upper-case letters, digits and _), not the token itself ({len(name)} "
                              "characters that are not a variable name; not shown)",
                              "export VISIONTRAIN_API_TOKEN=<token> and set "
                              "data.http.token_env=VISIONTRAIN_API_TOKEN")
        return name


class SourceOptions(Section):
    """What reading a source needs besides its address: ``data.max_rows`` (every source), a Kafka topic's client
    settings and limits, an HTTP API's settings."""

    max_rows: int = Field(DEFAULT_MAX_ROWS, ge=1, examples=["5000000"])
    kafka: Any = None
    kafka_timeout_s: float | None = Field(None, gt=0, examples=["30"])  # null: the snapshot reader's default
    kafka_max_message_bytes: int = Field(KAFKA_MAX_MESSAGE_BYTES, ge=1, examples=["16777216"])
    http: HttpSource = HttpSource()  # absent (an older checkpoint's config): the defaults


class TableSource(SourceOptions):
    """``data.*`` as reading a table needs it: where the rows come from, the schema, cleaning and inference, and
    the split fractions inference splits by (a training run's :class:`TableData` requires them)."""

    _declaration: SchemaDeclaration = PrivateAttr()
    val_fraction: float = Field(0.2, gt=0, le=0.5, examples=["0.2"])
    test_fraction: float = Field(0.2, ge=0, le=0.5, examples=["0.2"])
    source: Any = None
    source_env: Any = None
    builtin: Any = None
    builtin_path: str | None = None  # where a built-in table is generated
    format: Any = "auto"
    table: Any = None  # sql: a table name ...
    query: Any = None  # ... or a SELECT
    cleaning: Cleaning = Cleaning()
    inference: Inference = Inference()
    # the schema's keys: read (and checked, with a schema file) by SchemaDeclaration, into ``declaration``
    task_type: Literal[TABLE_TASK_TYPES] = "classification"  # type: ignore[valid-type]
    target: Any = None
    positive_label: Any = None
    id_columns: Any = None
    columns: Any = None
    schema_file: Any = Field(None, alias="schema")

    @model_validator(mode="after")
    def _splits_and_source(self) -> TableSource:
        val, test = self.val_fraction, self.test_fraction
        if val + test >= 0.9:
            raise ConfigError("data.test_fraction", f"val ({val}) + test ({test}) leave too few training rows",
                              "data.val_fraction=0.2 data.test_fraction=0.2")
        if self.source_env and self.source is not None:
            raise ConfigError("data.source_env", f"and data.source are both set; the source is read from "
                              f"{self.source_env}", "data.source=null (or data.source_env=null)")
        if self.source is None and not self.source_env and self.builtin not in BUILTIN_TABLES:
            raise ConfigError("data.builtin", f"must be one of {', '.join(BUILTIN_TABLES)}; got {self.builtin!r}",
                              f"data.builtin={BUILTIN_TABLES[0]}")
        formats = ("auto", *TABLE_FORMATS)
        if (self.source is not None or self.source_env) and self.format not in formats:
            raise ConfigError("data.format", f"must be one of {', '.join(formats)}; got {self.format!r}",
                              "data.format=auto")
        self._check_remote_source()
        return self

    @model_validator(mode="after")
    def _declared_schema(self) -> TableSource:
        """The schema's keys (and the schema file they name) read and checked once, into :attr:`declaration`."""
        self._declaration = SchemaDeclaration.from_config({
            "target": self.target, "task_type": self.task_type, "positive_label": self.positive_label,
            "id_columns": self.id_columns, "columns": self.columns, "schema": self.schema_file})
        return self

    @property
    def declaration(self) -> SchemaDeclaration:
        """What config declares of the table's schema: target, task, identifiers, and the columns unless inferred."""
        return self._declaration

    def _check_remote_source(self) -> None:
        """A kafka:// address and its client settings, and no file format for a topic or an API."""
        if self.kafka is not None and not isinstance(self.kafka, dict):
            raise ConfigError("data.kafka", f"must be a mapping of librdkafka settings, got {self.kafka!r}",
                              "data.kafka.security.protocol=SSL")
        kind = remote_kind(self.source)
        if kind is None:
            return
        if self.format != "auto":
            raise ConfigError("data.format", f"does not apply to a {kind} source (its messages or pages are "
                              f"JSON), got {self.format!r}", "data.format=auto")
        if kind == "kafka":
            address = KafkaAddress.parse(self.source, "data.source")
            client_settings(address.bootstrap, flat_settings(self.kafka), {}, key="data.kafka")  # no secrets


class TableData(TableSource):
    """``data.*`` of a training run: the table (:class:`TableSource`), batches, splits and balance."""

    batch_size: int = Field(ge=1, examples=["256"])
    val_fraction: float = Field(gt=0, le=0.5, examples=["0.2"])
    test_fraction: float = Field(ge=0, le=0.5, examples=["0.2"])
    balance: Literal[TABLE_BALANCE]  # type: ignore[valid-type]


class TabularTrainConfig(TabularRun):
    """A tabular training config, parsed once (:func:`visiontrain.config.checks.check_train_config`): the run's
    keys, the table, the model, and the optimizer and trainer where the run has them (a checkpoint keeps neither
    the trainer nor, for a scikit-learn model, an optimizer). What Hydra instantiates (the estimator's
    ``_target_``, the optimizer, trainer, callbacks and loggers) is read from the raw config; the rest from here."""

    data: TableData
    model: MlpModel | EstimatorModel = Field(discriminator="kind")
    optimizer: Optimizer | None = None
    trainer: Trainer | None = None

    @property
    def is_classifier(self) -> bool:
        return self.data.task_type == "classification"

    @property
    def feature_options(self) -> Features:
        """``features`` as the model's pipeline uses them: not scaled where the model says so (trees)."""
        if getattr(self.model, "scale_features", None) is False:
            return self.features.model_copy(update={"scale": False})
        return self.features
