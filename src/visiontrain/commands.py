"""`visiontrain evaluate` and `visiontrain export` work on a finished checkpoint; `visiontrain lr_find` before one."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from omegaconf import DictConfig, OmegaConf

from visiontrain.config.validation import validate_evaluate_config, validate_lr_find_config
from visiontrain.data.transforms import InputSpec
from visiontrain.config.targets import UntrustedTarget, check_plain_data
from visiontrain.errors import CheckpointError, ConfigError
from visiontrain.tasks.image import (ImageTask, datamodule_for, evaluation_report, export_checkpoint,
                                     load_classifier, scan)
from visiontrain.training.hardware import build_trainer
from visiontrain.training.checkpoints import read_checkpoint
from visiontrain.training.lr_find import LRFindSettings, find_learning_rate, write_lr_find
from visiontrain.training.reports import write_json

log = logging.getLogger("visiontrain")


def _checkpoint(cfg: DictConfig) -> tuple[Path, dict]:
    """The ``ckpt=`` file and its contents, read once as plain data (see :func:`read_checkpoint`)."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError("ckpt", "is required", "ckpt=outputs/<experiment>/runs/<time>/checkpoints/last.ckpt")
    path = Path(str(cfg.ckpt)).expanduser()
    if "://" not in str(cfg.ckpt) and not path.is_file():
        raise ConfigError("ckpt", f"checkpoint {path} does not exist", "ckpt=/path/to/a/visiontrain.ckpt")
    return path, read_checkpoint(str(cfg.ckpt))


def _datamodule_for_checkpoint(module, cfg: DictConfig, split: str):
    """The checkpoint's own data (same split and seed), or ``data_root`` evaluated in full."""
    run_config = module.hparams.run_config or {}
    data_cfg = dict(run_config.get("data", {}))
    seed = int(run_config.get("seed", 0))
    if cfg.get("data_root"):
        root = Path(str(cfg.data_root)).expanduser()
        if not root.exists():
            raise ConfigError("data_root", f"{root} does not exist", "data_root=/path/to/images")
        data_cfg.update(root=str(root), builtin=None, format="auto", val_fraction=1.0)
    if not data_cfg.get("root"):
        return None, None
    data_cfg.update(batch_size=int(cfg.get("batch_size", data_cfg.get("batch_size", 32))), balance="none",
                    num_workers=data_cfg.get("num_workers", "auto"))
    inventory = scan(data_cfg, seed, classes=module.class_names, required_splits=(split,))
    spec_fields = {k: v for k, v in module.hparams.input_spec.items() if k != "resize_to"}
    spec = InputSpec(**{**spec_fields, "mean": tuple(spec_fields["mean"]), "std": tuple(spec_fields["std"])})
    return datamodule_for(inventory, spec, data_cfg, seed), inventory


def _is_tabular(checkpoint: dict) -> bool:
    return "task_type" in (checkpoint.get("hyper_parameters") or {})


def _tabular_task(ckpt: Path, checkpoint: dict, cfg: DictConfig, run_dir: Path):
    """The checkpoint's own table and split (same source, cleansing and seed), or ``data_root`` held out whole.

    The stored run config is data: an interpolation in it (``${oc.env:...}``) is refused, not resolved.
    """
    from visiontrain.tasks.tabular import TabularTask, load_tabular_model

    module = load_tabular_model(ckpt, checkpoint)
    try:
        check_plain_data(module.hparams.run_config.get("data", {}), "run_config.data")
    except UntrustedTarget as error:
        raise CheckpointError(f"ckpt={ckpt}: refused, {error}") from None
    run_config = OmegaConf.create(module.hparams.run_config)
    if cfg.get("data_root"):
        run_config.data.source = str(Path(str(cfg.data_root)).expanduser())
        run_config.data.format = "auto"
    task = TabularTask(run_config)
    task.prepare(run_dir, True)
    if cfg.get("data_root"):  # a new table: every kept row is scored
        from visiontrain.tabular.splits import Split

        everything = np.arange(len(task.table))
        task.final = Split("new data", everything[:0], everything, everything)
    task.encode(task.final_split(), module.feature_pipeline)  # with the checkpoint's own fitted pipeline
    return task, module


