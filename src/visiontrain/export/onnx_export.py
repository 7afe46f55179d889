"""Export a trained classifier to ONNX with a dynamic batch axis and its preprocessing in the metadata.

The metadata makes the file self-describing for deployment: class names, input size, mean/std, resize policy,
backbone, source checkpoint and its metric. A consumer needs only onnxruntime, never torch or our config.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from visiontrain.core.model_metadata import ModelMetadata

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
                opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` (in eval mode, on CPU, float32) to ``path`` and embed ``metadata``.

    Uses the TorchScript-based exporter with explicit ``dynamic_axes``: the dynamo exporter has been seen to
    drop or mistranslate dynamic batch axes (pytorch #149065), and a deployment file must take any batch.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _LogitsAndProbabilities(model).eval().to("cpu", torch.float32)
    example = torch.zeros(2, 3, image_size, image_size)
    axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=opset,
                          do_constant_folding=True)
    proto = onnx.load(str(path))
    set_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def set_metadata(proto: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Replace the file's metadata with ``metadata`` (:class:`ModelMetadata`, which deploy reads back)."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata.to_properties())

