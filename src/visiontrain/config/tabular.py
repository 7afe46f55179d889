"""The tabular config (``task=tabular``) as pydantic models: run, model, splits and source of a table.

The declared columns are :class:`visiontrain.config.table_schema.TableSchema`'s to read; the cleaning rules, the
feature options, the estimator class and where the source points are checked afterwards, with the libraries
that use them (:mod:`visiontrain.commands.validation`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

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
from visiontrain.config.sections import Run
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


# a key left out takes the default of the code that reads it (CleaningRules, InferenceOptions, FeatureOptions):
# this placeholder is never validated, while a value given (null included) is
ABSENT: Any = None


class Cleaning(Section):
    """``data.cleaning``: what to repair and what to reject (the rules themselves: tabular.cleansing)."""

    strip_whitespace: bool = ABSENT
    normalise_yes_no: bool = ABSENT
    drop_duplicates: bool = ABSENT
    missing_numeric: Literal[MISSING_VALUE_RULES] = ABSENT  # type: ignore[valid-type]
    missing_category: Literal[MISSING_VALUE_RULES] = ABSENT  # type: ignore[valid-type]
    unknown_category: Literal[UNKNOWN_CATEGORY_RULES] = ABSENT  # type: ignore[valid-type]
    outliers: Literal[OUTLIER_RULES] = ABSENT  # type: ignore[valid-type]
    warn_reject_share: float = Field(ABSENT, ge=0, le=1, examples=["0.05"])


class Inference(Section):
    """``data.inference``: the thresholds column inference decides by."""

    max_categories: int = Field(ABSENT, ge=2, examples=["50"])
    leakage: Literal[LEAKAGE_RULES] = ABSENT  # type: ignore[valid-type]
    leakage_score: float = Field(ABSENT, gt=0.5, le=1, examples=["0.97"])
    range_margin: float = Field(ABSENT, ge=0, examples=["0.5"])


class Features(Section):
    """``features``: how columns become model inputs (``pca_components`` is checked with the pipeline)."""

    impute_numeric: Literal[NUMERIC_IMPUTERS] = ABSENT  # type: ignore[valid-type]
    impute_category: Literal[CATEGORY_IMPUTERS] = ABSENT  # type: ignore[valid-type]
    scale: bool = ABSENT


class TabularRun(Run):
    """The run-level keys of a tabular run; the metrics to monitor follow ``data.task_type``."""

    data: TableTask
    cv: CrossValidation
    decision: Decision
    features: Features | None = None

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

    scale_features: bool | None = None  # absent: scaled (trees set false); null would silently mean false

    @field_validator("scale_features")
    @classmethod
    def _true_or_false(cls, scale: bool | None) -> bool:
        if scale is None:
            raise ConfigError("model.scale_features", "must be true or false, got None", "model.scale_features=false")
        return scale


class MlpModel(Section):
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
    pagination: Literal[HTTP_PAGINATION]  # type: ignore[valid-type]
    next_key: str = Field(min_length=1, examples=["next"])
    page_param: str = Field(min_length=1, examples=["page"])
    rows_key: str = Field(min_length=1, examples=["auto"])
    max_pages: int = Field(ge=1, examples=["1000"])
    connect_timeout_s: float = Field(gt=0, examples=["10"])
    read_timeout_s: float = Field(gt=0, examples=["60"])
    page_timeout_s: float = Field(HTTP_PAGE_TIMEOUT_S, gt=0, examples=["300"])
    max_page_bytes: int = Field(HTTP_MAX_PAGE_BYTES, ge=1, examples=["67108864"])
    max_total_bytes: int = Field(HTTP_MAX_TOTAL_BYTES, ge=1, examples=["1073741824"])
    retries: int = Field(ge=0, examples=["5"])
    backoff_s: float = Field(ge=0, examples=["0.5"])

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


class TableData(Section):
    """``data.*`` of a table besides its schema: batches, splits, balance and where the rows come from."""

    batch_size: int = Field(ge=1, examples=["256"])
    val_fraction: float = Field(gt=0, le=0.5, examples=["0.2"])
    test_fraction: float = Field(ge=0, le=0.5, examples=["0.2"])
    balance: Literal[TABLE_BALANCE]  # type: ignore[valid-type]
    source: Any = None
    source_env: Any = None
    builtin: Any = None
    format: Any = "auto"
    kafka: Any = None
    kafka_timeout_s: float | None = Field(None, gt=0, examples=["30"])
    kafka_max_message_bytes: int = Field(KAFKA_MAX_MESSAGE_BYTES, ge=1, examples=["16777216"])
    max_rows: int = Field(DEFAULT_MAX_ROWS, ge=1, examples=["5000000"])
    http: HttpSource | None = None
    cleaning: Cleaning | None = None
    inference: Inference | None = None

    @model_validator(mode="after")
    def _splits_and_source(self) -> TableData:
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
