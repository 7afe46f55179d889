"""Check an exported ONNX file against the model it came from: on real images, or on held-out table rows.

timm checks its ONNX files the same way: one batch through both, the largest difference and the decisions compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visiontrain.core.providers import CPU_ONLY


def check_parity(onnx_path: str | Path, model: nn.Module, images: torch.Tensor, atol: float = 1e-3,
                 image_paths: list[str] | None = None) -> dict[str, Any]:
    """Run the same preprocessed batch through onnxruntime and PyTorch; compare logits and top-1.

    ``passed`` requires identical top-1 classes and a max absolute logit difference within ``atol``.
    """
    import onnxruntime as ort

    from visiontrain.export.onnx_export import INPUT_NAME

    # the CPU on purpose: parity is against the CPU model below (a GPU's kernels differ in the last bits)
    session = ort.InferenceSession(str(onnx_path), providers=list(CPU_ONLY))
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


def check_table_parity(onnx_path: str | Path, feeds: dict[str, np.ndarray], expected: np.ndarray,
                       classifier: bool, threshold: float, atol: float) -> dict[str, Any]:
    """Run held-out rows (raw columns, ``feeds``) through onnxruntime; compare with the model's ``expected`` scores.

    Classification compares probabilities and the labels at ``threshold``; regression compares predictions
    relative to the target's scale. ``passed`` needs the difference within ``atol`` (and identical labels).
    """
    import onnxruntime as ort

    # the CPU on purpose: ``expected`` comes from the fitted model on the CPU
    session = ort.InferenceSession(str(onnx_path), providers=list(CPU_ONLY))
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    got = outputs["probability" if classifier else "prediction"].astype(np.float64)
    scale = 1.0 if classifier else max(1.0, float(np.abs(expected).max()))  # regression: relative to the target
    difference = float(np.abs(got - expected).max() / scale) if len(got) else 0.0
    parity: dict[str, Any] = {"rows": int(len(expected)), "source": "held-out test rows", "max_abs_diff": difference,
                              "atol": atol}
    if classifier:
        parity["labels_identical"] = bool(np.array_equal(outputs["label"], (expected >= threshold)))
    parity["passed"] = bool(difference <= atol and parity.get("labels_identical", True))
    return parity
