"""`visiontrain evaluate` and `visiontrain export`: work on a finished checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from visiontrain.data.transforms import InputSpec
from visiontrain.errors import ConfigError
from visiontrain.tasks.image import datamodule_for, evaluation_report, export_checkpoint, load_classifier, scan
from visiontrain.training.reports import write_json

log = logging.getLogger("visiontrain")


def _checkpoint(cfg: DictConfig) -> Path:
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError("ckpt", "is required", "ckpt=outputs/<experiment>/runs/<time>/checkpoints/last.ckpt")
    path = Path(str(cfg.ckpt)).expanduser()
    if not path.is_file():
        raise ConfigError("ckpt", f"checkpoint {path} does not exist", "ckpt=/path/to/a/visiontrain.ckpt")
    return path


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


def evaluate(cfg: DictConfig) -> float | None:
    """Evaluate a checkpoint on its validation split (or ``data_root``); write metrics and confusion matrix."""
    ckpt = _checkpoint(cfg)
    split = str(cfg.split)
    if split not in ("val", "test"):
        raise ConfigError("split", f"must be val or test, got {split!r}", "split=val")
    run_dir = Path(cfg.paths.run_dir)
    module = load_classifier(ckpt)
    datamodule, inventory = _datamodule_for_checkpoint(module, cfg, split)
    if datamodule is None:
        raise ConfigError("data_root", "the checkpoint records no data location", "data_root=/path/to/images")
    inventory.write_rejects(run_dir / "rejects.csv")
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    report = evaluation_report(trainer, module, datamodule, None, split, run_dir)
    report.update(checkpoint=str(ckpt), data=inventory.counts(), rejects_csv=str(run_dir / "rejects.csv"))
    write_json(report, run_dir / "evaluation.json")
    images = sum(row["support"] for row in report["per_class"])
    print("\n".join([f"evaluated {ckpt} on {images} {split} images:",
                     *[f"  {k} = {v:.4f}" for k, v in report["metrics"].items()],
                     f"  written to {run_dir} (evaluation.json, confusion_matrix.csv/.png, per_class.csv, rejects.csv)"]))
    return report["metrics"].get(f"{split}/acc")


def export(cfg: DictConfig) -> dict:
    """Export a checkpoint to ONNX and check it with onnxruntime on the checkpoint's validation images."""
    ckpt = _checkpoint(cfg)
    run_dir = Path(cfg.paths.run_dir)
    output = Path(str(cfg.output)).expanduser() if cfg.get("output") else run_dir / "model.onnx"
    module = load_classifier(ckpt)
    datamodule = None
    try:
        datamodule, _ = _datamodule_for_checkpoint(module, cfg, "val")
    except Exception as error:  # noqa: BLE001 - parity then falls back to random inputs, and says so
        log.warning("no validation images for the parity check (%s); using random inputs", error)
    result = export_checkpoint(ckpt, output, datamodule, int(cfg.parity_images), float(cfg.atol), int(cfg.opset),
                               None)
    write_json(result, run_dir / "export.json")
    parity = result["parity"]
    print(f"exported {ckpt} -> {output}\n  parity on {parity['images']} {parity['source']}: max |logit diff| = "
          f"{parity['max_abs_logit_diff']:.2e}, top-1 identical: {parity['top1_identical']}, passed: {parity['passed']}")
    if not parity["passed"]:
        raise SystemExit(3)
    return result
