"""Tabular prediction (churn, or any table) as a task of the runner.

source -> cleansing report and rejects -> stratified splits (or K folds) -> feature pipeline fitted on the
training rows of each split -> model (MLP or scikit-learn baseline, all LightningModules) -> metrics, ROC and PR
curves -> one ONNX file with the preprocessing inside.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from visiontrain.config.checks import tabular_settings
from visiontrain.config.commands import EvaluateOptions, ExportOptions
from visiontrain.config.reading import parse
from visiontrain.config.table_schema import TableSchema, write_schema
from visiontrain.config.tabular import EstimatorModel as EstimatorSettings
from visiontrain.config.tabular import TabularTrainConfig
from visiontrain.core.names import TABULAR_TASK
from visiontrain.core.redaction import redact_url
from visiontrain.errors import ConfigError
from visiontrain.tabular.checks import check_tabular_libraries
from visiontrain.tabular.cleansing import describe_reject_warning
from visiontrain.tabular.datamodule import TabularDataModule
from visiontrain.tabular.export import export_tabular_checkpoint
from visiontrain.tabular.features import (
    build_feature_pipeline,
    feature_names,
    model_inputs,
    transform,
)
from visiontrain.tabular.importance import ImportanceResult, importance_metric, permutation_feature_importance
from visiontrain.tabular.inference import leak_flags
from visiontrain.tabular.loading import LoadedTable, load_clean_table, table_source
from visiontrain.tabular.metrics import confusion, plot_roc_pr
from visiontrain.tabular.models import EstimatorModel, TabularMLP, TabularModel, load_tabular_model
from visiontrain.tabular.source_lineage import describe_not_rows
from visiontrain.tabular.splits import Split, check_class_sizes, holdout_split, kfold_splits, split_from_parts
from visiontrain.training.checkpoints import stored_run_config
from visiontrain.training.hardware import build_trainer
from visiontrain.training.reports import write_confusion, write_json
from visiontrain.training.results import Evaluation, ExportResult
from visiontrain.training.task import BuiltModel, PreparedData

log = logging.getLogger("visiontrain")


@dataclass(frozen=True, kw_only=True)
class PreparedTable(PreparedData):
    """The cleaned table (with its original ``row`` numbers), its schema and class names."""

    table: pd.DataFrame
    schema: TableSchema
    class_names: list[str]

    @property
    def held_out(self) -> pd.DataFrame:
        """The rows scored once and never fitted on: the final split's test part (or its val part)."""
        split = self.final_split
        return self.table.iloc[split.test if len(split.test) else split.val]


