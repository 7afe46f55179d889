"""``visiontrain drift``: compare incoming data with the reference statistics recorded at training time.

Tables: per-feature PSI (reference deciles / category shares) and two-sample KS for numbers. Images: the same for
input statistics (size, brightness, colour). Both: the distribution of predicted classes and confidences when
predictions are available (an ONNX model beside the reference, or a serving prediction log). Writes
``drift_report.md``, ``drift.json`` and PNG plots, and says whether any measure crossed its threshold, so a
scheduler can alert on the exit code. numpy, pandas, PIL and onnxruntime only: no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visiontrain.inference.onnx_model import OnnxModel
from visiontrain.monitoring.statistics import categorical_psi, ks_two_sample, numeric_psi


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.25        # above: the distribution moved (0.1-0.25 is a moderate shift, reported only)
    ks_pvalue: float = 0.01  # below (and KS statistic above ks_statistic): a numeric feature moved
    ks_statistic: float = 0.1


def load_reference(reference: str | Path) -> tuple[dict[str, Any], OnnxModel | None]:
    """Reference statistics from a run dir (``reference_stats.json``) or from an exported ONNX file's metadata,
    and the model beside them (one onnxruntime session: it also scores the current data)."""
    path = Path(reference).expanduser()
    if path.is_dir():
        stats_file = path / "reference_stats.json"
        if not stats_file.is_file():
            raise FileNotFoundError(f"{path} has no reference_stats.json: point reference= at a visiontrain run dir "
                                    "or its model.onnx")
        model = path / "model.onnx"
        return json.loads(stats_file.read_text()), OnnxModel(model) if model.is_file() else None
    if path.suffix.lower() == ".onnx" and path.is_file():
        onnx_model = OnnxModel(path)
        if not onnx_model.metadata.reference_stats:
            raise ValueError(f"{path} carries no reference statistics (exported by an older visiontrain?)")
        return onnx_model.metadata.reference_stats, onnx_model
    raise FileNotFoundError(f"reference={reference}: not a run dir or an .onnx file")


def compare_feature(name: str, reference: dict[str, Any], values: Any, thresholds: Thresholds) -> dict[str, Any]:
    """PSI (both kinds) and KS (numbers) of one feature; ``drifted`` when a threshold is crossed."""
    row: dict[str, Any] = {"feature": name, "kind": reference["kind"], "reference_count": reference["count"],
                           "current_count": int(len(values))}
    if reference["kind"] == "numeric":
        numbers = np.asarray(values, dtype=np.float64)
        row["psi"] = numeric_psi(reference, numbers)
        row["ks_statistic"], row["ks_pvalue"] = ks_two_sample(reference["sample"], numbers, reference["count"])
        finite = numbers[np.isfinite(numbers)]
        row["reference_mean"], row["current_mean"] = reference.get("mean"), float(finite.mean()) if finite.size else None
        ks_moved = row["ks_pvalue"] < thresholds.ks_pvalue and row["ks_statistic"] > thresholds.ks_statistic
    else:
        row["psi"] = categorical_psi(reference, values)
        ks_moved = False
    row["drifted"] = bool(row["psi"] > thresholds.psi or ks_moved)
    return row


def compare(reference: dict[str, Any], inputs: dict[str, Any], outputs: dict[str, Any] | None,
            thresholds: Thresholds) -> dict[str, Any]:
    """Every input feature, then the model's outputs (when known), against the reference."""
    rows = [compare_feature(name, spec, inputs[name], thresholds)
            for name, spec in reference["inputs"].items() if name in inputs]
    missing = [name for name in reference["inputs"] if name not in inputs]
    output_rows = []
    if outputs:
        for name, spec in reference["outputs"].items():
            if spec is not None and name in outputs:
                output_rows.append(compare_feature(f"output: {name}", spec, outputs[name], thresholds))
    drifted = [row["feature"] for row in rows + output_rows if row["drifted"]]
    return {"task": reference["task"], "features": rows, "outputs": output_rows, "missing_features": missing,
            "drifted": drifted, "thresholds": thresholds.__dict__,
            "reference_from": {"inputs": reference.get("inputs_from"), "outputs": reference.get("outputs_from")}}


