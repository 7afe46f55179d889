"""One retraining run, step after step: every check that needs no training comes first (the champion, its record
and metric, the extra overrides, the fresh data and its target, the trigger), then the split and the drift, then
the challenger's training, the comparison, the registry, and the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from visiontrain.config.commands import RetrainOptions
from visiontrain.errors import ConfigError, RegistryError
from visiontrain.inference.onnx_model import OnnxModel
from visiontrain.model_registry.records import training_record
from visiontrain.model_registry.store import ModelRegistry
from visiontrain.monitoring.drift import Thresholds
from visiontrain.retraining.challenger import check_extra_overrides, replay_overrides, train_challenger
from visiontrain.retraining.champion import Champion, resolve_champion
from visiontrain.retraining.compare import IMAGES, compare_models, kind_of
from visiontrain.retraining.decision import Rule, check_rule, decide
from visiontrain.retraining.holdout import IMAGES as IMAGE_DATA
from visiontrain.retraining.holdout import TABLE, HeldOut, split_images, split_table
from visiontrain.retraining.labels import Target
from visiontrain.retraining.report import RetrainReport, Side, write_report
from visiontrain.retraining.triggers import fresh_data_drift, read_trigger

CHALLENGER_DIR, DRIFT_DIR = "challenger", "drift"


@dataclass(frozen=True)
class RetrainOutcome:
    """What a run decided and where it wrote it."""

    report: RetrainReport
    files: dict[str, str]

    @property
    def promoted(self) -> bool:
        return self.report.decision.promote

    def summary(self) -> str:
        decision, comparison = self.report.decision, self.report.comparison
        drift = self.report.drift
        return (f"visiontrain retrain: {self.report.challenger.label} {decision.verdict} "
                f"({decision.metric} {decision.challenger:.4f} vs {self.report.champion.label} "
                f"{decision.champion:.4f} on {comparison.compared_rows} held-out rows)\n"
                f"  why: {decision.reason}\n"
                f"  drift: {', '.join(drift.drifted) if drift.drifted else 'none'} (fresh data vs "
                f"{self.report.champion.label}'s reference)\n"
                f"  report: {self.files['markdown']}")


def open_registry(url: str) -> ModelRegistry:
    try:
        return ModelRegistry(url)
    except RegistryError as error:
        raise ConfigError("registry", str(error), "registry=<a registry folder, or a URL such as "
                          "s3://bucket/models>") from None


def _split(options: RetrainOptions, champion_model: OnnxModel, fresh: Path, run_dir: Path) -> HeldOut:
    if kind_of(champion_model) == IMAGES:
        return split_images(fresh, champion_model.class_names, options.holdout_fraction, options.train_fraction,
                            options.seed, run_dir)
    return split_table(fresh, Target.of(champion_model), options.holdout_fraction, options.train_fraction,
                       options.seed, run_dir)


def _champion_side(champion: Champion) -> Side:
    record = champion.version.record
    return Side("champion", champion.label, champion.version.version, champion.alias, str(champion.model_file),
                record.get("run_dir"), record.get("data_fingerprint"), record.get("code_version"),
                (record.get("data") or {}).get("source"))


def run_retraining(options: RetrainOptions, run_dir: Path) -> RetrainOutcome:
    """Retrain ``options.model``'s champion on ``options.data`` into ``run_dir``; returns the outcome (a refusal is
    an outcome, not an error)."""
    seconds: dict[str, float] = {}
    started = clock = time.perf_counter()
    registry = open_registry(options.registry)
    champion = resolve_champion(registry, options.model, options.champion_alias)
    champion_model = OnnxModel(champion.model_file)
    kind = kind_of(champion_model)
    rule = Rule(champion.metric, champion.mode, options.min_improvement)
    check_rule(rule, kind)
    check_extra_overrides(options.extra_overrides, IMAGE_DATA if kind == IMAGES else TABLE)
    fresh = Path(options.data).expanduser()
    if not fresh.exists():  # the CLI's check skips a URL: fresh data is read from this machine
        raise ConfigError("data", f"{options.data} is not a file or folder on this machine",
                          "data=<a local table file or image folder>")
    trigger = read_trigger(Path(options.trigger).expanduser()) if options.trigger else None
    print(f"visiontrain retrain: champion {champion.label} ({champion.alias}) from {registry.where}, selected on "
          f"val/{rule.metric} ({rule.mode})", flush=True)

    held_out = _split(options, champion_model, fresh, run_dir)
    seconds["split"] = _lap(clock)
    print(f"  fresh data: {held_out.fresh_rows} rows; {held_out.holdout_rows} held out, the challenger trains on "
          f"{held_out.train_rows}", flush=True)
    clock = time.perf_counter()
    drift = fresh_data_drift(champion.model_file, fresh, Thresholds(*options.drift_thresholds),
                             options.pixel_limit, run_dir / DRIFT_DIR)
    seconds["drift"] = _lap(clock)
    print(f"  drift against {champion.label}'s reference: "
          f"{', '.join(drift.drifted) if drift.drifted else 'none'}", flush=True)

    clock = time.perf_counter()
    challenger_dir = run_dir / CHALLENGER_DIR
    replay = replay_overrides(champion.overrides, held_out, options.extra_overrides, challenger_dir,
                              champion.version.record.get("config"))
    train_challenger(replay, challenger_dir, run_dir)
    seconds["train"] = _lap(clock)

    clock = time.perf_counter()
    challenger_model = OnnxModel(challenger_dir / "model.onnx")
    comparison = compare_models(champion_model, challenger_model, held_out, (champion.label, "challenger"),
                                options.batch_size, options.pixel_limit)
    decision = decide(comparison, rule, options.promote_to)
    seconds["compare"] = _lap(clock)

    record: dict[str, Any] = training_record(challenger_dir)
    record["retrain"] = {"run_dir": str(run_dir), "champion": champion.label, "fresh_data": str(fresh),
                         "verdict": decision.verdict, "reason": decision.reason, "metric": decision.metric,
                         "champion_value": decision.champion, "challenger_value": decision.challenger,
                         "compared_rows": comparison.compared_rows}
    version = registry.register(options.model, challenger_dir / "model.onnx", record,
                                note=f"retrain {run_dir}: {decision.verdict}")
    move = None
    if decision.promote and decision.promote_to:
        move = registry.promote(options.model, version.version, to=decision.promote_to,
                                reason=f"retrain {run_dir}: {decision.metric} {decision.challenger:.4f} vs "
                                       f"{decision.champion:.4f}")
        decision = replace(decision, moved=True)
    comparison = replace(comparison, challenger=replace(comparison.challenger, label=version.label))
    seconds["total"] = _lap(started)
    challenger = Side("challenger", version.label, version.version, decision.promote_to if move else None,
                      str(challenger_dir / "model.onnx"), str(challenger_dir), record.get("data_fingerprint"),
                      record.get("code_version"), str(held_out.train_file))
    report = RetrainReport(registry=registry.where, model=options.model, run_dir=str(run_dir),
                           champion=_champion_side(champion), challenger=challenger, comparison=comparison,
                           decision=decision, held_out=held_out, replay=replay, drift=drift, trigger=trigger,
                           alias_move=move.as_dict() if move else None, seconds=seconds)
    return RetrainOutcome(report, write_report(report, run_dir))


def _lap(since: float) -> float:
    return round(time.perf_counter() - since, 3)
