"""ONNX export: dynamic batch, metadata inside the file, and a parity check that can fail, with either of torch's
exporters (``export.exporter``: torchscript, or dynamo, which writes opset 18 and up)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import TINY_BACKBONE, written_by
from visiontrain.core.model_metadata import ModelMetadata
from visiontrain.errors import ConfigError
from visiontrain.export.onnx_export import export_onnx
from visiontrain.export.parity import check_parity
from visiontrain.image.backbone import create_backbone

EXPORTERS = [("torchscript", 17), ("dynamo", 18)]  # each with an opset it writes (dynamo: 18 and up)


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """A head with weights, as after training (a new head starts at zero: every logit 0, nothing to compare)."""
    torch.nn.init.normal_(model.get_classifier().weight, std=0.5, generator=torch.Generator().manual_seed(1))
    return model.eval()


def opsets_of(path) -> list[tuple[str, int]]:
    return [(entry.domain, entry.version) for entry in onnx.load(str(path)).opset_import]


@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS)
def test_export_takes_any_batch_and_matches_pytorch(tmp_path, exporter, opset):
    model = trained_like(create_backbone(TINY_BACKBONE, num_classes=3))
    metadata = ModelMetadata(task="image_classification", class_names=["a", "b", "c"], backbone=TINY_BACKBONE)
    path = export_onnx(model, tmp_path / "m.onnx", 40, metadata, opset=opset, exporter=exporter)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert written_by(path) == {exporter} and opsets_of(path) == [("", opset)]
    assert [i.shape[0] for i in (*session.get_inputs(), *session.get_outputs())] == ["batch"] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"], "the weights are inside the file, no .data beside"
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


@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS)
def test_the_int8_copy_of_either_exporters_file_agrees_with_it(tmp_path, exporter, opset):
    from visiontrain.export.quantize import compare_outputs, quantize_int8

    model = trained_like(create_backbone(TINY_BACKBONE, num_classes=3))
    float_path = export_onnx(model, tmp_path / "m.onnx", 32, ModelMetadata(task="image_classification"),
                             opset=opset, exporter=exporter)
    images = torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(0)).numpy()  # an odd batch
    int8 = quantize_int8(float_path, tmp_path / "m.int8.onnx", images)
    report = compare_outputs(float_path, int8, images)
    assert report["top1_agreement"] >= 6 / 7 and report["int8_mib"] < report["float_mib"]
    assert ModelMetadata.read(int8).quantization["type"] == "int8"


@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS)
def test_the_tabular_scorer_takes_any_batch_with_either_exporter(exporter, opset):
    from visiontrain.tabular.models import TabularMLP
    from visiontrain.tabular.onnx_graph import FEATURES, torch_graph

    torch.manual_seed(0)
    mlp = TabularMLP(6, task_type="classification", class_names=["No", "Yes"], feature_names=list("abcdef")).eval()
    graph = torch_graph(mlp, 6, opset, exporter)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        rows = torch.randn(batch, 6)
        with torch.no_grad():
            expected = mlp.scores(rows).numpy()
        (score,) = session.run(["score"], {FEATURES: rows.numpy()})
        assert score.shape == (batch,) and np.abs(score - expected).max() < 1e-6


def test_an_exporter_that_cannot_write_the_opset_asked_for_is_refused_naming_the_fix(tmp_path):
    """The dynamo exporter has no opset-17 translations: it would quietly write 18 into a file asked to be 17."""
    model = trained_like(create_backbone(TINY_BACKBONE, num_classes=3))
    with pytest.raises(ConfigError) as raised:
        export_onnx(model, tmp_path / "m.onnx", 32, ModelMetadata(task="image_classification"), opset=17,
                    exporter="dynamo")
    assert raised.value.key == "export.opset" and "wrote opset 18, not the 17 asked for" in raised.value.problem
    assert raised.value.fix.startswith("export.opset=18") and "export.exporter=torchscript" in raised.value.fix
    assert not (tmp_path / "m.onnx").exists()


class DecidesOnItsInput(torch.nn.Module):
    """A model whose forward branches on the values it is given: torch.export cannot capture it."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = image.mean(dim=(2, 3))
        return pooled if pooled.sum() > 0 else -pooled


def test_a_model_the_dynamo_exporter_cannot_capture_is_refused_not_swapped_for_torchscript(tmp_path):
    with pytest.raises(ConfigError) as raised:
        export_onnx(DecidesOnItsInput(), tmp_path / "m.onnx", 32, ModelMetadata(task="image_classification"),
                    opset=18, exporter="dynamo")
    assert raised.value.key == "export.exporter" and "could not export the model" in raised.value.problem
    assert "data-dependent" in raised.value.problem and "\x1b[" not in raised.value.problem  # the cause, plain
    assert raised.value.fix.startswith("export.exporter=torchscript")
    assert not (tmp_path / "m.onnx").exists()