def write_report(result: dict[str, Any], reference: dict[str, Any], inputs: dict[str, Any],
                 outputs: dict[str, Any] | None, out_dir: Path) -> dict[str, str]:
    """drift.json, drift_report.md and one PNG per drifted (or top-PSI) feature."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drift.json").write_text(json.dumps(result, indent=2, default=float))
    rows = result["features"] + result["outputs"]
    plotted = _plots(sorted(rows, key=lambda r: -r["psi"])[:12], reference, inputs, outputs or {}, out_dir)
    verdict = f"DRIFT in {len(result['drifted'])}: {', '.join(result['drifted'])}" if result["drifted"] else "no drift"
    t = result["thresholds"]
    lines = [f"# Drift report: {verdict}", "",
             f"Reference: {result['reference_from']['inputs']}; outputs: {result['reference_from']['outputs']}. "
             f"Current: {result['current']}.", "",
             f"Thresholds: PSI > {t['psi']}, or KS p-value < {t['ks_pvalue']} with KS statistic > {t['ks_statistic']}.",
             "", "| feature | kind | PSI | KS statistic | KS p-value | reference mean | current mean | drifted |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (not r["drifted"], -r["psi"])):
        lines.append("| " + " | ".join([row["feature"], row["kind"], f"{row['psi']:.3f}",
                                         _fmt(row.get("ks_statistic")), _fmt(row.get("ks_pvalue")),
                                         _fmt(row.get("reference_mean")), _fmt(row.get("current_mean")),
                                         "**yes**" if row["drifted"] else "no"]) + " |")
    if result["missing_features"]:
        lines += ["", f"Missing from the current data: {', '.join(result['missing_features'])}"]
    if result.get("unreadable"):
        unused = result["unreadable"]
        shown = "; ".join(f"{where}: {reason}" for where, reason in unused[:5])
        lines += ["", f"Not used ({len(unused)}, all listed in drift.json under `unreadable`): {shown}"
                  f"{'; ...' if len(unused) > 5 else ''}"]
    lines += ["", *[f"![{name}]({Path(path).name})" for name, path in plotted.items()]]
    (out_dir / "drift_report.md").write_text("\n".join(lines) + "\n")
    return {"report": str(out_dir / "drift_report.md"), "json": str(out_dir / "drift.json"), **plotted}


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.3g}"


def _plots(rows: list[dict[str, Any]], reference: dict[str, Any], inputs: dict[str, Any], outputs: dict[str, Any],
           out_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    for row in rows:
        name = row["feature"]
        is_output = name.startswith("output: ")
        key = name.removeprefix("output: ")
        spec = (reference["outputs"] if is_output else reference["inputs"])[key]
        values = (outputs if is_output else inputs)[key]
        figure, axes = plt.subplots(figsize=(5, 3.2))
        if spec["kind"] == "numeric":
            numbers = np.asarray(values, dtype=np.float64)
            numbers = numbers[np.isfinite(numbers)]
            low, high = min(spec["sample"][0], numbers.min()), max(spec["sample"][-1], numbers.max())
            bins = np.linspace(low, high, 30) if high > low else 10
            axes.hist(spec["sample"], bins=bins, density=True, alpha=0.5, label="reference")
            axes.hist(numbers, bins=bins, density=True, alpha=0.5, label="current")
        else:
            from visiontrain.monitoring.statistics import categorical_reference

            current = categorical_reference(values)["proportions"]
            labels = sorted(set(spec["proportions"]) | set(current))
            x = np.arange(len(labels))
            axes.bar(x - 0.2, [spec["proportions"].get(label, 0) for label in labels], 0.4, label="reference")
            axes.bar(x + 0.2, [current.get(label, 0) for label in labels], 0.4, label="current")
            axes.set_xticks(x, [label or "(missing)" for label in labels], rotation=30, ha="right", fontsize=7)
        axes.set_title(f"{name}: PSI {row['psi']:.3f}" + (" (drift)" if row["drifted"] else ""), fontsize=9)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = out_dir / f"drift_{''.join(c if c.isalnum() else '_' for c in name)}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        files[name] = str(path)
    return files
