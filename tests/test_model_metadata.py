"""The typed ONNX metadata: written as export has always written it, read back by onnxruntime alone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from visiontrain.core.model_metadata import MISSING_VALUES, PIXEL_SCALE, ModelMetadata
from visiontrain.errors import MetadataError

REFERENCE = {"task": "tabular_classification", "inputs": {"tenure": {"kind": "numeric", "count": 3}}}
# the dicts export wrote before this class (tasks/image.py export_checkpoint, tasks/tabular.py
# export_tabular_checkpoint), with the runner's reference_stats added last
IMAGE_DICT = {
    "task": "image_classification", "class_names": ["ants", "bees"], "input_name": "image",
    "input_size": [3, 224, 224], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize_to": 256,
    "crop": "center", "interpolation": "bicubic", "pixel_scale": PIXEL_SCALE, "backbone": "test_resnet",
    "source_checkpoint": "/runs/1/checkpoints/best.ckpt", "metric": {"name": "val/acc", "value": 0.9},
    "weights_averaged": False, "visiontrain_version": "0.1.0", "reference_stats": REFERENCE,
}
TABLE_DICT = {
    "task": "tabular_classification", "input_columns": {"tenure": "float", "Contract": "string"},
    "column_order": ["tenure", "Contract"], "target": "Churn", "positive_label": "1", "class_names": ["0", "1"],
    "threshold": 0.42, "threshold_metric": "f1", "outputs": ["probability", "label"],
    "missing_values": MISSING_VALUES, "model": "mlp", "estimator": None,
    "source_checkpoint": "/runs/2/checkpoints/best.ckpt", "metric": {}, "reference_stats": REFERENCE,
}


def written_today(values: dict) -> dict[str, str]:
    """export/onnx_export.set_metadata's conversion: text as it is, every other value as JSON."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def onnx_file(path: Path, properties: dict[str, str], inputs: tuple[str, ...] = ("x",),
              outputs: tuple[str, ...] = ("probability",)) -> Path:
    """A real ONNX file (Identity nodes) carrying ``properties``."""
    nodes = [helper.make_node("Identity", [inputs[0]], [name]) for name in outputs]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1])
                                           for n in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, properties)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("values", [IMAGE_DICT, TABLE_DICT], ids=["image", "table"])
def test_properties_are_exactly_those_written_before(values, tmp_path):
    metadata = ModelMetadata(**values)
    assert list(metadata.to_properties().items()) == list(written_today(values).items())  # order included
    path = onnx_file(tmp_path / "model.onnx", metadata.to_properties(),
                     inputs=("image",) if metadata.is_image else ("tenure", "Contract"))
    read = ModelMetadata.read(path)
    assert read == metadata and read.to_properties() == written_today(values)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert ModelMetadata.read(session) == metadata
    assert session.get_modelmeta().custom_metadata_map == written_today(values)


def test_a_label_that_looks_like_a_number_stays_text(tmp_path):
    read = ModelMetadata.read(onnx_file(tmp_path / "m.onnx", written_today(TABLE_DICT)))
    assert read.positive_label == "1" and read.estimator is None and read.threshold == 0.42
    assert read.reference_stats == REFERENCE and not read.is_image and not read.is_regression


def test_an_int8_copy_keeps_every_property_and_adds_quantization(tmp_path):
    float_file = ModelMetadata.read(onnx_file(tmp_path / "m.onnx", written_today(IMAGE_DICT)))
    int8 = replace(float_file, quantization={"mode": "int8", "calibration_images": 16})
    assert int8.to_properties() == {**written_today(IMAGE_DICT),
                                    "quantization": json.dumps({"mode": "int8", "calibration_images": 16})}


def test_unknown_properties_survive_a_round_trip(tmp_path):
    properties = {**written_today(TABLE_DICT), "owner": "team-a", "tags": '["x", "y"]'}
    read = ModelMetadata.read(onnx_file(tmp_path / "m.onnx", properties))
    assert read.extra == {"owner": "team-a", "tags": ["x", "y"]} and read.to_properties() == properties


@pytest.mark.parametrize("inputs,outputs,task", [
    (("image",), ("probabilities",), "image_classification"),
    (("tenure", "Contract"), ("probability",), "tabular_classification"),
    (("tenure",), ("prediction",), "tabular_regression"),
])
def test_files_exported_before_the_task_field_are_told_by_their_graph(inputs, outputs, task, tmp_path):
    properties = {"class_names": '["a", "b"]'}
    read = ModelMetadata.read(onnx_file(tmp_path / "old.onnx", properties, inputs, outputs))
    assert read.task == task and read.class_names == ["a", "b"]


def test_an_unknown_task_or_broken_json_is_refused_naming_it(tmp_path):
    with pytest.raises(MetadataError, match="unknown task 'object_detection'"):
        ModelMetadata.read(onnx_file(tmp_path / "a.onnx",
                                     {**written_today(TABLE_DICT), "task": "object_detection"}))
    with pytest.raises(MetadataError, match="'threshold' is not valid JSON"):
        ModelMetadata.read(onnx_file(tmp_path / "b.onnx", {**written_today(TABLE_DICT), "threshold": "high"}))
