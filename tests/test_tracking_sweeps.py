"""Researchers' story: track runs in W&B (offline here), sweep from the command line, resume a killed run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import offline_env, run_cli, tiny_overrides
from wandb_records import logged_keys, read_records

FAST = ["trainer.enable_progress_bar=false", "trainer.max_epochs=2", "trainer.log_every_n_steps=5"]


def records_of(run_dir: Path, kind: str) -> list:
    return [getattr(r, kind) for r in read_records(run_dir) if r.WhichOneof("record_type") == kind]


def churn_table(path: Path, rows: int = 1500) -> Path:
    from visiontrain.tabular.builtin import generate_churn_table

    generate_churn_table(rows=rows, seed=1).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def wandb_churn_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("wandb_churn")
    run_dir = base / "run"
    result = run_cli("train", "experiment=churn", "logger=wandb", *FAST, f"hydra.run.dir={run_dir}", cwd=base,
                     env=offline_env(base))
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def test_wandb_offline_run_holds_config_metrics_plots_predictions_and_model_artifacts(wandb_churn_run):
    run_dir = wandb_churn_run
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    runs = records_of(run_dir, "run")
    assert runs and runs[0].run_id == run_id and runs[0].project == "visiontrain"

    records = read_records(run_dir)
    assert "resolved" in logged_keys(records, "config")  # the full resolved config
    history_keys = logged_keys(records, "history")
    assert {"val/roc_auc", "train/loss_epoch", "eval/roc_curve", "eval/confusion_matrix",
            "eval/sample_predictions", "data/report"} <= history_keys
    assert any(key.startswith("lr-") for key in history_keys)  # learning rate per parameter group
    summary_keys = logged_keys(records, "summary")
    assert {"parameters/total", "parameters/trainable", "test/roc_auc"} <= summary_keys

    media = list((run_dir / "wandb").glob("offline-run-*/files/media/images/eval/roc_curve_*.png"))
    assert media and media[0].stat().st_size > 1000
    table = next((run_dir / "wandb").glob("offline-run-*/files/media/table/eval/sample_predictions_*.table.json"))
    content = json.loads(table.read_text())
    assert {"true", "predicted", "probability", "Contract"} <= set(content["columns"]) and content["data"]
    importance = next((run_dir / "wandb").glob("offline-run-*/files/media/table/eval/feature_importance_*.table.json"))
    content = json.loads(importance.read_text())
    assert content["columns"] == ["feature", "importance_mean", "importance_std", "rank"]
    ranked = json.loads((run_dir / "summary.json").read_text())["evaluation"]["val"]["feature_importance"]["features"]
    assert [row[0] for row in content["data"]] == [f["feature"] for f in ranked] and len(ranked) >= 10
    assert "eval/feature_importance_chart_table" in history_keys  # the bar chart (wandb.plot.bar) of it

    artifacts = {a.name: a for a in records_of(run_dir, "artifact") if a.type == "model"}
    assert set(artifacts) == {"churn-checkpoint", "churn-onnx"}
    for artifact in artifacts.values():
        assert set(artifact.aliases) == {"best", "latest"}
        metadata = json.loads(artifact.metadata)
        assert metadata["metric"]["metric"] == "val/roc_auc" and metadata["classes"] == ["No", "Yes"]
        assert metadata["config"]["model"]["kind"] == "mlp"
    assert [e.exit_code for e in records_of(run_dir, "exit")] == [0]


def test_image_runs_log_sample_predictions_as_images(tiny_hymenoptera, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides(tiny_hymenoptera, run_dir) if not o.startswith("paths.run_dir")]
    result = run_cli("train", *overrides, "logger=wandb", "trainer.max_epochs=2", "schedule.freeze_epochs=1",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, env=offline_env(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    table = next((run_dir / "wandb").glob("offline-run-*/files/media/table/eval/sample_predictions_*.table.json"))
    content = json.loads(table.read_text())
    assert {"image", "true", "predicted", "confidence"} <= set(content["columns"])
    assert [row[content["columns"].index("true")] for row in content["data"]] == ["ants"] * 8 + ["bees"] * 8
    images = list((run_dir / "wandb").glob("offline-run-*/files/media/images/eval/sample_images_*.png"))
    assert len(images) == 16  # every validation image of the tiny set, captioned with true / predicted
    history_keys = logged_keys(read_records(run_dir), "history")
    lr_keys = {key for key in history_keys if key.startswith("lr-")}
    assert len(lr_keys) >= 2  # head and backbone groups: the freeze and unfreeze stages are visible


def test_api_keys_never_reach_configs_logs_or_artifacts(tmp_path):
    secret = "0123456789abcdef0123456789abcdefSECRET"
    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=churn", "logger=wandb", *FAST, "model=logistic_regression",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     env=offline_env(tmp_path, WANDB_API_KEY=secret, WANDB_MODE="offline"))
    assert result.returncode == 0, result.stderr[-4000:]
    assert secret not in result.stdout + result.stderr
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_a_failed_run_still_finishes_its_wandb_run(tmp_path):
    """The run fails after training (an impossible ONNX tolerance); its W&B run ends with exit code 1."""
    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=churn", "logger=wandb", *FAST, "model=logistic_regression",
                     "export.atol=1e-30", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=offline_env(tmp_path))
    assert result.returncode != 0 and "disagree" in result.stderr
    assert [e.exit_code for e in records_of(run_dir, "exit")] == [1]


def test_a_wandb_sweeps_agent_keeps_its_run_id(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "experiment=churn", "logger=wandb", *FAST, "model=logistic_regression",
                     "optimizer.lr=0.003", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     env=offline_env(tmp_path, WANDB_RUN_ID="agentrun01"))
    assert result.returncode == 0, result.stderr[-4000:]
    assert records_of(run_dir, "run")[0].run_id == "agentrun01"


def test_grid_sweep_goes_on_past_a_crashed_trial_and_summarises_every_trial(tmp_path):
    source = churn_table(tmp_path / "churn.csv")
    sweep_dir = tmp_path / "sweep"
    result = run_cli("train", "-m", "experiment=churn", "logger=wandb", *FAST, f"data.source={source},missing.csv",
                     "model=logistic_regression,gradient_boosting", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
                     env=offline_env(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    with open(sweep_dir / "sweep_summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["completed", "completed", "failed", "failed"]
    values = [float(row["value"]) for row in rows[:2]]
    assert values == sorted(values, reverse=True)  # best first
    assert all("missing.csv" in row["overrides"] and "does not exist" in row["error"] for row in rows[2:])
    assert "| 1 |" in (sweep_dir / "sweep_summary.md").read_text()
    groups = {records_of(Path(row["run_dir"]), "run")[0].run_group for row in rows[:2]}
    assert len(groups) == 1 and groups.pop().endswith(sweep_dir.name)  # one W&B group per sweep


def test_optuna_sweep_records_a_failing_trial_and_returns_the_best(tmp_path):
    source = churn_table(tmp_path / "churn.csv")
    sweep_dir = tmp_path / "optuna"
    result = run_cli("train", "experiment=churn", "hparams_search=churn_optuna", f"data.source={source}", *FAST,
                     "hydra.sweeper.n_trials=4", "model=choice(mlp)", "optimizer.lr=choice(0.002,-1.0)",
                     f"hydra.sweep.dir={sweep_dir}",
                     cwd=tmp_path, env=offline_env(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    with open(sweep_dir / "sweep_summary.csv", newline="") as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    assert len(statuses) == 4 and "crashed" in statuses and "completed" in statuses
    best = (sweep_dir / "optimization_results.yaml").read_text()
    assert "best_value" in best and "optimizer.lr: 0.002" in best


def wait_for_orphaned_wandb_service(pid: int, timeout: float = 60) -> None:
    """W&B's service runs in a session of its own (``wandb-core --pid <its parent>``), so killing the run's process
    group leaves it alive until it notices its parent is gone; until then it holds the run id ("in use")."""
    deadline = time.monotonic() + timeout
    needle = f"--pid\0{pid}\0".encode()
    while time.monotonic() < deadline:
        alive = False
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                alive = alive or needle in cmdline.read_bytes() + b"\0"
            except OSError:
                continue
        if not alive:
            return
        time.sleep(0.2)


def test_resume_latest_continues_a_killed_run_in_its_own_dir(tmp_path):
    """Kill a run mid-epoch; `resume=latest` finishes it in the same dir, same W&B run, every epoch once."""
    epochs = 4  # killed in epoch 2 (after 2 in history.csv): epochs before and after the kill
    source = churn_table(tmp_path / "churn.csv", rows=600)  # batches of 8: about 45 steps an epoch, a few seconds
    outputs = tmp_path / "outputs"
    args = ["experiment=churn", "logger=wandb", f"data.source={source}", "data.batch_size=8",
            f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false", "callbacks.early_stopping.patience=100"]
    env = {key: value for key, value in {**os.environ, **offline_env(tmp_path), "VISIONTRAIN_OUTPUT_DIR": str(outputs),
                                          "PYTHONUNBUFFERED": "1"}.items() if value is not None}
    process = subprocess.Popen([sys.executable, "-m", "visiontrain", "train", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    history = None
    while time.time() < deadline and process.poll() is None:
        found = list(outputs.glob("churn/runs/*/history.csv"))
        if found and len(pd.read_csv(found[0])) >= 2:
            history = found[0]
            break
        time.sleep(0.2)
    assert history is not None and process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_for_orphaned_wandb_service(process.pid)
    run_dir = history.parent
    killed_epochs = len(pd.read_csv(history))
    assert killed_epochs < epochs and not (run_dir / "summary.json").exists()

    result = run_cli("train", *args, "resume=latest", cwd=tmp_path,
                     env={**offline_env(tmp_path), "VISIONTRAIN_OUTPUT_DIR": str(outputs)})
    assert result.returncode == 0, result.stderr[-4000:]
    assert [p.name for p in outputs.glob("churn/runs/*")] == [run_dir.name]  # no new run dir
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row["epoch"] for row in summary["history"]] == list(range(epochs))  # as if it had never stopped
    assert Path(summary["checkpoints"]["best"]).is_file()
    run_ids = {record.run_id for record in records_of(run_dir, "run")}
    assert run_ids == {(run_dir / "wandb_run_id").read_text().strip()}  # the same W&B run, continued
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 2


def test_resume_latest_without_any_run_names_the_key(tmp_path):
    result = run_cli("train", "experiment=churn", "resume=latest", cwd=tmp_path,
                     env={"VISIONTRAIN_OUTPUT_DIR": str(tmp_path / "nothing")})
    assert result.returncode == 2 and "config key `resume`" in result.stderr
