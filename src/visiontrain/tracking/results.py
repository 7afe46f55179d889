"""What a finished run sends to W&B: config, data report, evaluation plots, sample predictions, model artifacts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from visiontrain.core.redaction import config_without_secrets

log = logging.getLogger("visiontrain")
PLOTS = {"confusion_png": "eval/confusion_matrix", "roc_png": "eval/roc_curve", "pr_png": "eval/pr_curve",
         "curves_png": "eval/curves"}


def wandb_loggers(loggers: list[Any]) -> list[Any]:
    from lightning.pytorch.loggers import WandbLogger

    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def log_run_results(logger: Any, cfg: DictConfig, summary: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    """Everything but per-step metrics (Lightning logs those): config, counts, plots, predictions, artifacts."""
    import wandb

    run = logger.experiment
    run.config.update({"resolved": config_without_secrets(cfg)}, allow_val_change=True)
    parameters = summary.get("parameters") or {}
    run.summary.update({f"parameters/{k}": v for k, v in parameters.items()})
    run.summary.update({"monitor/metric": summary["monitor"]["metric"], "monitor/best": summary["monitor"]["best"]})
    run.summary.update(weights_summary(summary.get("weights")))
    for split, result in summary["evaluation"].items():
        run.summary.update({key: value for key, value in result["metrics"].items()})
    if summary.get("cross_validation"):
        cv = summary["cross_validation"]
        run.summary.update({f"cv/{k}_mean": v for k, v in cv["mean"].items()})
        run.summary.update({f"cv/{k}_std": v for k, v in cv["std"].items()})
    payload: dict[str, Any] = {"data/report": _data_table(summary["data"])}
    for key, name in PLOTS.items():
        path = summary["files"].get(key)
        if path and Path(path).is_file():
            payload[name] = wandb.Image(path)
    importance = summary["evaluation"].get("val", {}).get("feature_importance")
    if importance:
        payload.update(_importance_panels(importance))
    if samples:
        payload["eval/sample_predictions"] = _samples_table(samples)
        if "image" in samples[0]:  # also as an image panel, captioned with true and predicted class
            payload["eval/sample_images"] = [
                wandb.Image(s["image"], caption=f"true {s['true']} / predicted {s['predicted']} ({s['confidence']:.2f})")
                for s in samples]
    run.log(payload)
    log_model_artifacts(run, cfg, summary)


def weights_summary(weights: dict[str, Any] | None) -> dict[str, Any]:
    """Where the starting weights came from and how many tensors were loaded, remapped and skipped."""
    if not weights:
        return {"weights/source": "none (from scratch)"}
    flat = {"weights/source": weights.get("source", weights.get("kind"))}
    if weights.get("loaded") is not None:
        flat.update({f"weights/{k}": weights[k] for k in ("method", "loaded", "remapped", "skipped", "head", "sha256")
                     if k in weights})
    package = weights.get("package") or {}
    flat.update({f"weights/package_{k}": v for k, v in package.items() if k in ("name", "distribution", "version")})
    return flat


def _data_table(data: dict[str, Any]) -> Any:
    """Image runs: files in/used/rejected per split; tabular runs: rows per cleansing rule."""
    import wandb

    if "report" in data:  # tabular
        rows = [[rule, counts["repaired"], counts["rejected"]] for rule, counts in data["report"]["rules"].items()]
        rows.append(["total", data["rows_kept"], data["rows_rejected"]])
        return wandb.Table(columns=["rule", "repaired (kept)", "rejected"], data=rows)
    rows = [[split, cls, count] for split, counts in data.get("per_class", {}).items() for cls, count in counts.items()]
    rows.append(["all", "rejected files", data.get("files_rejected", 0)])
    return wandb.Table(columns=["split", "class", "files"], data=rows)


def _importance_panels(importance: dict[str, Any]) -> dict[str, Any]:
    """Permutation importance as a table (every feature, ranked) and a bar chart of the same rows."""
    import wandb

    columns = ["feature", "importance_mean", "importance_std", "rank"]
    table = wandb.Table(columns=columns, data=[[f[c] for c in columns] for f in importance["features"]])
    title = f"permutation importance ({importance['metric']}, {importance['rows']} {importance['split']} rows)"
    return {"eval/feature_importance": table,
            "eval/feature_importance_chart": wandb.plot.bar(table, "feature", "importance_mean", title=title)}


def _samples_table(samples: list[dict[str, Any]]) -> Any:
    import wandb

    columns = list(samples[0])
    data = [[wandb.Image(value, caption=f"true {sample.get('true')} / predicted {sample.get('predicted')}")
             if column == "image" else value for column, value in sample.items()] for sample in samples]
    return wandb.Table(columns=columns, data=data)


def registry_aliases(summary: dict[str, Any]) -> list[str]:
    """The registry's names for the run's registered version: ``churn-v3`` and its alias, if any."""
    registered = summary.get("registered") or {}
    if not registered:
        return []
    return [f"{registered['model']}-v{registered['version']}", *([registered["alias"]] if registered.get("alias")
                                                                  else [])]


def log_model_artifacts(run: Any, cfg: DictConfig, summary: dict[str, Any]) -> list[str]:
    """The best checkpoint and the ONNX file as ``model`` artifacts with aliases ``best`` and ``latest``; an ONNX
    file the run registered (``register=``) also carries the registry's words: ``<name>-v<n>`` and the alias
    it was given (``candidate``), so W&B and the registry name one version alike."""
    import wandb

    metadata = {"metric": summary["monitor"], "classes": summary.get("classes"), "task": summary["task"],
                "experiment": summary["experiment"], "config": config_without_secrets(cfg)}
    files = {"checkpoint": summary["checkpoints"].get("best"), "onnx": summary["files"].get("onnx")}
    names = []
    for kind, path in files.items():
        if not path or not Path(path).is_file():
            continue
        name = f"{summary['experiment']}-{kind}"
        artifact = wandb.Artifact(name, type="model", metadata={**metadata, "file": Path(path).name},
                                  description=f"{summary['experiment']}: best {kind} by {summary['monitor']['metric']}")
        artifact.add_file(path, name="model.onnx" if kind == "onnx" else "model.ckpt")
        run.log_artifact(artifact, aliases=["best", "latest", *(registry_aliases(summary) if kind == "onnx" else [])])
        names.append(name)
    log.info("W&B: logged artifacts %s (aliases best, latest)", ", ".join(names))
    return names
