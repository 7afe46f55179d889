"""`scripts/bench_exporters.py` run for real on the tiny backbone and the tabular MLP: a row per exporter with
the opset each wrote, a symbolic batch axis, parity at batch 1 and 7, timings, the int8 path, and the tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, TINY_BACKBONE


def test_each_exporter_gets_a_row_with_every_figure_and_the_report_says_how_it_was_made(tmp_path):
    out, table = tmp_path / "exporters.json", tmp_path / "exporters.md"
    command = [sys.executable, str(REPO / "scripts" / "bench_exporters.py"), "--backbones", TINY_BACKBONE,
               "--repeats", "2", "--suite-repeats", "1", "--json", str(out), "--markdown", str(table)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    results = json.loads(out.read_text())
    rows = {(row["model"], row["exporter"]): row for row in results["rows"]}
    assert set(rows) == {(model, exporter) for model in (TINY_BACKBONE, "tabular MLP (128, 64)")
                         for exporter in ("torchscript", "dynamo")}
    for (model, exporter), row in rows.items():
        assert row["errors"] == [] and row["opset"] == {"torchscript": 17, "dynamo": 18}[exporter]
        assert row["gate_passed"] and row["top1_agreement"] == 1.0 and row["export_s"] > 0
        assert row["batch1_ms"] > 0 and row["batch32_per_s"] > 0 and row["mib"] > 0
        if model == TINY_BACKBONE:
            assert row["batch_axis"] == "batch" and row["prob_diff_odd"] < 1e-4
            assert row["int8_mib"] < row["mib"] and 0 < row["int8_agreement"] <= 1 and row["int8_batch1_ms"] > 0
    assert [s["exporter"] for s in results["suite_cost"]] == ["torchscript", "dynamo"]
    assert all(s["cold_s"] > 0 and s["warm_s"] > 0 for s in results["suite_cost"])
    report = table.read_text()
    assert report.startswith("`python ") and "--backbones test_resnet" in report and "onnxscript" in report
    assert "| model | exporter | px | export s | opset |" in report and "Dynamo / torchscript" in report
