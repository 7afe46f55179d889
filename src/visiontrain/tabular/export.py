"""A tabular checkpoint to one ONNX file (feature pipeline + model + threshold), checked on held-out rows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from visiontrain.config.table_schema import TableSchema
from visiontrain.core.model_metadata import MISSING_VALUES, ModelMetadata
from visiontrain.export.parity import check_table_parity
from visiontrain.export.torch_export import DEFAULT_EXPORTER
from visiontrain.tabular.features import model_inputs, transform
from visiontrain.tabular.models import EstimatorModel, TabularModel, load_tabular_model
from visiontrain.tabular.onnx_graph import (
    decision_graph,
    estimator_graph,
    join,
    onnx_feeds,
    pipeline_graph,
    torch_graph,
)
from visiontrain.training.results import ExportResult


def export_tabular_checkpoint(ckpt_path: str | Path, onnx_path: Path, schema: TableSchema, rows: pd.DataFrame,
                              atol: float, opset: int, metric: dict[str, Any] | None,
                              extra_metadata: dict[str, Any] | None = None,
                              module: TabularModel | None = None, exporter: str = DEFAULT_EXPORTER) -> ExportResult:
    """Export ``ckpt_path`` (pipeline + model + threshold) to one ONNX file and check it on ``rows``.

    ``module``: the checkpoint's model when the caller has already loaded it (the file is then not read again).
    ``exporter``: torch's ONNX exporter for an MLP, ``torchscript`` or ``dynamo`` (an estimator goes by skl2onnx).
    """
    started = time.perf_counter()
    module = (module or load_tabular_model(str(ckpt_path))).eval()
    classifier, numeric, categorical = module.is_classifier, schema.numeric_features, schema.categorical_features
    width = len(module.feature_names)
    is_estimator = isinstance(module, EstimatorModel)
    scorer = estimator_graph(module.estimator, width, classifier, opset) if is_estimator \
        else torch_graph(module, width, opset, exporter)
    metadata = ModelMetadata(
        task=f"tabular_{module.task_type}",
        input_columns={**{n: "float" for n in numeric}, **{n: "string" for n in categorical}},
        column_order=list(schema.columns), target=schema.target, positive_label=schema.positive_label,
        class_names=list(module.class_names), threshold=module.threshold, threshold_metric=module.threshold_metric,
        outputs=["probability", "label"] if classifier else ["prediction"], missing_values=MISSING_VALUES,
        model="estimator" if is_estimator else "mlp",
        estimator=module.hparams.get("estimator", {}).get("_target_") if is_estimator else None,
        source_checkpoint=str(Path(ckpt_path).resolve()), metric=metric or {}, **(extra_metadata or {}))
    join(pipeline_graph(module.feature_pipeline, numeric, categorical, opset), scorer,
         decision_graph(classifier, module.threshold, opset), metadata, onnx_path)
    with torch.no_grad():
        expected = module.scores(torch.as_tensor(transform(module.feature_pipeline, rows, schema))).double().numpy()
    parity = check_table_parity(onnx_path, onnx_feeds(model_inputs(rows, schema), numeric, categorical), expected,
                                classifier, module.threshold, atol)
    return ExportResult(onnx=str(onnx_path), seconds=round(time.perf_counter() - started, 3), parity=parity,
                        metadata=metadata.as_dict())
