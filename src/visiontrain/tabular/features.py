"""The feature pipeline: impute, one-hot, scale, optional PCA; fitted on training rows only.

It is a scikit-learn pipeline on purpose: skl2onnx turns it into ONNX nodes, so the exported file takes the raw
columns (strings for categories) and applies exactly what training applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from visiontrain.config.choices import CATEGORY_IMPUTERS, NUMERIC_IMPUTERS
from visiontrain.config.table_schema import TableSchema
from visiontrain.errors import ConfigError

MISSING_CATEGORY = ""  # how a missing category reaches the pipeline (and the ONNX file): an empty string


@dataclass(frozen=True)
class FeatureOptions:
    """``features`` in config: how numbers and categories become model inputs."""

    impute_numeric: str = "median"         # median | mean
    impute_category: str = "most_frequent"  # most_frequent | constant (a category of its own: "missing")
    scale: bool = True
    pca_components: float | int | None = None  # int: that many components; float in (0, 1): variance kept

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "FeatureOptions":
        cfg = dict(cfg or {})
        options = cls(**{key: cfg[key] for key in cls.__dataclass_fields__ if key in cfg})
        for key, allowed in (("impute_numeric", NUMERIC_IMPUTERS), ("impute_category", CATEGORY_IMPUTERS)):
            if getattr(options, key) not in allowed:
                raise ConfigError(f"features.{key}", f"must be {' or '.join(allowed)}, got "
                                  f"{getattr(options, key)!r}", f"features.{key}={allowed[0]}")
        if not isinstance(options.scale, bool):  # "no" would be true, and scale
            raise ConfigError("features.scale", f"must be true or false, got {options.scale!r}", "features.scale=true")
        pca = options.pca_components
        if pca is not None and (isinstance(pca, bool) or not isinstance(pca, (int, float)) or pca <= 0
                                or (isinstance(pca, float) and pca >= 1)):
            raise ConfigError("features.pca_components", f"must be null, a count >= 1 or a variance fraction "
                              f"in (0, 1), got {pca!r}", "features.pca_components=0.95")
        return options


def model_inputs(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The feature columns as the pipeline (and the ONNX file) take them: float numbers, string categories."""
    columns = {}
    for name in schema.numeric_features:
        columns[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    for name in schema.categorical_features:
        values = frame[name].astype(object)
        columns[name] = values.where(values.notna(), MISSING_CATEGORY).astype(str).astype(object)
    return pd.DataFrame(columns, index=frame.index)[list(schema.columns)]


def build_feature_pipeline(schema: TableSchema, options: FeatureOptions) -> Pipeline:
    """An unfitted pipeline; ``fit`` it on training rows only."""
    # keep_empty_features: a column blank in every training row (one blank in every kept row is refused by
    # cleansing) stays a column of zeros instead of vanishing, which left the ONNX scaler a column short
    numeric = Pipeline([("impute", SimpleImputer(strategy=options.impute_numeric, keep_empty_features=True))]
                       + ([("scale", StandardScaler())] if options.scale else []))
    fill = {"strategy": "constant", "fill_value": "missing"} if options.impute_category == "constant" else \
        {"strategy": "most_frequent"}
    categorical = Pipeline([("impute", SimpleImputer(missing_values=MISSING_CATEGORY, **fill)),
                            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    parts = []
    if schema.numeric_features:
        parts.append(("numeric", numeric, schema.numeric_features))
    if schema.categorical_features:
        parts.append(("category", categorical, schema.categorical_features))
    steps: list[tuple[str, Any]] = [("columns", ColumnTransformer(parts, verbose_feature_names_out=False))]
    if options.pca_components is not None:
        steps.append(("pca", PCA(n_components=options.pca_components, random_state=0)))
    return Pipeline(steps)


def transform(pipeline: Pipeline, frame: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    return encode(pipeline, model_inputs(frame, schema))


def encode(pipeline: Pipeline, inputs: pd.DataFrame) -> np.ndarray:
    """The model's float32 feature matrix from columns already in :func:`model_inputs` form."""
    return np.asarray(pipeline.transform(inputs), dtype=np.float32)


def feature_names(pipeline: Pipeline) -> list[str]:
    """Names of the model's input features after encoding (``Contract_Month-to-month``, ``pca0``, ...)."""
    return [str(name) for name in pipeline.get_feature_names_out()]
