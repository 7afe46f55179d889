"""Tabular prediction (churn, or any table) as a task of the runner.

source -> cleansing report and rejects -> stratified splits (or K folds) -> feature pipeline fitted on the
training rows of each split -> model (MLP or scikit-learn baseline, all LightningModules) -> metrics, ROC and PR
curves -> one ONNX file with the preprocessing inside.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from visiontrain.tabular.cleansing import CleaningResult, CleaningRules, cleanse
from visiontrain.tabular.datamodule import TabularDataModule
from visiontrain.tabular.features import FeatureOptions, build_feature_pipeline, feature_names, model_inputs, transform
from visiontrain.redaction import config_without_secrets, redact_url
from visiontrain.tabular.ingest import read_table, source_from_environment
from visiontrain.tabular.metrics import confusion, plot_roc_pr
from visiontrain.tabular.models import EstimatorModel, TabularMLP, TabularModel, load_tabular_model
from visiontrain.tabular.schema import TableSchema
from visiontrain.tabular.splits import Split, check_class_sizes, holdout_split, kfold_splits
from visiontrain.training.reports import write_confusion

log = logging.getLogger("visiontrain")


def table_source(data_cfg: DictConfig | dict) -> str:
    """The file or URL to read; a built-in table is generated first when no source is given."""
    if data_cfg.get("source"):
        return str(data_cfg["source"])
    if data_cfg.get("source_env"):  # a URL with a password, kept out of the config
        return source_from_environment(str(data_cfg["source_env"]))
    from visiontrain.tabular.builtin import materialise_builtin

    path = Path(str(data_cfg["builtin_path"])).expanduser()
    return str(materialise_builtin(str(data_cfg["builtin"]), path))


def load_clean_table(data_cfg: DictConfig | dict) -> tuple[CleaningResult, TableSchema]:
    """Read the configured source and cleanse it against the declared schema."""
    schema = TableSchema.from_config(data_cfg)
    raw = read_table(table_source(data_cfg), str(data_cfg.get("format", "auto")), data_cfg.get("table"),
                     data_cfg.get("query"))
    return cleanse(raw, schema, CleaningRules.from_config(data_cfg.get("cleaning"))), schema


def export_tabular_checkpoint(ckpt_path: str | Path, onnx_path: Path, schema: TableSchema, rows: pd.DataFrame,
                              atol: float, opset: int, metric: dict[str, Any] | None,
                              extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``ckpt_path`` (pipeline + model + threshold) to one ONNX file and check it on ``rows``."""
    import onnxruntime as ort
    import torch

    from visiontrain.export.tabular_onnx import (decision_graph, estimator_graph, join, onnx_feeds, pipeline_graph,
                                                 torch_graph)

    started = time.perf_counter()
    module = load_tabular_model(str(ckpt_path)).eval()
    classifier, numeric, categorical = module.is_classifier, schema.numeric_features, schema.categorical_features
    width = len(module.feature_names)
    scorer = estimator_graph(module.estimator, width, classifier, opset) if isinstance(module, EstimatorModel) \
        else torch_graph(module, width, opset)
    hp = module.hparams
    metadata = {"task": f"tabular_{module.task_type}", "input_columns": {**{n: "float" for n in numeric},
                                                                        **{n: "string" for n in categorical}},
                "column_order": list(schema.columns), "target": schema.target,
                "positive_label": schema.positive_label, "class_names": module.class_names,
                "threshold": module.threshold, "threshold_metric": module.threshold_metric,
                "outputs": ["probability", "label"] if classifier else ["prediction"],
                "missing_values": "numbers: NaN; categories: empty string",
                "model": "estimator" if isinstance(module, EstimatorModel) else "mlp",
                "estimator": hp.get("estimator", {}).get("_target_") if isinstance(module, EstimatorModel) else None,
                "source_checkpoint": str(Path(ckpt_path).resolve()), "metric": metric or {},
                **(extra_metadata or {})}
    join(pipeline_graph(module.feature_pipeline, numeric, categorical, opset), scorer,
         decision_graph(classifier, module.threshold, opset), metadata, onnx_path)

    inputs = model_inputs(rows, schema)
    with torch.no_grad():
        expected = module.scores(torch.as_tensor(transform(module.feature_pipeline, rows, schema))).double().numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, onnx_feeds(inputs, numeric,
                                                                                             categorical))))
    got = outputs["probability" if classifier else "prediction"].astype(np.float64)
    scale = 1.0 if classifier else max(1.0, float(np.abs(expected).max()))  # regression: relative to the target
    difference = float(np.abs(got - expected).max() / scale) if len(got) else 0.0
    parity: dict[str, Any] = {"rows": int(len(rows)), "source": "held-out test rows", "max_abs_diff": difference,
                              "atol": atol}
    if classifier:
        parity["labels_identical"] = bool(np.array_equal(outputs["label"], (expected >= module.threshold)))
    parity["passed"] = bool(difference <= atol and parity.get("labels_identical", True))
    return {"onnx": str(onnx_path), "seconds": round(time.perf_counter() - started, 3), "parity": parity,
            "metadata": metadata}


