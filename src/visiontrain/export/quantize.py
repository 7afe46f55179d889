"""int8 ONNX: static quantization with onnxruntime's tools, calibrated on real training images.

Static (QDQ, per-channel weights) rather than dynamic quantization: dynamic quantization leaves convolutions
in float32, which is most of an image model's time. The quantized file keeps the float file's metadata, so
``predict``, ``serve`` and ``drift`` take it unchanged; its agreement with the float model is measured on
validation images and recorded.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import onnx

from visiontrain.core.model_metadata import ModelMetadata
from visiontrain.core.providers import CPU_ONLY
from visiontrain.export.onnx_export import set_metadata


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over preprocessed image batches."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self._feeds = iter({input_name: np.ascontiguousarray(b, dtype=np.float32)} for b in batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # called by some calibrators; one pass is all static min-max needs
        pass


def quantize_int8(float_path: str | Path, int8_path: str | Path, calibration: np.ndarray,
                  input_name: str = "image", batch_size: int = 16) -> Path:
    """Write a static int8 (QDQ) copy of ``float_path`` calibrated on ``calibration`` (N, C, H, W float32)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_path, int8_path = Path(float_path), Path(int8_path)
    if len(calibration) == 0:
        raise ValueError("int8 quantization needs calibration images; none were given")
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)  # fold BN, infer shapes
        batches = [calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size)]
        quantize_static(str(prepared), str(int8_path), _Batches(input_name, batches),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    _copy_metadata(float_path, int8_path, {
        "type": "int8", "method": "static QDQ, per-channel int8 weights, uint8 activations (min-max)",
        "calibration_images": int(len(calibration)), "float_model": float_path.name})
    return int8_path


def _copy_metadata(source: Path, target: Path, quantization: dict[str, Any]) -> None:
    """The float file's metadata on the int8 file, with how it was quantized."""
    float_model = onnx.load(str(source), load_external_data=False)
    metadata = ModelMetadata.from_properties({p.key: p.value for p in float_model.metadata_props},
                                             [i.name for i in float_model.graph.input],
                                             [o.name for o in float_model.graph.output])
    model = onnx.load(str(target))
    set_metadata(model, replace(metadata, quantization=quantization))
    onnx.save(model, str(target))


def compare_outputs(float_path: str | Path, int8_path: str | Path, images: np.ndarray,
                    labels: np.ndarray | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Top-1 agreement of the int8 file with the float file, and accuracy of both when labels are known."""
    import onnxruntime as ort

    def predict(path: str | Path) -> np.ndarray:
        # the CPU on purpose: the int8 file is compared with the float file where int8 runs, on the CPU
        session = ort.InferenceSession(str(path), providers=list(CPU_ONLY))
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(["logits"], {name: images[i:i + batch_size]})[0]
                               for i in range(0, len(images), batch_size)]).argmax(axis=1)

    float_top1, int8_top1 = predict(float_path), predict(int8_path)
    report: dict[str, Any] = {"images": int(len(images)), "top1_agreement": float((float_top1 == int8_top1).mean()),
                              "float_mib": round(Path(float_path).stat().st_size / 2**20, 2),
                              "int8_mib": round(Path(int8_path).stat().st_size / 2**20, 2)}
    if labels is not None and len(labels):
        report["float_accuracy"] = float((float_top1 == labels).mean())
        report["int8_accuracy"] = float((int8_top1 == labels).mean())
        report["accuracy_change"] = report["int8_accuracy"] - report["float_accuracy"]
    return report
