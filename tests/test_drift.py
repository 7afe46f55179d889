"""A deployer's story: compare this week's data with what the model was trained on, and alert on drift."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from conftest import TELCO_SAMPLE, run_cli
from visiontrain.monitoring.statistics import (
    categorical_psi,
    categorical_reference,
    ks_two_sample,
    numeric_psi,
    numeric_reference,
)

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'lightning', 'timm', 'albumentations', 'sklearn', 'skl2onnx'}:
            raise ImportError(f'{name} is blocked: the inference side must not need it')
sys.meta_path.insert(0, Block())
from visiontrain.cli import main
main(sys.argv[1:])
"""


def test_psi_and_ks_measure_what_they_should():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    reference = rng.normal(size=4000)
    same, shifted = rng.normal(size=1000), rng.normal(0.5, 1, size=1000)
    summary = numeric_reference(reference)
    assert numeric_psi(summary, same) < 0.05 < 0.1 < numeric_psi(summary, shifted)
    statistic, pvalue = ks_two_sample(reference, shifted)
    expected = ks_2samp(reference, shifted)
    assert statistic == pytest.approx(expected.statistic) and pvalue == pytest.approx(expected.pvalue, rel=0.05, abs=1e-12)
    categories = categorical_reference(["a"] * 50 + ["b"] * 50)
    assert categorical_psi(categories, ["a"] * 50 + ["b"] * 50) == pytest.approx(0.0)
    assert categorical_psi(categories, ["a"] * 90 + ["c"] * 10) > 0.25


