"""`scripts/bench_backbones.py` run for real on the tiny backbone: every column filled with plausible
figures, accuracy blank unless an accuracy file gives it, an unknown backbone an error row, not a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import REPO, TINY_BACKBONE

sys.path.insert(0, str(REPO / "scripts"))

TIMINGS = ("float_batch1_ms", "int8_batch1_ms", "float_batch32_images_per_s", "int8_batch32_images_per_s",
           "train_images_per_s")
COLUMNS = ("backbone", "image_size", "params_m", "gflops", "onnx_float_mib", "onnx_int8_mib", *TIMINGS,
           "train_batch", "threads", "val_acc", "accuracy_weights", "accuracy_note", "error", "timm", "torch",
           "onnxruntime", "machine")


def bench(tmp_path: Path, *backbones: str, extra: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """The script at 64 px, 2 repeats, batch 4: its JSON and its Markdown file."""
    out, table = tmp_path / "backbones.json", tmp_path / "backbones.md"
    command = [sys.executable, str(REPO / "scripts" / "bench_backbones.py"), "--backbones", *backbones,
               "--img-size", "64", "--repeats", "2", "--train-batch", "4", "--train-steps", "2",
               "--out", str(out), "--markdown", str(table), *extra]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), table.read_text()


def test_every_column_has_plausible_figures_and_an_unknown_backbone_is_an_error_row(tmp_path):
    accuracy = tmp_path / "accuracy.json"
    accuracy.write_text(json.dumps({TINY_BACKBONE: {"val_acc": 0.875, "weights": "random init",
                                                    "note": "8 epochs from scratch"}}))
    results, table = bench(tmp_path, TINY_BACKBONE, "not_a_backbone", extra=("--accuracy", str(accuracy)))
    assert "multiply-accumulates" in results["flops_convention"] and results["calibration_images"] > 0
    tiny, unknown = results["rows"]
    assert set(COLUMNS) <= set(tiny) and set(COLUMNS) <= set(unknown)
    assert tiny["error"] is None and tiny["image_size"] == 64 and tiny["train_batch"] == 4
    assert 0.3 < tiny["params_m"] < 0.5, "test_resnet has 0.37M parameters"
    assert tiny["gflops"] > 0
    assert tiny["onnx_float_mib"] > tiny["onnx_int8_mib"] > 0
    assert all(tiny[key] > 0 for key in TIMINGS), {key: tiny[key] for key in TIMINGS}
    assert tiny["threads"] >= 1 and tiny["timm"] and tiny["torch"] and tiny["onnxruntime"] and tiny["machine"]
    assert (tiny["val_acc"], tiny["accuracy_weights"], tiny["accuracy_note"]) == (0.875, "random init",
                                                                                "8 epochs from scratch")
    assert "unknown timm backbone 'not_a_backbone'" in unknown["error"]
    assert all(unknown[key] is None for key in ("params_m", "gflops", "onnx_float_mib", *TIMINGS))
    assert unknown["val_acc"] is None, "the file has no entry for it: blank"
    lines = table.splitlines()
    assert lines[0].startswith("| backbone | px | params (M) | GFLOPs |") and len(lines) == 4
    assert "| 0.875 | 8 epochs from scratch |" in lines[2] and "error: ConfigError" in lines[3]


def test_without_an_accuracy_file_the_accuracy_columns_are_blank():
    """What the script does without --accuracy, in-process: a second run would repeat 20 s of imports."""
    from bench_backbones import accuracy_columns, read_accuracy

    assert accuracy_columns(TINY_BACKBONE, read_accuracy(None)) == {"val_acc": None, "accuracy_weights": None,
                                                                    "accuracy_note": None}
