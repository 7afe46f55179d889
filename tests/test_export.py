"""ONNX export: dynamic batch, metadata inside the file, and a parity check that can fail."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from conftest import TINY_BACKBONE
from visiontrain.core.model_metadata import ModelMetadata
from visiontrain.export.onnx_export import export_onnx
from visiontrain.export.parity import check_parity
from visiontrain.image.backbone import create_backbone


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """A head with weights, as after training (a new head starts at zero: every logit 0, nothing to compare)."""
    torch.nn.init.normal_(model.get_classifier().weight, std=0.5, generator=torch.Generator().manual_seed(1))
    return model.eval()


def test_export_takes_any_batch_and_matches_pytorch(tmp_path):
    model = trained_like(create_backbone(TINY_BACKBONE, num_classes=3))
    metadata = ModelMetadata(task="image_classification", class_names=["a", "b", "c"], backbone=TINY_BACKBONE)
    path = export_onnx(model, tmp_path / "m.onnx", 40, metadata)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    for batch in (1, 7):
        images = torch.randn(batch, 3, 40, 40)
        logits, probabilities = session.run(None, {"image": images.numpy()})
        with torch.no_grad():
            expected = model(images).numpy()
        assert np.abs(logits - expected).max() < 1e-4
        assert np.allclose(probabilities, torch.softmax(torch.from_numpy(expected), 1).numpy(), atol=1e-5)
    assert ModelMetadata.read(path) == metadata  # what deploy reads is what export wrote


def test_parity_check_catches_a_model_that_differs(tmp_path):
    model = trained_like(create_backbone(TINY_BACKBONE, num_classes=3))
    path = export_onnx(model, tmp_path / "m.onnx", 32, ModelMetadata(task="image_classification"))
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert check_parity(path, model, images)["passed"]
    with torch.no_grad():
        model.fc.weight.mul_(-1.0)  # the checkpoint now disagrees with the exported file
    report = check_parity(path, model, images)
    assert not report["passed"] and report["max_abs_logit_diff"] > 1e-3 and report["top1_agreement"] < 1.0
