"""notebooks/quickstart.ipynb: committed clean, and it runs top to bottom on a real kernel (2 epochs; the default
set with the tiny backbone, the slow set with the notebook's own model)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
KERNEL_NAME = "visiontrain-test"


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_committed_notebook_is_valid_and_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    dirty = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"cells {dirty} of {NOTEBOOK.name} have outputs or execution counts: clear them"
    first = code_cells(notebook)[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell is tagged `parameters`"
    assert re.search(r"^EPOCHS = \d+", first.source, re.MULTILINE), "the first code cell sets EPOCHS = ..."


@pytest.fixture()
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec for this interpreter (the venv's), in a private JUPYTER_PATH."""
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter"
    install(kernel_name=KERNEL_NAME, prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert Path(spec.argv[0]) == Path(sys.executable), spec.argv
    return KERNEL_NAME


# the tiny backbone at 32 px runs every cell in seconds; the notebook's own model (EfficientNet-Lite0 from its
# packaged weights, 64 px: about 4 minutes on 2 cores) is the slow case
TINY_MODEL = ["model.backbone=test_resnet", "model.weights=null", "model.input.image_size=32"]


@pytest.mark.parametrize("overrides", [pytest.param(TINY_MODEL, id="tiny backbone"),
                                       pytest.param([], id="its own model", marks=pytest.mark.slow)])
def test_quickstart_notebook_runs(tmp_path, monkeypatch, venv_kernel, overrides):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # papermill's convention: a cell after the `parameters` cell overrides them
    position = notebook.cells.index(code_cells(notebook)[0]) + 1
    notebook.cells.insert(position, nbformat.v4.new_code_cell(f"EPOCHS = 2\nN_PREDICT = 8\nOVERRIDES = {overrides!r}",
                                                              metadata={"tags": ["injected-parameters"]}))
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("VISIONTRAIN_OUTPUT_DIR", str(outputs))
    monkeypatch.setenv("VISIONTRAIN_CACHE_DIR", str(tmp_path / "cache"))  # the digits are written here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    client = nbclient.NotebookClient(notebook, kernel_name=venv_kernel, timeout=600,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    everything = [output for cell in code_cells(notebook) for output in cell.outputs]
    errors = [o for o in everything if o.output_type == "error"]
    assert not errors, errors
    html = [o.data["text/html"] for o in everything if "text/html" in o.get("data", {})]
    assert any("<table" in table and "val/acc" in table for table in html), "no metrics table in the outputs"
    assert any("precision" in table and "recall" in table for table in html), "no per-class table"
    assert any("predicted" in table for table in html), "no predictions table"
    images = [o for o in everything if "image/png" in o.get("data", {})]
    assert len(images) >= 2, f"expected the curves and the confusion matrix as images, got {len(images)}"
    text = "".join(o.get("text", "") for o in everything if o.output_type == "stream")
    best = re.search(r"best val/acc = (\d\.\d+)", text)
    assert best, text[-2000:]
    accuracy = re.search(r"top-1 accuracy on these 8 validation images: (\d\.\d+)", text)
    assert accuracy, text[-2000:]

    summaries = list(outputs.glob("quickstart/notebook/*/summary.json"))
    assert len(summaries) == 1, summaries
    summary = json.loads(summaries[0].read_text())
    assert float(best.group(1)) == pytest.approx(summary["monitor"]["best"], abs=5e-5), "train() returns the best"
    assert len(summary["history"]) == 2, "the injected EPOCHS = 2 was not used"
    assert summary["weights"]["backbone"] == ("test_resnet" if overrides else "efficientnet_lite0"), \
        "the injected OVERRIDES were not used"
    assert Path(summary["files"]["onnx"]).is_file()
