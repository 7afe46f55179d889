"""Export a trained classifier to ONNX with a dynamic batch axis and its preprocessing in the metadata.

The metadata makes the file self-describing for deployment: class names, input size, mean/std, resize policy,
backbone, source checkpoint and its metric. A consumer needs only onnxruntime, never torch or our config.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

from visiontrain.core.model_metadata import ModelMetadata
from visiontrain.export.torch_export import DEFAULT_EXPORTER, export_graph

INPUT_NAME, OUTPUT_NAMES = "image", ("logits", "probabilities")
DEFAULT_OPSET = 17


class _LogitsAndProbabilities(nn.Module):
    """The exported graph: normalised image batch in, logits and softmax probabilities out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(image)
        return logits, torch.softmax(logits, dim=-1)


def export_onnx(model: nn.Module, path: str | Path, image_size: int, metadata: ModelMetadata,
                opset: int = DEFAULT_OPSET, exporter: str = DEFAULT_EXPORTER) -> Path:
    """Write ``model`` (in eval mode, on CPU, float32) to ``path`` and embed ``metadata``.

    ``exporter``: torch's ``torchscript`` or ``dynamo`` ONNX exporter (:mod:`visiontrain.export.torch_export`
    checks the batch axis and the opset either writes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _LogitsAndProbabilities(model).eval().to("cpu", torch.float32)
    example = torch.zeros(2, 3, image_size, image_size)
    proto = export_graph(wrapper, example, INPUT_NAME, OUTPUT_NAMES, opset, exporter)
    set_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def set_metadata(proto: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Replace the file's metadata with ``metadata`` (:class:`ModelMetadata`, which deploy reads back)."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata.to_properties())

