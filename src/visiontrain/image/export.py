"""An image checkpoint to ONNX: the graph, its self-describing metadata, parity on real images, an int8 copy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visiontrain import __version__
from visiontrain.core.model_metadata import PIXEL_SCALE, ModelMetadata
from visiontrain.core.names import IMAGE_TASK
from visiontrain.errors import ConfigError
from visiontrain.export.onnx_export import INPUT_NAME, export_onnx
from visiontrain.export.parity import check_parity
from visiontrain.export.torch_export import DEFAULT_EXPORTER
from visiontrain.image.classifier import ImageClassifier, load_classifier
from visiontrain.image.datamodule import ImageDataModule
from visiontrain.image.transforms import normalise
from visiontrain.training.results import ExportResult


def export_image_checkpoint(ckpt_path: str | Path, onnx_path: Path, datamodule: ImageDataModule | None,
                            parity_images: int, atol: float, opset: int, metric: dict[str, Any] | None,
                            extra_metadata: dict[str, Any] | None = None, quantize: str | None = None,
                            calibration_images: int = 128, module: ImageClassifier | None = None,
                            exporter: str = DEFAULT_EXPORTER) -> ExportResult:
    """Export ``ckpt_path`` to ONNX (metadata inside) and check onnxruntime against PyTorch on real images.

    ``quantize="int8"`` also writes ``<name>.int8.onnx``, calibrated on training images and compared with the
    float file on the validation images. With ``model.ema`` on, the EMA weights are exported (and checked).
    ``module``: the checkpoint's model when the caller has already loaded it (the file is then not read again).
    ``exporter``: torch's ONNX exporter, ``torchscript`` or ``dynamo`` (``export.exporter``).
    """
    if quantize not in (None, "int8"):  # the config checks refuse it first; never a silently unquantized export
        raise ValueError(f"quantize must be null or int8, got {quantize!r}")
    module = (module or load_classifier(ckpt_path)).eval()
    model = module.evaluation_model()
    spec = module.hparams.input_spec
    metadata = ModelMetadata(
        task=IMAGE_TASK, class_names=list(module.class_names), input_name=INPUT_NAME,
        input_size=[3, spec["image_size"], spec["image_size"]], mean=list(spec["mean"]), std=list(spec["std"]),
        resize_to=spec["resize_to"], crop="center", interpolation=spec["interpolation"], pixel_scale=PIXEL_SCALE,
        backbone=module.hparams.backbone, source_checkpoint=str(Path(ckpt_path).resolve()), metric=metric or {},
        weights_averaged=module.ema is not None, visiontrain_version=__version__, **(extra_metadata or {}))
    started = time.perf_counter()
    export_onnx(model, onnx_path, int(spec["image_size"]), metadata, opset=opset, exporter=exporter)
    images, paths = _parity_batch(datamodule, parity_images, spec)
    parity = check_parity(onnx_path, model, images, atol=atol, image_paths=paths)
    result = {"onnx": str(onnx_path), "parity": parity, "metadata": metadata.as_dict()}
    if quantize == "int8":
        result["int8"] = int8_copy(onnx_path, datamodule, spec, calibration_images)
    return ExportResult(**result, seconds=round(time.perf_counter() - started, 3))


def model_inputs(datamodule: ImageDataModule, split: str, indices: Any, spec: dict[str, Any]) -> torch.Tensor:
    """Images of ``split`` through the eval transform, normalised: exactly what the model sees in validation."""
    dataset = datamodule.dataset(split)
    return normalise(torch.stack([dataset[int(i)][0] for i in indices]), spec["mean"], spec["std"])


def int8_copy(onnx_path: Path, datamodule: ImageDataModule | None, spec: dict[str, Any], calibration_images: int,
              evaluation_images: int = 1000) -> dict[str, Any]:
    """``model.int8.onnx`` next to ``onnx_path``: calibrated on training images, scored on validation images."""
    from visiontrain.export.quantize import compare_outputs, quantize_int8

    if datamodule is None or not datamodule.inventory.splits.get("train"):
        raise ConfigError("export.quantize", "int8 calibration needs the training images, which are not available",
                          "export.quantize=null, or export from a run whose data is still in place")
    train, val = datamodule.inventory.splits["train"], datamodule.inventory.splits["val"]
    pick = np.linspace(0, len(train) - 1, min(calibration_images, len(train))).astype(int)
    calibration = model_inputs(datamodule, "train", pick, spec).numpy()  # eval transform: no augmentation
    count = min(evaluation_images, len(val))
    images = model_inputs(datamodule, "val", range(count), spec).numpy()
    labels = np.array([val[i].label for i in range(count)])
    int8_path = onnx_path.with_suffix(".int8.onnx")
    started = time.perf_counter()
    quantize_int8(onnx_path, int8_path, calibration)
    seconds = round(time.perf_counter() - started, 3)
    return {"onnx": str(int8_path), "calibration_images": len(calibration), "quantize_seconds": seconds,
            **compare_outputs(onnx_path, int8_path, images, labels)}


def _parity_batch(datamodule: ImageDataModule | None, count: int, spec: dict[str, Any]
                  ) -> tuple[torch.Tensor, list[str]]:
    size = int(spec["image_size"])
    if datamodule is None or count <= 0:
        return torch.randn(max(count, 2), 3, size, size, generator=torch.Generator().manual_seed(0)), []
    samples = datamodule.inventory.splits["val"][:count]
    return model_inputs(datamodule, "val", range(len(samples)), spec), [s.path for s in samples]
