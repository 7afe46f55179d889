"""Why the champion is being retrained: the drift of the fresh data, and the alert that started the run.

The drift is measured exactly as `visiontrain drift reference=<champion.onnx> current=<fresh data>` measures it
(:mod:`visiontrain.monitoring`: the reference statistics inside the champion's ONNX file, PSI and KS per feature,
the champion's outputs on the fresh data), and its report is written beside the decision. A drift report given
as ``trigger=`` (the ``drift.json`` of an earlier `visiontrain drift` run, the usual alert) is read and summarised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontrain.core.image_decode import PixelLimit
from visiontrain.errors import ConfigError
from visiontrain.monitoring.compared import current_data
from visiontrain.monitoring.drift import Thresholds, compare, load_reference, write_report

MEASURES = ("feature", "kind", "psi", "ks_statistic", "ks_pvalue", "reference_mean", "current_mean", "drifted")


@dataclass(frozen=True)
class DriftSummary:
    """What drifted and by how much: one row per feature (and model output), drifted ones first."""

    source: str  # the report it summarises (a drift.json), or the data measured
    current: str  # the data compared with the reference, as the report describes it
    drifted: list[str]
    features: list[dict[str, Any]]
    thresholds: dict[str, float]
    report: str | None = None  # drift_report.md, where one was written
    missing_features: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _summary(result: dict[str, Any], source: str, report: str | None) -> DriftSummary:
    rows = [{name: row.get(name) for name in MEASURES} for row in result.get("features", []) + result.get(
        "outputs", [])]
    rows.sort(key=lambda row: (not row["drifted"], -(row["psi"] or 0.0)))
    return DriftSummary(source=source, current=str(result.get("current", "")), drifted=list(result["drifted"]),
                        features=rows, thresholds=dict(result.get("thresholds") or {}), report=report,
                        missing_features=list(result.get("missing_features") or []))


def fresh_data_drift(champion_file: Path, fresh: Path, thresholds: Thresholds, limit: PixelLimit,
                     out_dir: Path) -> DriftSummary:
    """The drift of ``fresh`` against the reference inside ``champion_file``; the report goes to ``out_dir``."""
    try:
        reference, model = load_reference(champion_file)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError("model", f"the champion's ONNX file cannot serve as the drift reference: {error}",
                          "register a model.onnx exported by this visiontrain (it carries reference statistics)"
                          ) from None
    inputs, outputs, rejected, described = current_data(fresh, reference, model, limit)
    result = compare(reference, inputs, outputs, thresholds)
    result.update(current=described, unreadable=rejected)
    files = write_report(result, reference, inputs, outputs, out_dir)
    return _summary(result, str(fresh), files["report"])


def read_trigger(path: Path) -> DriftSummary:
    """The ``drift.json`` that triggered this run, summarised (a ConfigError if it is no drift report)."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError("trigger", f"{path} cannot be read as JSON: {error}",
                          "trigger=<the drift.json `visiontrain drift` wrote>, or trigger=null") from None
    if not isinstance(result, dict) or not {"drifted", "features"} <= set(result):
        raise ConfigError("trigger", f"{path} is not a drift report (it has no `drifted` and `features`)",
                          "trigger=<the drift.json `visiontrain drift` wrote>, or trigger=null")
    report = path.with_name("drift_report.md")
    return _summary(result, str(path), str(report) if report.is_file() else None)
