"""The decision report: ``decision.json`` (for pipelines; its keys are :class:`RetrainReport`'s fields) and
``decision.md`` (for people): both models side by side, every metric and the difference on the same rows, the rule,
the verdict and its reason, what the registry did, the drift that triggered the run, and how the challenger was
trained."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visiontrain.retraining.challenger import Replay
from visiontrain.retraining.compare import Comparison
from visiontrain.retraining.decision import Decision
from visiontrain.retraining.holdout import HeldOut
from visiontrain.retraining.triggers import DriftSummary

SCHEMA_VERSION = 1
JSON_FILE, MARKDOWN_FILE = "decision.json", "decision.md"
DRIFT_ROWS = 10  # features shown in decision.md (drifted first, then by PSI); drift/drift.json has them all


@dataclass(frozen=True)
class Side:
    """One model as the report names it."""

    role: str  # champion | challenger
    label: str  # churn:v3
    version: int | None
    alias: str | None  # the champion's alias; the challenger's after a promotion
    model_file: str
    run_dir: str | None
    data_fingerprint: str | None
    code_version: str | None
    trained_on: str | None  # the data source its record names


@dataclass(frozen=True)
class RetrainReport:
    """Everything ``decision.json`` holds (``schema_version`` first)."""

    registry: str
    model: str
    run_dir: str
    champion: Side
    challenger: Side
    comparison: Comparison
    decision: Decision
    held_out: HeldOut
    replay: Replay
    drift: DriftSummary
    trigger: DriftSummary | None
    alias_move: dict[str, Any] | None  # the registry's history entry of the move, when the alias moved
    seconds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "registry": self.registry, "model": self.model,
                "run_dir": self.run_dir, "decision": {**self.decision.__dict__, "verdict": self.decision.verdict},
                "champion": self.champion.__dict__, "challenger": self.challenger.__dict__,
                "comparison": self.comparison.as_dict(), "held_out": self.held_out.as_dict(),
                "challenger_training": self.replay.as_dict(), "drift": self.drift.as_dict(),
                "trigger": self.trigger.as_dict() if self.trigger else None, "alias_move": self.alias_move,
                "seconds": self.seconds}


def write_report(report: RetrainReport, out_dir: Path) -> dict[str, str]:
    """decision.json and decision.md in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / JSON_FILE).write_text(json.dumps(report.as_dict(), indent=2, default=_plain) + "\n")
    (out_dir / MARKDOWN_FILE).write_text("\n".join(markdown(report)) + "\n")
    return {"json": str(out_dir / JSON_FILE), "markdown": str(out_dir / MARKDOWN_FILE)}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def _number(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def markdown(report: RetrainReport) -> list[str]:
    decision, comparison, champion, challenger = report.decision, report.comparison, report.champion, \
        report.challenger
    lines = [f"# Retrain {report.model}: {challenger.label} {decision.verdict}", "", decision.reason, ""]
    lines += ["| | champion | challenger |", "|---|---|---|",
              f"| model | {champion.label} ({champion.alias}) | {challenger.label}"
              f"{f' ({challenger.alias})' if challenger.alias else ''} |",
              f"| trained on | {champion.trained_on or ''} | {challenger.trained_on or ''} |",
              f"| data fingerprint | `{champion.data_fingerprint}` | `{challenger.data_fingerprint}` |",
              f"| code | {champion.code_version or ''} | {challenger.code_version or ''} |",
              f"| run dir | {champion.run_dir or ''} | {challenger.run_dir or ''} |",
              f"| ONNX file | {champion.model_file} | {challenger.model_file} |", ""]
    lines += [f"## Metrics on the same {comparison.compared_rows} held-out rows", "",
              "| metric | champion | challenger | difference |", "|---|---|---|---|"]
    for name in comparison.metrics:
        shown = f"**{name}** (the rule)" if name == decision.metric else name
        lines.append(f"| {shown} | {_number(comparison.champion.metrics[name])} | "
                     f"{_number(comparison.challenger.metrics[name])} | {_signed(comparison.difference(name))} |")
    held = report.held_out
    lines += ["", f"Rows: {comparison.held_out_rows} held out of {held.fresh_rows} fresh "
              f"({held.holdout_fraction:g}, seed {held.seed}{f', stratified by {held.stratified_by}' if held.stratified_by else ''}); "
              f"{comparison.compared_rows} compared; rejected by the champion {comparison.champion.rejected}, by the "
              f"challenger {comparison.challenger.rejected}; without a usable label {comparison.without_label}.", ""]
    lines += [f"- {note}" for note in comparison.notes] + ([""] if comparison.notes else [])
    lines += ["## Rule", "", f"{decision.rule}: needs {decision.needed:.4f}, reached {decision.challenger:.4f}. "
              f"Decision: **{decision.verdict}**.", ""]
    if report.alias_move:
        move = report.alias_move
        before = f"v{move['from_version']}" if move["from_version"] is not None else "nothing"
        lines += [f"Alias `{move['alias']}` moved from {before} to v{move['to_version']} (registry revision "
                  f"{move['revision']}, by {move['by']}): {move['reason']}", ""]
    else:
        lines += [f"No alias moved; {challenger.label} is registered" + (
            " and can be promoted by hand." if not decision.promote else "."), ""]
    lines += _drift_section("## The drift that triggered it", report.drift,
                            f"The fresh data against {champion.label}'s reference statistics (the comparison "
                            "`visiontrain drift` runs)")
    if report.trigger:
        lines += _drift_section("### The drift report given as trigger", report.trigger, f"`{report.trigger.source}`")
    replay = report.replay
    lines += ["## The challenger's training", "",
              f"`visiontrain train {' '.join(replay.overrides)}`", "",
              f"- replayed from {champion.label}'s run: {', '.join(f'`{o}`' for o in replay.kept) or 'none'}",
              f"- left out: {', '.join(f'`{o}`' for o in replay.dropped) or 'none'}",
              f"- added: {', '.join(f'`{o}`' for o in replay.added)}",
              f"- trained on {held.train_rows} of the {held.fresh_rows - held.holdout_rows} rows not held out "
              f"(train_fraction {held.train_fraction:g}): `{held.train_file}`; held out: `{held.holdout_file}`", ""]
    return lines


def _drift_section(title: str, drift: DriftSummary, what: str) -> list[str]:
    verdict = f"drift in {', '.join(drift.drifted)}" if drift.drifted else "no feature drifted"
    lines = [title, "", f"{what}: {verdict}. Current data: {drift.current}."
             + (f" Full report: `{drift.report}`." if drift.report else ""), "",
             "| feature | kind | PSI | KS statistic | KS p-value | reference mean | current mean | drifted |",
             "|---|---|---|---|---|---|---|---|"]
    for row in drift.features[:DRIFT_ROWS]:
        lines.append("| " + " | ".join([str(row["feature"]), str(row["kind"]), _short(row["psi"]),
                                         _short(row["ks_statistic"]), _short(row["ks_pvalue"]),
                                         _short(row["reference_mean"]), _short(row["current_mean"]),
                                         "**yes**" if row["drifted"] else "no"]) + " |")
    if drift.missing_features:
        lines.append(f"\nMissing from the data: {', '.join(drift.missing_features)}")
    return [*lines, ""]


def _short(value: Any) -> str:
    return "" if value is None else f"{value:.3g}"
