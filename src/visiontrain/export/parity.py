"""Check an exported ONNX file against the PyTorch model on real images (timm checks ONNX the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def check_parity(onnx_path: str | Path, model: nn.Module, images: torch.Tensor, atol: float = 1e-3,
                 image_paths: list[str] | None = None) -> dict[str, Any]:
    """Run the same preprocessed batch through onnxruntime and PyTorch; compare logits and top-1.

    ``passed`` requires identical top-1 classes and a max absolute logit difference within ``atol``.
    """
    import onnxruntime as ort

    from visiontrain.export.onnx_export import INPUT_NAME

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = model.eval().to("cpu", torch.float32)
    with torch.no_grad():
        torch_logits = model(images.float()).numpy()
    onnx_logits = session.run(["logits"], {INPUT_NAME: images.float().numpy()})[0]
    difference = float(np.abs(torch_logits - onnx_logits).max())
    same_top1 = torch_logits.argmax(axis=1) == onnx_logits.argmax(axis=1)
    report = {
        "images": int(images.shape[0]),
        "source": "validation images" if image_paths else "random inputs",
        "max_abs_logit_diff": difference,
        "top1_agreement": float(same_top1.mean()),
        "top1_identical": bool(same_top1.all()),
        "atol": atol,
        "passed": bool(same_top1.all() and difference <= atol),
    }
    if image_paths:
        report["mismatched_images"] = [p for p, same in zip(image_paths, same_top1) if not same]
    return report