def _evaluate_tabular(cfg: DictConfig, ckpt: Path, checkpoint: dict, split: str, run_dir: Path) -> float | None:
    task, module = _tabular_task(ckpt, checkpoint, cfg, run_dir)
    trainer: pl.Trainer = build_trainer(cfg.trainer, logger=False, enable_checkpointing=False)
    report = task.evaluate(trainer, module, None, run_dir)
    result = report.get(split) or report["val"]
    output = {"checkpoint": str(ckpt), **result, "data": task.data["report"]}
    write_json(output, run_dir / "evaluation.json")
    print("\n".join([f"evaluated {ckpt} on {result['rows']} {result['split']} rows:",
                     *[f"  {k} = {v:.4f}" for k, v in result["metrics"].items()],
                     f"  written to {run_dir} (evaluation.json, data_report.md, rejects.csv, curves)"]))
    return next(iter(result["metrics"].values()), None)


def evaluate(cfg: DictConfig) -> float | None:
    """Evaluate a checkpoint on its validation split (or ``data_root``); write metrics and confusion matrix.

    ``tta=hflip``: every prediction is the average of the softmax on the image and on its mirror image (see
    :mod:`visiontrain.models.tta`); evaluation.json records the mode.
    """
    validate_evaluate_config(cfg)
    ckpt, checkpoint = _checkpoint(cfg)
    split, tta = str(cfg.split), str(cfg.tta)
    run_dir = Path(cfg.paths.run_dir)
    if _is_tabular(checkpoint):
        if tta != "none":
            raise ConfigError("tta", "test-time augmentation is for image models", "tta=none")
        return _evaluate_tabular(cfg, ckpt, checkpoint, split, run_dir)
    module = load_classifier(ckpt, tta=tta, checkpoint=checkpoint)
    if tta == "hflip" and float((module.hparams.run_config or {}).get("augment", {}).get("hflip_p", 0.5)) == 0:
        log.warning("tta=hflip on a model trained without horizontal flips (augment.hflip_p=0): if a mirrored "
                    "image means something else in this data (digits, text), use tta=none")
    datamodule, inventory = _datamodule_for_checkpoint(module, cfg, split)
    if datamodule is None:
        raise ConfigError("data_root", "the checkpoint records no data location", "data_root=/path/to/images")
    inventory.write_rejects(run_dir / "rejects.csv")
    trainer: pl.Trainer = build_trainer(cfg.trainer, logger=False, enable_checkpointing=False)
    report = evaluation_report(trainer, module, datamodule, None, split, run_dir)
    report.update(checkpoint=str(ckpt), tta=tta, weights="ema" if module.ema is not None else "trained",
                  data=inventory.counts(), rejects_csv=str(run_dir / "rejects.csv"))
    write_json(report, run_dir / "evaluation.json")
    images = sum(row["support"] for row in report["per_class"])
    views = "" if tta == "none" else f" (tta={tta}: softmax averaged over the image and its mirror)"
    print("\n".join([f"evaluated {ckpt} on {images} {split} images{views}:",
                     *[f"  {k} = {v:.4f}" for k, v in report["metrics"].items()],
                     f"  written to {run_dir} (evaluation.json, confusion_matrix.csv/.png, per_class.csv, rejects.csv)"]))
    return report["metrics"].get(f"{split}/acc")