class TabularTask:
    """How the runner prepares, fits, evaluates and exports a tabular model (see :class:`~visiontrain.training.task.Task`)."""

    name = TABULAR_TASK
    check_libraries = staticmethod(check_tabular_libraries)  # the config checks that need scikit-learn
    report_split = "test"  # the held-out rows: never seen while fitting, tuning or picking the checkpoint

    def __init__(self, cfg: DictConfig, settings: TabularTrainConfig) -> None:
        self.cfg = cfg  # the raw config: what Hydra instantiates (trainer, callbacks, loggers, optimizer, ...)
        self.settings = settings  # the same config parsed and typed: what everything else reads
        self.is_classifier = settings.is_classifier
        self.curve_metric = "roc_auc" if self.is_classifier else "rmse"

    # ----- data ------------------------------------------------------------------------------------------
    def prepare(self, run_dir: Path, is_main_process: bool) -> PreparedTable:
        """Read the table, decide its schema, cleanse and split it (stratified); reports into ``run_dir``.

        Writes rejects.csv, data_report.md/.json and schema.yaml (the schema used, to edit and pass back with
        ``data.schema=``); a rule that rejects a large share of the rows, and a column that leaks the target,
        are logged as warnings and kept for the end-of-run report.
        """
        started = time.perf_counter()
        seed, d = self.settings.seed, self.settings.data
        loaded = load_clean_table(d, seed)
        cleaned, schema = loaded.cleaned, loaded.schema
        report = cleaned.report
        files = self._write_data_reports(loaded, run_dir) if is_main_process else {}  # before any check fails
        warnings = [describe_reject_warning(w, report["rows_in"]) for w in report["warnings"]]
        warnings += [describe_not_rows(report["source"])] if report.get("source", {}).get("not_rows") else []
        for warning in warnings:  # before the class-size check too: they often explain why it fails
            log.warning(warning)
        table = cleaned.frame.reset_index(drop=False).rename(columns={"index": "row"})
        class_names = self._class_names(report["target"].get("negative_label"))
        labels = table[schema.target].to_numpy().astype(int) if self.is_classifier else None
        k = self.settings.cv.folds
        if self.is_classifier:
            check_class_sizes(labels, class_names, schema.target, d.val_fraction, d.test_fraction, k)
        final = split_from_parts(loaded.parts[table["row"].to_numpy() - 1]) if loaded.parts is not None else \
            holdout_split(labels, len(table), d.val_fraction, d.test_fraction, seed)
        folds = kfold_splits(labels, len(table), k, d.val_fraction, seed) if k >= 2 else []
        if loaded.inferred is None:  # inference measured its candidates already (and left the leaks out)
            report["schema"]["leaks"] = self._declared_leaks(table.iloc[final.train], schema)
            if report["schema"]["leaks"] and is_main_process:
                files = self._write_data_reports(loaded, run_dir)
        leaks = [f"possible target leak: {leak}" for leak in report["schema"]["leaks"]]
        for warning in leaks:
            log.warning(warning)
        warnings += leaks
        summary = {"source": redact_url(table_source(d)) if d.source or d.source_env
                   else f"built-in {d.builtin}",
                   "rows_in": report["rows_in"], "rows_kept": report["rows_kept"],
                   "rows_rejected": report["rows_rejected"], "report": report,
                   "split_rows": {"train": len(final.train), "val": len(final.val), "test": len(final.test)},
                   "classes": class_names, "rejects_csv": files.get("rejects"), "warnings": warnings,
                   "lineage_csv": files.get("lineage"), "source_rejects_csv": files.get("source_rejects"),
                   "schema": {"origin": report["schema"]["origin"], "file": report["schema"]["file"],
                              "left_out": report["schema"]["left_out"]},
                   "data_report": files.get("report_md"), "seconds": round(time.perf_counter() - started, 3)}
        return PreparedTable(summary=summary, final_split=final, folds=folds, table=table, schema=schema,
                         class_names=class_names)

    @staticmethod
    def _write_data_reports(loaded: LoadedTable, run_dir: Path) -> dict[str, str]:
        """schema.yaml, rejects.csv, data_report.md/.json (and a topic's or API's lineage.csv and
        source_rejects.csv) of ``loaded`` into ``run_dir``."""
        report = loaded.cleaned.report
        report["schema"]["file"] = str(write_schema(loaded.schema, run_dir / "schema.yaml", report["schema"]))
        lineage = loaded.source.write(run_dir) if loaded.source is not None else {}
        if lineage:
            report["source"].update(lineage_csv=lineage["lineage"], source_rejects_csv=lineage["source_rejects"])
        return {**loaded.cleaned.write(run_dir), **lineage}

    def _declared_leaks(self, train: pd.DataFrame, schema: TableSchema) -> list[str]:
        """Declared columns that alone predict the target on the training rows: flagged, never dropped."""
        values = {name: train[name] for name in schema.columns}
        flags = leak_flags(values, train[schema.target].astype(float), schema.task_type,
                           self.settings.data.inference.leakage_score,
                           drop=False)
        return [flag.describe() for flag in flags]

    def _class_names(self, negative_label: str | None) -> list[str]:
        if not self.is_classifier:
            return []
        positive = self.settings.data.positive_label
        return [str(negative_label or f"not {positive}"), str(positive)]

    # ----- model -----------------------------------------------------------------------------------------
    def build(self, data: PreparedTable, split: Split | None) -> BuiltModel:
        """Fit the feature pipeline on ``split.train`` only, encode every part, and build a fresh model."""
        settings, schema, split = self.settings, data.schema, split or data.final_split
        pipeline = build_feature_pipeline(schema, settings.feature_options)
        pipeline.fit(model_inputs(data.table.iloc[split.train], schema))
        model = settings.model
        is_estimator = isinstance(model, EstimatorSettings)
        datamodule = self.encode(data, split, pipeline, shuffle_train=not is_estimator)
        train_target = datamodule.splits["train"][1]
        shared = {"task_type": settings.data.task_type, "class_names": data.class_names,
                  "feature_names": feature_names(pipeline),
                  "threshold_metric": settings.decision.threshold_metric,
                  "target_scale": (float(np.mean(train_target)), float(np.std(train_target) or 1.0)),
                  "run_config": self._run_config(schema), "feature_pipeline": pipeline}
        balanced = settings.data.balance == "loss_weights"
        if not is_estimator:
            positives = float(np.sum(train_target == 1)) if self.is_classifier else 0.0
            weight = (len(train_target) - positives) / positives if balanced and positives else None
            # the optimizer as Hydra instantiates it (its class and every argument), from the raw config
            module: TabularModel = TabularMLP(in_features=datamodule.splits["train"][0].shape[1],
                                              hidden=list(model.hidden), dropout=model.dropout,
                                              positive_weight=weight,
                                              optimizer=OmegaConf.to_container(self.cfg.optimizer, resolve=True),
                                              cosine=model.cosine, **shared)
            return BuiltModel(datamodule=datamodule, module=module)
        estimator = model.estimator[settings.data.task_type]  # plain data: its _target_ is instantiated
        module = EstimatorModel(estimator=estimator, balanced=balanced, **shared)
        # a baseline fits in one epoch; it has no learning rate to monitor
        return BuiltModel(datamodule=datamodule, module=module, trainer_overrides={"max_epochs": 1},
                          has_learning_rate=False)

    def _run_config(self, schema: TableSchema) -> dict[str, Any]:
        """The run's config as the checkpoint keeps it: with the schema the run used, declared.

        An inferred schema is written out, so that evaluating the checkpoint on new rows uses the training
        schema, not one inferred from those rows.
        """
        run_config = stored_run_config(self.cfg)
        run_config["data"].update({**schema.as_config(), "schema": None})
        return run_config

    def encode(self, data: PreparedTable, split: Split, pipeline: Any, shuffle_train: bool = True) -> TabularDataModule:
        """Every non-empty part of ``split`` through a fitted ``pipeline``, as a datamodule."""
        target = data.table[data.schema.target].to_numpy()
        arrays = {name: (transform(pipeline, data.table.iloc[index], data.schema),
                         target[index].astype(np.int64 if self.is_classifier else np.float32))
                  for name, index in (("train", split.train), ("val", split.val), ("test", split.test)) if len(index)}
        return TabularDataModule(arrays, batch_size=self.settings.data.batch_size, seed=self.settings.seed,
                                 shuffle_train=shuffle_train)

    def info(self, data: PreparedTable, built: BuiltModel) -> dict[str, Any]:
        module = built.module
        return {"model": {"kind": self.settings.model.kind, "name": str(self.settings.model.name),
                          "features_in": len(data.schema.columns), "features_encoded": len(module.feature_names)},
                "parameters": module.parameter_counts()}

    # ----- results ---------------------------------------------------------------------------------------
    def evaluate(self, trainer: pl.Trainer, data: PreparedTable, built: BuiltModel, ckpt_path: str | None,
                 out_dir: Path) -> Evaluation:
        """Score ``ckpt_path`` on val and test; write confusion matrix, ROC and PR curves of each."""
        report: dict[str, Any] = {}
        module, datamodule = built.module, built.datamodule
        for split, run in (("val", trainer.validate), ("test", trainer.test)):
            if split not in datamodule.splits:
                continue
            results = run(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
            entry: dict[str, Any] = {"split": split, "rows": len(datamodule.splits[split][1]),
                                     "metrics": {k: float(v) for k, v in (results[0] if results else {}).items()}}
            if self.is_classifier and trainer.is_global_zero:
                target, scores = module.last_scores[split]
                prefix = "" if split == "test" else "val_"
                matrix = confusion(target, scores, module.threshold)
                files = write_confusion(matrix, data.class_names, out_dir, prefix=prefix, unit=f"{split} rows")
                files.update(plot_roc_pr(target, scores, out_dir, prefix=prefix))
                entry.update(per_class=files.pop("per_class"), files=files, confusion_matrix=matrix.tolist(),
                             threshold=module.threshold)
            report[split] = entry
        if trainer.is_global_zero and "val" in report and out_dir == Path(self.cfg.paths.run_dir):
            report["val"].update(self._feature_importance(data, module, out_dir))  # the final model, no fold
        return Evaluation(**report)

    def _feature_importance(self, data: PreparedTable, module: TabularModel, out_dir: Path) -> dict[str, Any]:
        """Permutation importance of the raw columns on the val rows: feature_importance.csv, a section of
        data_report.md, and the entries the val report carries (``feature_importance``, its csv and seconds)."""
        rows = data.table.iloc[data.final_split.val]
        target = rows[data.schema.target].to_numpy().astype(np.int64 if self.is_classifier else np.float64)
        metric = importance_metric(self.settings.monitor.metric, self.is_classifier)
        result = permutation_feature_importance(module, rows, target, data.schema, metric, seed=self.settings.seed)
        path = result.write_csv(out_dir / "feature_importance.csv")
        report_md = data.summary.get("data_report")
        if report_md and Path(report_md).is_file():
            with open(report_md, "a") as handle:
                handle.write("\n" + result.markdown())
        return {"feature_importance": {**result.as_dict(), "csv": str(path)},
                "timings_seconds": {"feature_importance": result.seconds}}

    def export(self, data: PreparedTable, built: BuiltModel, ckpt_path: str, run_dir: Path, metric: dict[str, Any],
               extra_metadata: dict[str, Any]) -> ExportResult:
        e = self.settings.export  # the opset's range was checked against the installed torch exporter
        return export_tabular_checkpoint(ckpt_path, run_dir / "model.onnx", data.schema, data.held_out, e.atol,
                                         e.opset, metric, extra_metadata, exporter=e.exporter)

    def _scores(self, module: TabularModel, rows: pd.DataFrame, schema: TableSchema) -> np.ndarray:
        import torch

        with torch.no_grad():
            features = torch.as_tensor(transform(module.feature_pipeline, rows, schema))
            return module.eval().scores(features).double().numpy()

    def reference_stats(self, data: PreparedTable, built: BuiltModel) -> dict[str, Any]:
        """Raw feature distributions of the training rows and the model's outputs on the held-out rows."""
        from visiontrain.monitoring.reference import outputs_reference, table_inputs_reference

        schema, module = data.schema, built.module
        train = model_inputs(data.table.iloc[data.final_split.train], schema)
        inputs = table_inputs_reference(train, schema.numeric_features, schema.categorical_features)
        held_out = data.held_out
        scores = self._scores(module, held_out, schema)
        predicted = (scores >= module.threshold).astype(int) if self.is_classifier else None
        outputs = outputs_reference(data.class_names if self.is_classifier else [],
                                    predicted if predicted is not None else np.zeros(0), scores)
        return {"task": f"tabular_{self.settings.data.task_type}", "inputs": inputs,
                "inputs_from": f"{len(train)} training rows", "outputs": outputs,
                "outputs_from": f"{len(held_out)} held-out rows"}

    def sample_predictions(self, data: PreparedTable, built: BuiltModel, count: int = 20) -> list[dict[str, Any]]:
        """The first ``count`` held-out rows with their raw values, true and predicted label, for the tracker."""
        rows, schema, module = data.held_out.iloc[:count], data.schema, built.module
        samples = []
        for (_, row), score in zip(rows.iterrows(), self._scores(module, rows, schema)):
            values = {name: (None if pd.isna(row[name]) else row[name]) for name in schema.columns}
            if self.is_classifier:
                names = data.class_names
                prediction = {"true": names[int(row[schema.target])],
                              "predicted": names[int(score >= module.threshold)], "probability": round(float(score), 4)}
            else:
                prediction = {"true": float(row[schema.target]), "predicted": round(float(score), 4)}
            samples.append({"row": int(row["row"]), **values, **prediction})
        return samples

    # ----- the report ------------------------------------------------------------------------------------
    def describe_data(self, data: dict[str, Any]) -> str:
        target = data["report"]["target"]
        balance = f"{target['positive_rate']:.1%} positive" if self.is_classifier else \
            f"target mean {target['mean']:.3g}"
        return (f"data: {data['rows_in']} rows in = {data['rows_kept']} kept + {data['rows_rejected']} rejected "
                f"({data['rejects_csv']}); {balance}; split {data['split_rows']}")

    def describe_schema(self, data: dict[str, Any]) -> str:
        """Where the features came from, and the columns left out of them."""
        schema = data.get("schema") or {}
        left_out = ", ".join(schema.get("left_out", {})) or "none"
        origin = str(schema.get("origin", "")).split(":")[0]
        return f"schema: {origin}; {len(data['report']['columns'])} features; left out: {left_out} ({schema.get('file')})"

    def describe_export(self, export: dict[str, Any]) -> str:
        p = export["parity"]
        if not self.is_classifier:
            return f"onnx parity on {p['rows']} {p['source']}: max relative prediction diff = {p['max_abs_diff']:.2e}"
        return (f"onnx parity on {p['rows']} {p['source']}: max |probability diff| = {p['max_abs_diff']:.2e}, "
                f"labels identical: {p['labels_identical']}")

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        lines = [f"WARNING {warning}" for warning in summary["data"].get("warnings", [])]
        test = summary["evaluation"].get("test")
        if test:
            lines.append("held-out test: " + "   ".join(f"{k} = {v:.4f}" for k, v in test["metrics"].items()))
        cv = summary.get("cross_validation")
        if cv:
            lines.append(f"{cv['folds']}-fold cross-validation (mean +- std): " + "   ".join(
                f"{k} = {cv['mean'][k]:.4f} +- {cv['std'][k]:.4f}" for k in cv["mean"] if k != "threshold"))
        lines.append(self.describe_data(summary["data"]))
        lines.append(self.describe_schema(summary["data"]))
        importance = summary["evaluation"]["val"].get("feature_importance")
        if importance:
            lines.append(ImportanceResult.from_dict(importance).describe() + f" ({importance['csv']})")
        if summary.get("export"):
            lines.append(self.describe_export(summary["export"]))
        return lines

    # ----- a finished checkpoint ---------------------------------------------------------------------------
    @classmethod
    def _from_checkpoint(cls, data_root: str | None, ckpt: Path, checkpoint: dict[str, Any], run_dir: Path
                         ) -> tuple[TabularTask, PreparedTable, BuiltModel]:
        """The checkpoint's own table and split (same source, cleansing and seed), or ``data_root`` scored whole.

        The stored run config is data: reading the file refused any interpolation in it but the ``${oc.env:NAME}``
        of a data source URL with a secret (:func:`~visiontrain.training.checkpoints.check_stored_settings`).
        """
        module = load_tabular_model(ckpt, checkpoint)
        run_config = OmegaConf.create(module.hparams.run_config)
        if data_root:
            run_config.data.source = str(Path(data_root).expanduser())
            run_config.data.format = "auto"
        task = cls(run_config, tabular_settings(run_config, stored=True))  # checked as a new config is
        data = task.prepare(run_dir, True)
        if data_root:  # a new table: every kept row is scored
            everything = np.arange(len(data.table))
            data = replace(data, final_split=Split("new data", everything[:0], everything, everything), folds=[])
        # with the checkpoint's own fitted pipeline
        datamodule = task.encode(data, data.final_split, module.feature_pipeline)
        return task, data, BuiltModel(datamodule=datamodule, module=module)

    @classmethod
    def evaluate_checkpoint(cls, cfg: DictConfig, ckpt: Path, checkpoint: dict[str, Any],
                            run_dir: Path) -> float | None:
        options = parse(EvaluateOptions, cfg)
        if options.tta != "none":
            raise ConfigError("tta", "test-time augmentation is for image models", "tta=none")
        task, data, built = cls._from_checkpoint(options.data_root, ckpt, checkpoint, run_dir)
        split = options.split
        if split not in built.datamodule.splits:  # never the val rows' metrics under the name asked for
            raise ConfigError("split", f"the checkpoint's run held out no {split} rows (data.test_fraction=0)",
                              "split=val (or data_root=<a table> to score new rows)")
        trainer: pl.Trainer = build_trainer(cfg.trainer, logger=False, enable_checkpointing=False)
        report = task.evaluate(trainer, data, built, None, run_dir)
        result = report.split(split)
        write_json({"checkpoint": str(ckpt), **result.as_dict(), "data": data.summary["report"]},
                   run_dir / "evaluation.json")
        print("\n".join([f"evaluated {ckpt} on {result.rows} {result.split} rows:",
                         *[f"  {k} = {v:.4f}" for k, v in result.metrics.items()],
                         f"  written to {run_dir} (evaluation.json, data_report.md, rejects.csv, curves)"]))
        return next(iter(result.metrics.values()), None)

    @classmethod
    def export_checkpoint(cls, cfg: DictConfig, ckpt: Path, checkpoint: dict[str, Any], output: Path,
                          run_dir: Path) -> ExportResult:
        """Export a tabular checkpoint (preprocessing included) and check it on its held-out rows."""
        options = parse(ExportOptions, cfg)
        if options.quantize:
            raise ConfigError("quantize", "int8 quantization is for image models", "quantize=null")
        task, data, built = cls._from_checkpoint(options.data_root, ckpt, checkpoint, run_dir)
        atol = task.settings.export.atol  # the tolerance the run was trained with (its stored config)
        result = export_tabular_checkpoint(ckpt, output, data.schema, data.held_out, atol, options.opset, None,
                                           module=built.module, exporter=options.exporter)
        write_json(result.as_dict(), run_dir / "export.json")
        print(f"exported {ckpt} -> {output}\n  {task.describe_export(result.as_dict())}, passed: {result.parity.passed}")
        return result


__all__ = ["TabularTask", "PreparedTable", "load_clean_table"]
