"""`visiontrain retrain`: the loop that closes on drift, with real training, a real registry folder and real ONNX files.

The champion is the cheapest real model (the churn experiment with ``model=logistic_regression``) trained on 3,000
rows of the built-in churn table (:func:`visiontrain.tabular.builtin.generate_churn_table`: the Telco layout, its
columns, categories and quirks, independent customers per seed). Not the 500-row Telco fixture resampled: a
100-row holdout of it measures ROC-AUC to about +-0.04, and resampling it to 3,000 rows puts near-copies of one
customer on both sides of the holdout (tried: a challenger trained on 240 resampled rows then "beat" the champion,
0.870 vs 0.839, which is leakage, not skill).

Two stories, as the issue tells them:

- the shift: the fresh rows' ``tenure`` counts the months left of a 72-month horizon rather than the months
  served (an upstream change of meaning: ``72 - tenure``). The relationship between the strongest feature and
  churn is reversed: the champion's ROC-AUC on the held-out rows falls from about 0.84 to about 0.58, `visiontrain
  drift` flags tenure, and a challenger trained with the champion's own config on the new rows is promoted to
  candidate;
- the worse challenger: unshifted fresh rows, but the challenger trains on a tenth of them (``train_fraction=0.1``,
  240 rows): it scores about 0.78 against the champion's 0.82 and is refused; no alias moves.

Measured with holdout seeds 1-4 as well as the default 42: the refused challenger was 0.03-0.085 below the
champion each time, so the outcome is not the luck of one draw.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import TELCO_SAMPLE, run_cli

ROWS = 3000  # fresh rows: a 600-row holdout measures ROC-AUC to about +-0.02


def _env(base: Path) -> dict[str, str]:
    return {"VISIONTRAIN_CACHE_DIR": str(base / "cache"), "VISIONTRAIN_USER": "retrain-test"}


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> dict:
    """A churn model trained on 3,000 generated Telco-layout rows, registered from its run dir as churn:v1 and
    promoted to production: the registry folder every story copies."""
    from visiontrain.model_registry.records import training_record
    from visiontrain.model_registry.store import ModelRegistry
    from visiontrain.tabular.builtin import generate_churn_table

    base = tmp_path_factory.mktemp("retrain")
    generate_churn_table(rows=ROWS, seed=5).to_csv(base / "champion.csv", index=False)
    run_dir = base / "champion"
    result = run_cli("train", "experiment=churn", f"data.source={base / 'champion.csv'}", "model=logistic_regression",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", cwd=base, env=_env(base))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    registry = ModelRegistry(base / "registry")
    version = registry.register("churn", run_dir / "model.onnx", training_record(run_dir))
    registry.promote("churn", version.version, to="production", reason="first release")
    fresh = generate_churn_table(rows=ROWS, seed=6)  # the same process, new customers
    fresh.to_csv(base / "fresh.csv", index=False)
    return {"base": base, "run_dir": run_dir, "registry": base / "registry", "fresh": fresh}


def copy_registry(champion: dict, tmp_path: Path) -> Path:
    """Each story moves aliases in a registry of its own."""
    return Path(shutil.copytree(champion["registry"], tmp_path / "registry"))


def retrain(registry: Path, data: Path, run_dir: Path, *options: str, model: str = "churn") -> tuple[object, dict]:
    result = run_cli("retrain", f"registry={registry}", f"model={model}", f"data={data}", f"hydra.run.dir={run_dir}",
                     *options, cwd=run_dir.parent, env=_env(run_dir.parent), timeout=300)
    decision = run_dir / "decision.json"
    return result, json.loads(decision.read_text()) if decision.is_file() else {}


def shift_tenure(table: pd.DataFrame) -> pd.DataFrame:
    """``tenure`` as months left of a 72-month horizon (72 - months served); blanks and junk stay as they were."""
    shifted = table.copy()
    served = pd.to_numeric(shifted["tenure"], errors="coerce")
    shifted["tenure"] = (72 - served).where(served.notna()).map(lambda v: "" if pd.isna(v) else str(int(v)))
    return shifted


# --- the two stories ------------------------------------------------------------------------------------------


def test_a_shift_that_hurts_the_champion_promotes_the_challenger_to_candidate(champion, tmp_path):
    from visiontrain.model_registry.store import ModelRegistry

    registry = copy_registry(champion, tmp_path)
    shift_tenure(champion["fresh"]).to_csv(tmp_path / "shifted.csv", index=False)
    alert = run_cli("drift", f"reference={champion['run_dir'] / 'model.onnx'}", f"current={tmp_path / 'shifted.csv'}",
                    f"output={tmp_path / 'alert'}", cwd=tmp_path)
    assert alert.returncode == 1, alert.stdout + alert.stderr[-2000:]  # the alert that starts the loop

    result, report = retrain(registry, tmp_path / "shifted.csv", tmp_path / "run",
                             f"trigger={tmp_path / 'alert' / 'drift.json'}")

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    decision, metrics = report["decision"], report["comparison"]["metrics"]
    champion_auc, challenger_auc = metrics["roc_auc"]["champion"], metrics["roc_auc"]["challenger"]
    trained_auc = ModelRegistry(registry).version("churn", 1).record["metrics"]["test"]["test/roc_auc"]
    assert champion_auc < trained_auc - 0.15  # the shift really hurts the champion (about 0.84 -> 0.58)
    assert challenger_auc > champion_auc + 0.15 and decision["promote"] and decision["moved"]
    assert decision["verdict"] == "promoted to candidate" and decision["metric"] == "roc_auc"
    assert report["comparison"]["compared_rows"] == report["held_out"]["holdout_rows"] == 600
    assert report["comparison"]["champion"]["rejected"] == report["comparison"]["challenger"]["rejected"] == 0
    assert {"acc", "f1", "roc_auc", "pr_auc"} <= set(metrics)

    aliases = ModelRegistry(registry).aliases("churn").aliases
    assert aliases == {"production": 1, "candidate": 2}  # production untouched: a person promotes further
    move = ModelRegistry(registry).history("churn")[-1]
    assert (move.alias, move.from_version, move.to_version) == ("candidate", None, 2)
    assert move.reason == f"retrain {tmp_path / 'run'}: roc_auc {challenger_auc:.4f} vs {champion_auc:.4f}"
    challenger = ModelRegistry(registry).version("churn", 2)
    assert challenger.record["retrain"]["verdict"] == "promoted to candidate"
    assert f"data.source={tmp_path / 'run' / 'train.csv'}" in challenger.record["overrides"]
    assert "model=logistic_regression" in challenger.record["overrides"]  # the champion's own config, replayed

    assert "tenure" in report["drift"]["drifted"] and "tenure" in report["trigger"]["drifted"]
    markdown = (tmp_path / "run" / "decision.md").read_text()
    assert markdown.startswith("# Retrain churn: churn:v2 promoted to candidate")
    assert f"| **roc_auc** (the rule) | {champion_auc:.4f} | {challenger_auc:.4f} |" in markdown
    assert "| tenure | numeric |" in markdown and "### The drift report given as trigger" in markdown
    assert "churn:v2 promoted to candidate (roc_auc" in result.stdout and "challenger | " in result.stdout


def test_a_worse_challenger_is_refused_and_no_alias_moves(champion, tmp_path):
    from visiontrain.model_registry.store import ModelRegistry

    registry = copy_registry(champion, tmp_path)
    history = ModelRegistry(registry).history("churn")

    result, report = retrain(registry, champion["base"] / "fresh.csv", tmp_path / "run", "train_fraction=0.1")

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]  # a refusal is an answer
    decision, held_out = report["decision"], report["held_out"]
    assert (held_out["holdout_rows"], held_out["train_rows"], held_out["left_out_rows"]) == (600, 240, 2160)
    assert not decision["promote"] and not decision["moved"] and decision["verdict"] == "refused"
    assert decision["challenger"] < decision["champion"] - 0.02  # about 0.78 vs 0.82
    assert "so the champion stays" in decision["reason"] and f"{decision['champion']:.4f}" in decision["reason"]
    assert report["drift"]["drifted"] == [] and report["alias_move"] is None  # the same process: no drift
    assert ModelRegistry(registry).aliases("churn").aliases == {"production": 1}
    assert ModelRegistry(registry).history("churn") == history
    assert [v.label for v in ModelRegistry(registry).versions("churn")] == ["churn:v1", "churn:v2"]  # registered
    assert "churn:v2 refused (roc_auc" in result.stdout and "why: roc_auc" in result.stdout
    assert "No alias moved; churn:v2 is registered and can be promoted by hand." in (
        tmp_path / "run" / "decision.md").read_text()


# --- mistakes: refused before any split or training, naming the key and the fix ---------------------------------


def _registry_with(champion: dict, tmp_path: Path, record: bool, alias: str) -> Path:
    from visiontrain.model_registry.records import training_record
    from visiontrain.model_registry.store import ModelRegistry

    registry = ModelRegistry(tmp_path / "registry")
    run_dir = champion["run_dir"]
    version = registry.register("churn", run_dir / "model.onnx", training_record(run_dir) if record else None)
    registry.promote("churn", version.version, to=alias)
    return tmp_path / "registry"


@pytest.mark.parametrize(("setup", "options", "key", "problem", "fix"), [
    ("candidate only", [], "champion_alias", "churn has no alias 'production' (candidate -> v1)",
     "promote the version in service to production first, or champion_alias=candidate"),
    ("no record", [], "model", "churn:v1 (at production) was registered without a training record",
     "register the champion from its run dir"),
    ("no target", [], "data", "telco.csv has no column 'Churn', the outcome the champion predicts",
     "data=<a table of fresh rows with their outcomes in a 'Churn' column>"),
    ("ok", ["holdout_fraction=1.5"], "holdout_fraction", "must be < 1, got 1.5", "holdout_fraction=0.2"),
    ("ok", ["train_fraction=0"], "train_fraction", "must be > 0, got 0", "train_fraction=1.0"),
    ("ok", ["promote_to=staging"], "promote_to", "must be one of candidate, production, none; got 'staging'",
     "promote_to=candidate"),
    ("ok", ['extra_overrides=["data.source=/elsewhere.csv"]'], "extra_overrides",
     "`data.source=/elsewhere.csv` sets data.source, which retraining decides", "drop it from extra_overrides"),
    ("ok", ['extra_overrides=["hydra.run.dir=/tmp/x"]'], "extra_overrides", "sets hydra.run.dir",
     "drop it from extra_overrides"),
], ids=["no production alias", "champion without a record", "fresh data without the target", "holdout_fraction",
        "train_fraction", "promote_to", "extra data.source", "extra run dir"])
def test_mistakes_stop_before_any_training_with_the_key_and_the_fix(champion, tmp_path, setup, options, key,
                                                                     problem, fix):
    registry = _registry_with(champion, tmp_path, record=setup != "no record",
                              alias="candidate" if setup == "candidate only" else "production")
    before = sorted(p.relative_to(registry) for p in registry.rglob("*"))
    fresh = tmp_path / "telco.csv"
    pd.read_csv(TELCO_SAMPLE, dtype=str).drop(columns=["Churn"] if setup == "no target" else []).to_csv(
        fresh, index=False)

    result = run_cli("retrain", f"registry={registry}", "model=churn", f"data={fresh}",
                     f"hydra.run.dir={tmp_path / 'run'}", *options, cwd=tmp_path, env=_env(tmp_path), timeout=120)

    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    line, fix_line = result.stderr.strip().splitlines()[-2:]
    assert line.startswith(f"visiontrain: config error: config key `{key}`: ") and problem in line, line
    assert fix_line.startswith("  fix: ") and fix in fix_line, fix_line
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "run" / "challenger").exists() and not (tmp_path / "run" / "train.csv").exists()
    assert sorted(p.relative_to(registry) for p in registry.rglob("*")) == before  # nothing registered or moved


# --- the parts, in process -------------------------------------------------------------------------------------


def test_the_holdout_is_stratified_seeded_and_train_fraction_keeps_a_stratified_share(tmp_path):
    from visiontrain.retraining.holdout import split_table
    from visiontrain.retraining.labels import Target
    from visiontrain.tabular.builtin import generate_churn_table

    generate_churn_table(rows=1000, seed=3).to_csv(tmp_path / "fresh.csv", index=False)
    target = Target("Churn", ("No", "Yes"), "Yes")

    first = split_table(tmp_path / "fresh.csv", target, 0.2, 0.5, seed=7, out_dir=tmp_path / "a")
    again = split_table(tmp_path / "fresh.csv", target, 0.2, 0.5, seed=7, out_dir=tmp_path / "b")
    other = split_table(tmp_path / "fresh.csv", target, 0.2, 0.5, seed=8, out_dir=tmp_path / "c")

    fresh, held, trained = (pd.read_csv(path, dtype=str, keep_default_na=False)
                            for path in (tmp_path / "fresh.csv", first.holdout_file, first.train_file))
    assert (first.holdout_rows, first.train_rows) == (len(held), len(trained)) and first.stratified_by == "Churn"
    assert abs(first.holdout_rows - 200) <= 2 and abs(first.train_rows - 400) <= 2  # 0.2, then half the rest,
    assert first.train_rows + first.left_out_rows + first.holdout_rows == 1000  # each rounded per class
    assert not set(held["customerID"]) & set(trained["customerID"])  # no row on both sides
    share = {name: (frame["Churn"].str.strip().str.lower() == "yes").mean()
             for name, frame in (("fresh", fresh), ("held", held), ("trained", trained))}
    assert abs(share["held"] - share["fresh"]) < 0.01 and abs(share["trained"] - share["fresh"]) < 0.01
    assert first.holdout_file.read_bytes() == again.holdout_file.read_bytes()  # same data, same seed: same files
    assert first.holdout_file.read_bytes() != other.holdout_file.read_bytes()


def test_image_folders_split_into_manifests_training_and_predict_read(tmp_path):
    from conftest import copy_hymenoptera
    from visiontrain.core.manifest import read_manifest
    from visiontrain.retraining.holdout import split_images

    folder = copy_hymenoptera(tmp_path / "fresh", per_class=5)  # train|val/<class>/*: 10 images per class

    held_out = split_images(folder, ["ants", "bees"], 0.2, 1.0, seed=0, out_dir=tmp_path / "run")

    held = read_manifest(held_out.holdout_file, allow_outside_root=True)
    trained = read_manifest(held_out.train_file, allow_outside_root=True)
    assert (held_out.fresh_rows, held_out.holdout_rows, held_out.train_rows) == (20, 4, 16)
    assert sorted(row.label for row in held) == ["ants", "ants", "bees", "bees"]
    assert all(row.problem is None and row.path.is_file() and row.split is None for row in held + trained)
    assert not {row.path for row in held} & {row.path for row in trained}


def test_the_champion_s_overrides_are_replayed_on_the_training_part(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from visiontrain.retraining.challenger import replay_overrides
    from visiontrain.retraining.holdout import HeldOut

    held_out = HeldOut("table", tmp_path / "fresh.csv", tmp_path / "a run=1" / "train.csv", tmp_path / "h.csv",
                       10, 8, 2, 0, 0.2, 1.0, 0, "Churn")
    recorded = ["experiment=churn", "data.source=/old/churn.csv", "model=logistic_regression", "resume=latest",
                "paths.output_dir=/runs", "hparams_search=churn_optuna", "+data.table=customers", "seed=3",
                "export.onnx=false", "register=churn", "registry=/mnt/models", "register_alias=candidate"]

    replay = replay_overrides(recorded, held_out, ["trainer.max_epochs=3"], tmp_path / "a run=1" / "challenger")

    assert replay.kept == ("experiment=churn", "model=logistic_regression", "seed=3")
    assert replay.dropped == ("data.source=/old/churn.csv", "resume=latest", "paths.output_dir=/runs",
                              "hparams_search=churn_optuna", "+data.table=customers", "export.onnx=false",
                              "register=churn", "registry=/mnt/models", "register_alias=candidate")
    source, extra, run_dir = replay.added
    parsed = OverridesParser.create().parse_overrides([source, run_dir])  # quoted: Hydra reads the paths back
    assert [o.value() for o in parsed] == [str(tmp_path / "a run=1" / name) for name in ("train.csv", "challenger")]
    assert extra == "trainer.max_epochs=3"
    assert replay.overrides == (*replay.kept, *replay.added)


@pytest.mark.parametrize(("mode", "champion", "challenger", "margin", "promote"), [
    ("max", 0.80, 0.80, 0.0, True),  # as good is good enough
    ("max", 0.80, 0.805, 0.01, False),
    ("min", 0.50, 0.45, 0.0, True),  # rmse, loss: lower is better
    ("min", 0.50, 0.49, 0.02, False),
    ("max", float("nan"), 0.9, 0.0, False),  # a metric that is no number compares nothing
])
def test_the_rule_follows_the_monitor_mode_and_the_margin(mode, champion, challenger, margin, promote):
    from visiontrain.retraining.compare import Comparison, ModelScores
    from visiontrain.retraining.decision import Rule, decide

    metrics = ("rmse", "mse", "mae", "r2")
    scores = [ModelScores(label, "m.onnx", dict.fromkeys(metrics, value), 0)
              for label, value in (("churn:v1", champion), ("challenger", challenger))]
    comparison = Comparison("regression", 100, 100, 0, *scores)

    decision = decide(comparison, Rule("rmse", mode, margin), "candidate")

    assert decision.promote is promote and decision.verdict == ("promoted to candidate" if promote else "refused")
    assert decide(comparison, Rule("rmse", mode, margin), "none").promote_to is None


def test_fail_on_refuse_turns_a_refusal_into_exit_1(tmp_path, monkeypatch):
    """For pipelines: the refusal still writes its report and registers the challenger; only the exit code differs."""
    from visiontrain.commands import retrain as command
    from visiontrain.config.commands import RetrainOptions

    class Refused:
        promoted = False

        def summary(self) -> str:
            return "visiontrain retrain: churn:v2 refused"

    monkeypatch.setattr(command, "run_retraining", lambda options, run_dir: Refused())
    (tmp_path / "fresh.csv").write_text("a\n1\n")
    options = {"registry": str(tmp_path), "model": "churn", "data": str(tmp_path / "fresh.csv"),
               "champion_alias": "production", "holdout_fraction": 0.2, "train_fraction": 1.0, "seed": 42,
               "min_improvement": 0.0, "promote_to": "candidate", "fail_on_refuse": False, "extra_overrides": [],
               "trigger": None, "batch_size": 256, "psi_threshold": 0.25, "ks_pvalue": 0.01, "ks_statistic": 0.1,
               "max_image_pixels": 50_000_000}

    assert command.retrain(RetrainOptions(**options), tmp_path).promoted is False
    with pytest.raises(SystemExit) as stopped:
        command.retrain(RetrainOptions(**{**options, "fail_on_refuse": True}), tmp_path)
    assert stopped.value.code == 1


# --- images: the same loop through manifests ------------------------------------------------------------------


@pytest.mark.slow
def test_an_image_champion_is_retrained_on_a_class_folder(tmp_path):
    from conftest import copy_hymenoptera, train_tiny_image_model
    from visiontrain.model_registry.records import training_record
    from visiontrain.model_registry.store import ModelRegistry

    _, model = train_tiny_image_model(tmp_path / "champion", per_class=6)
    registry = ModelRegistry(tmp_path / "registry")
    registry.promote("ants", registry.register("ants", model, training_record(model.parent)).version)
    fresh = copy_hymenoptera(tmp_path / "fresh", per_class=10)

    result, report = retrain(tmp_path / "registry", fresh, tmp_path / "run", "promote_to=none", model="ants")

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    comparison = report["comparison"]
    assert comparison["kind"] == "images" and comparison["compared_rows"] == report["held_out"]["holdout_rows"] == 8
    assert set(comparison["metrics"]) == {"acc", "f1_macro", "acc_top5", "loss"}
    assert report["decision"]["metric"] == "acc" and report["alias_move"] is None
    assert "data.format=manifest" in report["challenger_training"]["added"]
    assert ModelRegistry(tmp_path / "registry").aliases("ants").aliases == {"production": 1}
