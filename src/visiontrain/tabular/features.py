"""The feature pipeline: impute, one-hot, scale, optional PCA; fitted on training rows only.

It is a scikit-learn pipeline on purpose: skl2onnx turns it into ONNX nodes, so the exported file takes the raw
columns (strings for categories) and applies exactly what training applied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from visiontrain.config.table_schema import TableSchema
from visiontrain.config.tabular import Features

MISSING_CATEGORY = ""  # how a missing category reaches the pipeline (and the ONNX file): an empty string


def model_inputs(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The feature columns as the pipeline (and the ONNX file) take them: float numbers, string categories."""
    columns = {}
    for name in schema.numeric_features:
        columns[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    for name in schema.categorical_features:
        values = frame[name].astype(object)
        columns[name] = values.where(values.notna(), MISSING_CATEGORY).astype(str).astype(object)
    return pd.DataFrame(columns, index=frame.index)[list(schema.columns)]


def build_feature_pipeline(schema: TableSchema, options: Features) -> Pipeline:
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
