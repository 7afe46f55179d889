"""One ONNX file for a tabular model: raw columns in (strings for categories), probability and label out.

Three graphs are joined: the fitted feature pipeline (converted by skl2onnx), the model's scorer (torch export of
the MLP, or skl2onnx of the baseline) and a small decision step with the tuned threshold. Metadata inside says
which columns to feed, their types, the positive label and the threshold.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, compose, helper

from visiontrain.core.model_metadata import ModelMetadata
from visiontrain.export.onnx_export import set_metadata
from visiontrain.export.torch_export import DEFAULT_EXPORTER, export_graph

FEATURES = "features"  # the encoded feature matrix between the pipeline and the scorer
ML_OPSET = 3


def _opsets(opset: int) -> dict[str, int]:
    return {"": opset, "ai.onnx.ml": ML_OPSET}


def pipeline_graph(pipeline: Any, numeric: list[str], categorical: list[str], opset: int) -> onnx.ModelProto:
    """The feature pipeline: one [N, 1] input per raw column, the encoded matrix ``features`` out."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    types = {name: FloatTensorType([None, 1]) for name in numeric}
    types.update({name: StringTensorType([None, 1]) for name in categorical})
    order = [name for name in pipeline.feature_names_in_]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_sklearn(pipeline, initial_types=[(name, types[name]) for name in order],
                                target_opset=_opsets(opset))
    return compose.add_prefix(_rename_output(model, FEATURES), "prep_", rename_inputs=False, rename_outputs=False)


def estimator_graph(estimator: Any, in_features: int, classifier: bool, opset: int) -> onnx.ModelProto:
    """A scikit-learn baseline on ``features``; output ``score``: P(positive) or the prediction, shape [N]."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if classifier else None
    with warnings.catch_warnings(), _integer_missing_flags():
        warnings.simplefilter("ignore")
        model = convert_sklearn(estimator, initial_types=[(FEATURES, FloatTensorType([None, in_features]))],
                                target_opset=_opsets(opset), options=options)
    raw = model.graph.output[-1].name if classifier else model.graph.output[0].name  # probabilities / variable
    model = compose.add_prefix(model, "model_", rename_inputs=False)  # its own "label" must not clash with ours
    raw = f"model_{raw}"
    index = helper.make_tensor("model_positive_column", TensorProto.INT64, [], [1])
    shape = helper.make_tensor("model_flat", TensorProto.INT64, [1], [-1])
    model.graph.initializer.extend([index, shape])
    if classifier:
        model.graph.node.append(helper.make_node("Gather", [raw, "model_positive_column"], ["score_raw"], axis=1))
    else:
        model.graph.node.append(helper.make_node("Identity", [raw], ["score_raw"]))
    model.graph.node.append(helper.make_node("Reshape", ["score_raw", "model_flat"], ["score"]))
    _replace_outputs(model, [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])])
    return model


@contextlib.contextmanager
def _integer_missing_flags() -> Iterator[None]:
    """skl2onnx 1.20 writes ``False`` for the missing-value flag of a HistGradientBoosting leaf, which our onnx (1.23)
    refuses in an integer list ("Expected an int, got a boolean"): while converting, the flags are made ints.

    Only the per-tree helper of the random-forest converter module (which converts HistGradientBoosting) is
    wrapped, and only for the duration of one conversion; every value it writes is kept, as ``int``.
    """
    from skl2onnx.operator_converters import random_forest

    original = random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting

    def add_tree(attr_pairs: dict[str, list[Any]], *args: Any, **kwargs: Any) -> None:
        original(attr_pairs, *args, **kwargs)
        flags = attr_pairs["nodes_missing_value_tracks_true"]
        flags[:] = [int(flag) for flag in flags]

    random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = add_tree
    try:
        yield
    finally:
        random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = original


def torch_graph(module: torch.nn.Module, in_features: int, opset: int,
                exporter: str = DEFAULT_EXPORTER) -> onnx.ModelProto:
    """A torch scorer (``forward`` gives the score, shape [N]) exported with a dynamic batch axis by ``exporter``."""
    module = module.eval().to("cpu", torch.float32)
    model = export_graph(module, torch.zeros(2, in_features), FEATURES, ["score"], opset, exporter)
    return compose.add_prefix(model, "model_", rename_inputs=False, rename_outputs=False)


def decision_graph(classifier: bool, threshold: float, opset: int) -> onnx.ModelProto:
    """``score`` -> ``probability`` and ``label`` (1 = positive) at the tuned threshold; or ``prediction``."""
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    if classifier:
        cut = helper.make_tensor("decision_threshold", TensorProto.FLOAT, [], [threshold])
        nodes = [helper.make_node("Identity", ["score"], ["probability"]),
                 helper.make_node("GreaterOrEqual", ["score", "decision_threshold"], ["decision_positive"]),
                 helper.make_node("Cast", ["decision_positive"], ["label"], to=TensorProto.INT64)]
        outputs = [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch"]),
                   helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])]
        graph = helper.make_graph(nodes, "decision", [score], outputs, initializer=[cut])
    else:
        graph = helper.make_graph([helper.make_node("Identity", ["score"], ["prediction"])], "decision", [score],
                                  [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in _opsets(opset).items()])


def join(prep: onnx.ModelProto, scorer: onnx.ModelProto, decision: onnx.ModelProto,
         metadata: ModelMetadata, path: Path) -> Path:
    """Chain the three graphs into one checked file with ``metadata`` in its properties."""
    parts = [prep, scorer, decision]
    ir_version = min(part.ir_version for part in parts)
    opsets: dict[str, int] = {}
    for part in parts:
        part.ir_version = ir_version
        for entry in part.opset_import:
            opsets[entry.domain] = max(opsets.get(entry.domain, 0), entry.version)
    for part in parts:  # merge_models wants identical opset imports
        del part.opset_import[:]
        part.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    model = compose.merge_models(prep, scorer, io_map=[(FEATURES, FEATURES)])
    model = compose.merge_models(model, decision, io_map=[("score", "score")])
    set_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def onnx_feeds(frame: Any, numeric: list[str], categorical: list[str]) -> dict[str, np.ndarray]:
    """Raw columns of ``frame`` as the exported file takes them: float32 [N, 1] and string [N, 1]."""
    feeds = {name: frame[[name]].to_numpy(dtype=np.float32) for name in numeric}
    feeds.update({name: frame[[name]].to_numpy(dtype=object).astype(str).astype(object) for name in categorical})
    return feeds


def _rename_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if out == old else out for out in node.output]
    model.graph.output[0].name = name
    return model


def _replace_outputs(model: onnx.ModelProto, outputs: list[onnx.ValueInfoProto]) -> None:
    del model.graph.output[:]
    model.graph.output.extend(outputs)
