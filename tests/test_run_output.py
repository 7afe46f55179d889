"""What a person reads: the console carries our lines and the end-of-run report, the log file the rest; runs
stopped by a config or data mistake leave no empty run dir; run folders are named after their data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lightning.pytorch.utilities.model_summary import summarize

from conftest import TELCO_SAMPLE, compose_train, run_cli, tiny_overrides
from test_summary_schema import assert_valid_summary

# lines a run used to print that say nothing to the user
NOISE = ("contains no parameters", "No artists with labels", "💡 Tip", "GPU available", "TPU available",
         "deprecated", "Restoring states from the checkpoint", "configure_optimizers")
LIBRARY_LOGS = ("GPU available", "Restoring states from the checkpoint")  # kept, in the log file only


def _console(result) -> str:
    return result.stdout + result.stderr


def _total_flops(console: str) -> str | None:
    """The model summary's FLOPs total ("Total FLOPs: 8.2 M" in Rich's table, "8.2 M  Total Flops" without)."""
    match = re.search(r"Total FLOPs: *(\S+(?: [KMGTB])?)|(\S+(?: [KMGTB])?) +Total Flops", console)
    return next(filter(None, match.groups())) if match else None


def _assert_quiet(result, run_dir: Path) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    console = _console(result)
    assert not [line for line in console.splitlines() if any(noise in line for noise in NOISE)]
    assert "=" * 78 in console and f"run dir            {run_dir}" in console  # the report
    log = (run_dir / "visiontrain.log").read_text()
    assert all(line in log for line in LIBRARY_LOGS)
    assert "No artists with labels" not in log  # fixed where it came from, not hidden
    return console


def test_a_baseline_run_prints_the_report_and_logs_the_rest(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=churn", f"data.source={TELCO_SAMPLE}", "model=gradient_boosting",
                     "model.estimator.classification.n_estimators=20", "trainer.enable_progress_bar=false",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    console = _assert_quiet(result, run_dir)
    assert "[visiontrain][INFO] - data:" in console  # our own progress lines stay
    last = run_dir / "checkpoints" / "last.ckpt"
    assert f"checkpoint         {last} (the only one: best and last)" in console
    assert "best checkpoint" not in console
    assert "Total params" not in console  # no model summary table of a model without parameters
    assert_valid_summary(run_dir)  # the published schema holds for a real table run


def test_an_image_run_prints_the_report_and_logs_the_rest(tiny_hymenoptera, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides(tiny_hymenoptera, run_dir) if not o.startswith("paths.run_dir")]
    result = run_cli("train", *overrides, "trainer.max_epochs=2", "schedule.freeze_epochs=1",
                     "export.parity_images=4", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    console = _assert_quiet(result, run_dir)
    assert "best checkpoint    " in console and "best-epoch" in console
    assert "epoch 1: stage fine_tune" in console  # our own lines stay
    assert _total_flops(console) not in (None, "0"), "the model summary measures FLOPs, never prints a 0"
    model_row = next(line for line in console.splitlines() if " model " in line and "ResNet" in line)
    cells = [cell.strip() for cell in re.split(r"[│|]", model_row)]
    assert cells[cells.index("ResNet") + 3] not in ("0", "") and "[1, 3," in model_row, model_row  # its FLOPs
    assert_valid_summary(run_dir)  # and for a real image run


def test_the_tabular_mlp_s_summary_measures_its_flops():
    from visiontrain.tabular.models import TabularMLP

    model = TabularMLP(in_features=6, hidden=[8], task_type="classification", class_names=["no", "yes"],
                       feature_names=[f"f{i}" for i in range(6)])
    assert summarize(model).total_flops == 2 * (6 * 8 + 8 * 1)  # two Linear layers, one row


@pytest.mark.slow  # the same run as test_config_errors.py's `model.weights=null model.backbone=resnet999` case,
# which asserts the same exit, key and absent outputs folder in the default set
def test_a_config_error_leaves_no_run_dir(tmp_path):
    """Found after Hydra made the run dir (the backbone is checked against timm): nothing ran, nothing kept."""
    result = run_cli("train", "model.backbone=no_such_backbone", cwd=tmp_path, timeout=300,
                     env={"VISIONTRAIN_OUTPUT_DIR": str(tmp_path / "outputs")})
    assert result.returncode == 2 and "config error: config key `model.backbone`" in result.stderr, result.stderr
    assert not (tmp_path / "outputs").exists()


def test_a_data_error_keeps_its_run_dir_with_the_error_in_the_log(tmp_path):
    """An empty table file: the run dir records what was tried (config) and why it stopped (log)."""
    (tmp_path / "empty.csv").write_text("")
    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=churn", f"data.source={tmp_path / 'empty.csv'}",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "data error: " in result.stderr and "empty.csv" in result.stderr, \
        result.stderr
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    log = (run_dir / "visiontrain.log").read_text()
    assert "[visiontrain][ERROR] - data error: " in log and "the file is empty" in log


@pytest.mark.parametrize(("overrides", "name"), [
    (["experiment=churn"], "churn"),
    (["experiment=churn", "data.source=/home/me/bank.csv"], "churn-bank"),
    (["experiment=churn", "data.source=/data/telco-churn.csv.gz"], "telco-churn"),
    (["experiment=churn", "data.source='postgresql+psycopg://bob:s3cret@db.example.com:5432/crm?sslpassword=x'"],
     "churn-crm"),
    (["experiment=churn", "data.source='postgresql://bob:s3cret@db.example.com/crm'", "data.table=customers"],
     "churn-customers"),
    (["experiment=churn", "data.source_env=CHURN_DB_URL"], "churn"),  # a secret: never read
    (["experiment=churn", "data.source='sqlite:////tmp/My Bank (2024)!.db'"], "churn-My-Bank-2024"),
    (["experiment=diabetes"], "diabetes"),
    ([], "digits"),
    (["experiment=hymenoptera", "data.root=/data/hymenoptera"], "hymenoptera"),
    (["experiment=hymenoptera", "data.root=/data/pets/"], "hymenoptera-pets"),
    (["data=image_folder", "data.root=/data/pets"], "images-pets"),
    (["experiment=churn", "data.source=/home/me/bank.csv", "task_name=mine"], "mine"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_runs_are_named_after_their_data(overrides, name, tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_DB_URL", "postgresql://bob:s3cret@db.example.com/crm")
    cfg = compose_train(*overrides, f"paths.run_dir={tmp_path}")
    assert cfg.task_name == name


def test_a_sweep_goes_under_the_data_name(tmp_path):
    outputs = tmp_path / "outputs"
    source = tmp_path / "bank.csv"
    source.write_bytes(TELCO_SAMPLE.read_bytes())
    swept = run_cli("train", "-m", "experiment=churn", f"data.source={source}", "model=logistic_regression",
                    "trainer.enable_progress_bar=false", "seed=1", cwd=tmp_path,
                    env={"VISIONTRAIN_OUTPUT_DIR": str(outputs)})
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert len(list(outputs.glob("churn-bank/multiruns/*/0/summary.json"))) == 1
    assert [p.name for p in outputs.iterdir()] == ["churn-bank"]