def lr_find(cfg: DictConfig) -> float | None:
    """The learning-rate range test on the training data that `train` with the same overrides would use.

    The model is built as for training but with no frozen epochs, so the head and the backbone are probed together
    at their configured shares of the rate; the suggestion is the head's rate, the ``optimizer.lr`` to train with
    (see :mod:`visiontrain.training.lr_find`). Writes lr_find.json and lr_find.png in the run dir.
    """
    validate_lr_find_config(cfg)
    run_dir = Path(cfg.paths.run_dir)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    probe = OmegaConf.merge(cfg, {"schedule": {"freeze_epochs": 0}})  # the fine-tune stage: head and backbone
    task = ImageTask(probe)
    task.prepare(run_dir, True)
    datamodule, module = task.build()
    settings = LRFindSettings(**OmegaConf.to_container(cfg.lr_find, resolve=True))
    trainer: pl.Trainer = build_trainer(cfg.trainer, logger=False, enable_checkpointing=False, max_epochs=-1,
                                        max_steps=settings.num_training, num_sanity_val_steps=0,
                                        default_root_dir=str(run_dir))
    result = find_learning_rate(trainer, module, datamodule.train_dataloader(), settings)
    files = write_lr_find(result, run_dir)
    lines = [f"lr_find: {len(result.lrs)} rates probed from {settings.min_lr:g} to {settings.max_lr:g} "
             "(the head's rate; the backbone at its share, schedule.backbone_lr_scale)"]
    if result.suggestion is None:
        lines.append("  no suggestion: the loss diverged before enough points (lower lr_find.max_lr, or "
                     "lr_find.early_stop_threshold=null)")
    else:
        lines += [f"  suggested learning rate: {result.suggestion:.3g} (steepest fall of the smoothed loss)",
                  f"  train with: visiontrain train <the same overrides> {result.override}"]
    lines.append(f"  written to {run_dir} ({files['png'].name}, {files['json'].name})")
    print("\n".join(lines), flush=True)
    return result.suggestion


def export(cfg: DictConfig) -> dict:
    """Export a checkpoint to ONNX and check it with onnxruntime on the checkpoint's validation images."""
    ckpt, checkpoint = _checkpoint(cfg)
    run_dir = Path(cfg.paths.run_dir)
    output = Path(str(cfg.output)).expanduser() if cfg.get("output") else run_dir / "model.onnx"
    quantize = cfg.get("quantize")
    if quantize not in (None, "int8"):
        raise ConfigError("quantize", f"must be null or int8, got {quantize!r}", "quantize=int8")
    if _is_tabular(checkpoint):
        if quantize:
            raise ConfigError("quantize", "int8 quantization is for image models", "quantize=null")
        return _export_tabular(cfg, ckpt, checkpoint, output, run_dir)
    module = load_classifier(ckpt, checkpoint=checkpoint)
    datamodule = None
    try:
        datamodule, _ = _datamodule_for_checkpoint(module, cfg, "val")
    except Exception as error:  # noqa: BLE001 - parity then falls back to random inputs, and says so
        log.warning("no validation images for the parity check (%s); using random inputs", error)
    result = export_checkpoint(ckpt, output, datamodule, int(cfg.parity_images), float(cfg.atol), int(cfg.opset),
                               None, quantize=quantize, calibration_images=int(cfg.get("calibration_images", 128)))
    write_json(result, run_dir / "export.json")
    parity = result["parity"]
    print(f"exported {ckpt} -> {output}\n  parity on {parity['images']} {parity['source']}: max |logit diff| = "
          f"{parity['max_abs_logit_diff']:.2e}, top-1 identical: {parity['top1_identical']}, passed: {parity['passed']}")
    if result.get("int8"):
        int8 = result["int8"]
        print(f"  int8 -> {int8['onnx']}: top-1 agreement with float {int8['top1_agreement']:.1%} on {int8['images']} "
              f"validation images, accuracy {int8.get('float_accuracy', float('nan')):.4f} -> "
              f"{int8.get('int8_accuracy', float('nan')):.4f}")
    if not parity["passed"]:
        raise SystemExit(3)
    return result


def _export_tabular(cfg: DictConfig, ckpt: Path, checkpoint: dict, output: Path, run_dir: Path) -> dict:
    """Export a tabular checkpoint (preprocessing included) and check it on its held-out rows."""
    from visiontrain.tasks.tabular import export_tabular_checkpoint

    task, module = _tabular_task(ckpt, checkpoint, cfg, run_dir)
    split = task.final_split()
    rows = task.table.iloc[split.test if len(split.test) else split.val]
    atol = float(module.hparams.run_config["export"]["atol"])  # the tolerance the run was trained with
    result = export_tabular_checkpoint(ckpt, output, task.schema, rows, atol, int(cfg.opset), None)
    write_json(result, run_dir / "export.json")
    print(f"exported {ckpt} -> {output}\n  {task.describe_export(result)}, passed: {result['parity']['passed']}")
    if not result["parity"]["passed"]:
        raise SystemExit(3)
    return result