class TabularTask:
    """How the runner prepares, fits, evaluates and exports a tabular model."""

    name = "tabular"
    report_split = "test"  # the held-out rows: never seen while fitting, tuning or picking the checkpoint

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.schema: TableSchema | None = None
        self.table: pd.DataFrame | None = None
        self.labels: np.ndarray | None = None
        self.final: Split | None = None
        self.datamodule: TabularDataModule | None = None
        self.split: Split | None = None

    # ----- data ------------------------------------------------------------------------------------------
    def prepare(self, run_dir: Path, is_main_process: bool) -> dict[str, Any]:
        cfg = self.cfg
        started = time.perf_counter()
        cleaned, self.schema = load_clean_table(cfg.data)
        files = cleaned.write(run_dir) if is_main_process else {}
        self.table = cleaned.frame.reset_index(drop=False).rename(columns={"index": "row"})
        self.negative_label = cleaned.report["target"].get("negative_label")
        target = self.table[self.schema.target].to_numpy()
        self.labels = target.astype(int) if self.is_classifier else None
        seed, d = int(cfg.seed), cfg.data
        if self.is_classifier:
            check_class_sizes(self.labels, self.class_names, self.schema.target, float(d.val_fraction),
                              float(d.test_fraction), int(cfg.get("cv", {}).get("folds", 0)))
        self.final = holdout_split(self.labels, len(self.table), float(d.val_fraction), float(d.test_fraction), seed)
        report = cleaned.report
        self.data = {"source": redact_url(table_source(d)) if d.get("source") or d.get("source_env")
                     else f"built-in {d.builtin}",
                     "rows_in": report["rows_in"], "rows_kept": report["rows_kept"],
                     "rows_rejected": report["rows_rejected"], "report": report,
                     "split_rows": {"train": len(self.final.train), "val": len(self.final.val),
                                    "test": len(self.final.test)},
                     "classes": self.class_names, "rejects_csv": files.get("rejects"),
                     "data_report": files.get("report_md"),
                     "seconds": round(time.perf_counter() - started, 3)}
        return self.data

    def describe_data(self, data: dict[str, Any]) -> str:
        target = data["report"]["target"]
        balance = f"{target['positive_rate']:.1%} positive" if self.is_classifier else \
            f"target mean {target['mean']:.3g}"
        return (f"data: {data['rows_in']} rows in = {data['rows_kept']} kept + {data['rows_rejected']} rejected "
                f"({data['rejects_csv']}); {balance}; split {data['split_rows']}")

    @property
    def is_classifier(self) -> bool:
        return str(self.cfg.data.task_type) == "classification"

    @property
    def curve_metric(self) -> str:
        return "roc_auc" if self.is_classifier else "rmse"

    @property
    def class_names(self) -> list[str]:
        if not self.is_classifier:
            return []
        negative = getattr(self, "negative_label", None) or f"not {self.cfg.data.positive_label}"
        return [str(negative), str(self.cfg.data.positive_label)]

    def folds(self) -> list[Split]:
        k = int(self.cfg.cv.folds)
        if k < 2:
            return []
        return kfold_splits(self.labels, len(self.table), k, float(self.cfg.data.val_fraction), int(self.cfg.seed))

    def final_split(self) -> Split:
        return self.final

    # ----- model -----------------------------------------------------------------------------------------
    def build(self, split: Split) -> tuple[TabularDataModule, TabularModel]:
        """Fit the feature pipeline on ``split.train`` only, encode every part, and build a fresh model."""
        cfg, schema = self.cfg, self.schema
        options = FeatureOptions.from_config(cfg.get("features"))
        if not cfg.model.get("scale_features", True):
            options = replace(options, scale=False)
        pipeline = build_feature_pipeline(schema, options)
        pipeline.fit(model_inputs(self.table.iloc[split.train], schema))
        arrays = self.encode(split, pipeline).splits
        train_target = arrays["train"][1]
        shared = {"task_type": str(cfg.data.task_type), "class_names": self.class_names,
                  "feature_names": feature_names(pipeline),
                  "threshold_metric": str(cfg.decision.threshold_metric),
                  "target_scale": (float(np.mean(train_target)), float(np.std(train_target) or 1.0)),
                  "run_config": config_without_secrets(cfg)}
        balanced = str(cfg.data.balance) == "loss_weights"
        m = cfg.model
        if m.kind == "mlp":
            positives = float(np.sum(train_target == 1)) if self.is_classifier else 0.0
            weight = (len(train_target) - positives) / positives if balanced and positives else None
            module: TabularModel = TabularMLP(in_features=arrays["train"][0].shape[1], hidden=list(m.hidden),
                                              dropout=float(m.dropout), positive_weight=weight,
                                              optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
                                              cosine=bool(m.cosine), **shared)
        else:
            estimator = OmegaConf.to_container(m.estimator[str(cfg.data.task_type)], resolve=True)
            module = EstimatorModel(estimator=estimator, balanced=balanced, **shared)
        module.feature_pipeline = pipeline
        return self.datamodule, module

    def encode(self, split: Split, pipeline: Any) -> TabularDataModule:
        """Every non-empty part of ``split`` through a fitted ``pipeline``, as this task's datamodule."""
        self.split = split
        target = self.table[self.schema.target].to_numpy()
        arrays = {name: (transform(pipeline, self.table.iloc[index], self.schema),
                         target[index].astype(np.int64 if self.is_classifier else np.float32))
                  for name, index in (("train", split.train), ("val", split.val), ("test", split.test)) if len(index)}
        self.datamodule = TabularDataModule(arrays, batch_size=int(self.cfg.data.batch_size), seed=int(self.cfg.seed))
        return self.datamodule

    def trainer_overrides(self) -> dict[str, Any]:
        """A baseline fits in one epoch; it has no learning rate to monitor."""
        return {"max_epochs": 1} if self.cfg.model.kind == "estimator" else {}

    def info(self, module: TabularModel) -> dict[str, Any]:
        return {"model": {"kind": str(self.cfg.model.kind), "name": str(self.cfg.model.name),
                          "features_in": len(self.schema.columns), "features_encoded": len(module.feature_names)},
                "parameters": module.parameter_counts()}

    # ----- results ---------------------------------------------------------------------------------------
    def evaluate(self, trainer: pl.Trainer, module: TabularModel, ckpt_path: str | None,
                 out_dir: Path, write_files: bool = True) -> dict[str, Any]:
        """Score ``ckpt_path`` on val and test; write confusion matrix, ROC and PR curves of the test split."""
        report: dict[str, Any] = {}
        for split, run in (("val", trainer.validate), ("test", trainer.test)):
            if split not in self.datamodule.splits:
                continue
            results = run(module, datamodule=self.datamodule, ckpt_path=ckpt_path, verbose=False)
            entry: dict[str, Any] = {"split": split, "rows": len(self.datamodule.splits[split][1]),
                                     "metrics": {k: float(v) for k, v in (results[0] if results else {}).items()}}
            if self.is_classifier and trainer.is_global_zero and write_files:
                target, scores = module.last_scores[split]
                prefix = "" if split == "test" else "val_"
                matrix = confusion(target, scores, module.threshold)
                files = write_confusion(matrix, self.class_names, out_dir, prefix=prefix, unit=f"{split} rows")
                files.update(plot_roc_pr(target, scores, out_dir, prefix=prefix))
                entry.update(per_class=files.pop("per_class"), files=files, confusion_matrix=matrix.tolist(),
                             threshold=module.threshold)
            report[split] = entry
        return report

    def export(self, ckpt_path: str, run_dir: Path, metric: dict[str, Any],
               extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        e = self.cfg.export
        return export_tabular_checkpoint(ckpt_path, run_dir / "model.onnx", self.schema, self._held_out_rows(),
                                         float(e.atol), int(e.opset), metric, extra_metadata)

    def _held_out_rows(self) -> pd.DataFrame:
        return self.table.iloc[self.final.test if len(self.final.test) else self.final.val]

    def reference_stats(self, module: TabularModel) -> dict[str, Any]:
        """Raw feature distributions of the training rows and the model's outputs on the held-out rows."""
        import torch

        from visiontrain.monitoring.reference import outputs_reference, table_inputs_reference

        schema = self.schema
        train = model_inputs(self.table.iloc[self.final.train], schema)
        inputs = table_inputs_reference(train, schema.numeric_features, schema.categorical_features)
        held_out = self._held_out_rows()
        with torch.no_grad():
            scores = module.eval().scores(torch.as_tensor(transform(module.feature_pipeline, held_out, schema)))
        scores = scores.double().numpy()
        predicted = (scores >= module.threshold).astype(int) if self.is_classifier else None
        outputs = outputs_reference(self.class_names if self.is_classifier else [],
                                    predicted if predicted is not None else np.zeros(0), scores)
        return {"task": f"tabular_{self.cfg.data.task_type}", "inputs": inputs,
                "inputs_from": f"{len(train)} training rows", "outputs": outputs,
                "outputs_from": f"{len(held_out)} held-out rows"}

    def sample_predictions(self, module: TabularModel, count: int = 20) -> list[dict[str, Any]]:
        """The first ``count`` held-out rows with their raw values, true and predicted label, for the tracker."""
        import torch

        split = self.final_split()
        index = (split.test if len(split.test) else split.val)[:count]
        rows = self.table.iloc[index]
        with torch.no_grad():
            scores = module.eval().scores(torch.as_tensor(transform(module.feature_pipeline, rows, self.schema)))
        samples = []
        for (_, row), score in zip(rows.iterrows(), scores.double().numpy()):
            values = {name: (None if pd.isna(row[name]) else row[name]) for name in self.schema.columns}
            if self.is_classifier:
                names = self.class_names
                prediction = {"true": names[int(row[self.schema.target])],
                              "predicted": names[int(score >= module.threshold)], "probability": round(float(score), 4)}
            else:
                prediction = {"true": float(row[self.schema.target]), "predicted": round(float(score), 4)}
            samples.append({"row": int(row["row"]), **values, **prediction})
        return samples

    def describe_export(self, export: dict[str, Any]) -> str:
        p = export["parity"]
        if not self.is_classifier:
            return f"onnx parity on {p['rows']} {p['source']}: max relative prediction diff = {p['max_abs_diff']:.2e}"
        return (f"onnx parity on {p['rows']} {p['source']}: max |probability diff| = {p['max_abs_diff']:.2e}, "
                f"labels identical: {p['labels_identical']}")


__all__ = ["TabularTask", "load_tabular_model", "load_clean_table"]