@pytest.fixture(scope="module")
def churn_reference(tmp_path_factory):
    from visiontrain.tabular.builtin import generate_churn_table

    base = tmp_path_factory.mktemp("drift_churn")
    table = generate_churn_table(rows=2000, seed=5)
    table.to_csv(base / "train.csv", index=False)
    run_dir = base / "run"
    result = run_cli("train", "experiment=churn", f"data.source={base / 'train.csv'}", "model=logistic_regression",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", cwd=base)
    assert result.returncode == 0, result.stderr[-3000:]
    return base, run_dir, table


def test_data_like_the_training_data_shows_no_drift(churn_reference, tmp_path):
    base, run_dir, _ = churn_reference
    from visiontrain.tabular.builtin import generate_churn_table

    generate_churn_table(rows=1500, seed=6).to_csv(tmp_path / "week.csv", index=False)  # same process, new draw
    result = run_cli("drift", f"reference={run_dir}", f"current={tmp_path / 'week.csv'}", f"output={tmp_path / 'r'}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = json.loads((tmp_path / "r" / "drift.json").read_text())
    assert report["drifted"] == [] and len(report["features"]) == 19 and report["outputs"]
    assert "no drift" in (tmp_path / "r" / "drift_report.md").read_text()


def test_shifted_data_is_reported_and_fails_the_command(churn_reference, tmp_path):
    base, run_dir, table = churn_reference
    shifted = table.copy()
    shifted["tenure"] = "1"  # a wave of brand-new, month-to-month customers: the churn risk the model sees jumps
    shifted["Contract"] = "Month-to-month"
    shifted.to_parquet(tmp_path / "week.parquet")
    result = run_cli("drift", f"reference={run_dir / 'model.onnx'}", f"current={tmp_path / 'week.parquet'}",
                     f"output={tmp_path / 'r'}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads((tmp_path / "r" / "drift.json").read_text())
    assert {"tenure", "Contract"} <= set(report["drifted"])
    assert "output: confidence" in report["drifted"] or "output: predicted_class" in report["drifted"]
    assert (tmp_path / "r" / "drift_tenure.png").is_file() and "**yes**" in (tmp_path / "r" / "drift_report.md").read_text()


def test_rows_predict_would_reject_are_left_out_and_listed(churn_reference, tmp_path):
    """An infinity is no number for predict, and so not for drift either: its row is listed, not compared."""
    _, run_dir, table = churn_reference
    week = table.head(400).astype(str)
    week.loc[[3, 7], "tenure"] = ["inf", "-Infinity"]
    week.loc[11, "MonthlyCharges"] = "lots"
    week.to_csv(tmp_path / "week.csv", index=False)
    result = run_cli("drift", f"reference={run_dir}", f"current={tmp_path / 'week.csv'}", f"output={tmp_path / 'r'}",
                     cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads((tmp_path / "r" / "drift.json").read_text())
    assert [(where.rsplit(": ", 1)[1], reason) for where, reason in report["unreadable"]] == [
        ("row 4", "tenure: 'inf' is not a finite number"), ("row 8", "tenure: '-Infinity' is not a finite number"),
        ("row 12", "MonthlyCharges: 'lots' is not a number")]
    counts = {row["feature"]: row["current_count"] for row in report["features"]}
    assert counts["tenure"] == counts["Contract"] == 397 and report["current"].startswith("400 rows of")
    assert "3 not used" in report["current"] and "Not used (3" in (tmp_path / "r" / "drift_report.md").read_text()


def test_raw_telco_values_are_normalised_like_training(churn_reference, tmp_path):
    """SeniorCitizen is 0/1 in the Telco file and No/Yes after training's cleansing: that is not drift."""
    _, run_dir, _ = churn_reference
    result = run_cli("drift", f"reference={run_dir}", f"current={TELCO_SAMPLE}", f"output={tmp_path / 'r'}",
                     cwd=tmp_path)
    report = json.loads((tmp_path / "r" / "drift.json").read_text())
    psi = {row["feature"]: row["psi"] for row in report["features"]}
    assert psi["SeniorCitizen"] < 0.1 and psi["Partner"] < 0.1, result.stdout


def test_darker_images_are_drift_in_brightness(tiny_hymenoptera, tiny_image_run, tmp_path):
    run_dir = tiny_image_run
    reference = json.loads((run_dir / "reference_stats.json").read_text())
    assert set(reference["inputs"]) == {"width", "height", "brightness", "mean_r", "mean_g", "mean_b"}
    night = tmp_path / "night"
    night.mkdir()
    for path in sorted((tiny_hymenoptera / "val").rglob("*.jp*g")):
        ImageEnhance.Brightness(Image.open(path).convert("RGB")).enhance(0.25).save(night / f"{path.stem}.jpg")
    (night / "broken.jpg").write_bytes(b"not a jpeg")
    result = run_cli("drift", f"reference={run_dir}", f"current={night}", f"output={tmp_path / 'r'}", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    report = json.loads((tmp_path / "r" / "drift.json").read_text())
    assert "brightness" in report["drifted"] and report["unreadable"][0][0].endswith("broken.jpg")


def test_drift_runs_without_torch(churn_reference, tmp_path):
    base, run_dir, _ = churn_reference
    command = [sys.executable, "-c", BLOCK_TORCH, "drift", f"reference={run_dir / 'model.onnx'}",
               f"current={base / 'train.csv'}", f"output={tmp_path / 'r'}"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "r" / "drift_report.md").is_file()


def _jpegs(folder, width: int, count: int = 12):
    """Real JPEG photos-to-be: ``count`` images ``width`` px wide, of varied colour and height."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(width)
    for index in range(count):
        pixels = rng.integers(0, 255, size=(int(rng.integers(90, 110)), width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.jpg", quality=90)
    return folder


def _image_reference(folder):
    from visiontrain.monitoring.current import image_inputs
    from visiontrain.monitoring.reference import image_inputs_reference

    inputs, _, _ = image_inputs(folder)
    rows = [dict(zip(inputs, values)) for values in zip(*inputs.values())]
    return {"task": "image_classification", "inputs": image_inputs_reference(rows), "outputs": {}}


def _width_row(result: dict) -> dict:
    return next(row for row in result["features"] if row["feature"] == "width")


def test_a_constant_reference_width_still_measures_a_move(tmp_path):
    """Every reference image 128 px wide, every current one 399: deciles alone collapse to one bin (PSI 0)."""
    from visiontrain.monitoring.current import image_inputs
    from visiontrain.monitoring.drift import Thresholds, compare

    reference = _image_reference(_jpegs(tmp_path / "reference", 128))
    assert reference["inputs"]["width"]["points"] == [128.0]
    moved, _, _ = image_inputs(_jpegs(tmp_path / "current", 399))
    same, _, _ = image_inputs(_jpegs(tmp_path / "again", 128, count=7))
    result = compare(reference, moved, None, Thresholds())
    width = _width_row(result)
    assert width["psi"] > 5 and width["ks_statistic"] == 1.0 and width["ks_pvalue"] < 1e-4
    assert "width" in result["drifted"]
    steady = _width_row(compare(reference, same, None, Thresholds()))
    assert steady["psi"] == pytest.approx(0.0, abs=1e-9) and steady["ks_statistic"] == 0.0
    assert not steady["drifted"]


def test_a_near_constant_reference_measures_moves_off_and_onto_its_value():
    rng = np.random.default_rng(3)
    reference_values = np.concatenate([np.full(950, 128.0), rng.uniform(100, 200, size=50)])
    reference = numeric_reference(reference_values)
    assert reference["points"] == [128.0]
    assert numeric_psi(reference, rng.permutation(reference_values)[:400]) < 0.05
    assert numeric_psi(reference, rng.uniform(100, 200, size=400)) > 1  # same range, off the common value
    assert numeric_psi(reference, np.full(400, 150.0)) > 1              # inside a bin deciles would share
    binary = numeric_reference(rng.integers(0, 2, size=1000).astype(float))  # a 0/1 column kept as a number
    assert binary["points"] == [0.0, 1.0] and numeric_psi(binary, np.full(200, 0.5)) > 5


def _as_stored_before_point_bins(summary: dict) -> dict:
    """A numeric reference as earlier versions wrote it: decile edges deduplicated, no ``points``."""
    sample = np.asarray(summary["sample"])
    edges = np.unique(np.quantile(sample, np.linspace(0, 1, 11)))
    inner = np.searchsorted(edges[1:-1], sample, side="right")
    counts = np.bincount(inner, minlength=max(edges.size - 1, 1))
    old = {key: value for key, value in summary.items() if key != "points"}
    return {**old, "edges": edges.tolist(), "proportions": (counts / counts.sum()).tolist()}


def test_models_exported_before_point_bins_still_load_and_score_a_constant_feature(tmp_path):
    from test_model_metadata import IMAGE_DICT, onnx_file, written_today
    from visiontrain.core.model_metadata import ModelMetadata
    from visiontrain.monitoring.current import image_inputs
    from visiontrain.monitoring.drift import Thresholds, compare, load_reference

    fresh = _image_reference(_jpegs(tmp_path / "reference", 128))
    stored = {**fresh, "inputs": {name: _as_stored_before_point_bins(spec)
                                  for name, spec in fresh["inputs"].items()}}
    assert stored["inputs"]["width"]["edges"] == [128.0] and "points" not in stored["inputs"]["width"]
    metadata = ModelMetadata(**{**IMAGE_DICT, "reference_stats": stored})
    model = onnx_file(tmp_path / "old.onnx", written_today(metadata.to_properties()), inputs=("image",),
                      outputs=("probabilities",))
    reference, _ = load_reference(model)
    assert reference["inputs"]["width"] == stored["inputs"]["width"]  # read as written
    moved, _, _ = image_inputs(_jpegs(tmp_path / "current", 399))
    width = _width_row(compare(reference, moved, None, Thresholds()))
    assert width["psi"] > 5 and width["drifted"]
    for name, spec in stored["inputs"].items():  # features whose deciles did not merge score exactly as before
        if len(spec["edges"]) == 11:
            assert numeric_psi(spec, moved[name]) == pytest.approx(numeric_psi(fresh["inputs"][name], moved[name]))
