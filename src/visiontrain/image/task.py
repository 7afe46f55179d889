"""Image classification as a task of the runner: inventory -> datamodule -> classifier -> reports -> ONNX."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from visiontrain.config.commands import EvaluateOptions, ExportOptions
from visiontrain.config.image import ImageDataSettings, ImageTrainConfig, StoredImageData, StoredImageRun
from visiontrain.config.image import ImageModel as ImageModelSettings
from visiontrain.config.reading import parse, pixel_limit, validate
from visiontrain.config.sections import Trainer
from visiontrain.core.names import IMAGE_TASK
from visiontrain.errors import ConfigError
from visiontrain.image.builtin import materialise_builtin
from visiontrain.image.checks import check_image_libraries
from visiontrain.image.classifier import ImageClassifier, load_classifier
from visiontrain.image.datamodule import (
    ImageDataModule,
    class_weights,
    processes_per_node,
)
from visiontrain.image.decided import ImageDecisions, decide_image_run, input_spec_for
from visiontrain.image.export import export_image_checkpoint, model_inputs
from visiontrain.image.image_io import decode_scanned
from visiontrain.image.inventory import Inventory, build_inventory
from visiontrain.image.transforms import (
    InputSpec,
    build_eval_transform,
    build_train_transform,
)
from visiontrain.image.weight_source import WeightSource, weight_source
from visiontrain.training.checkpoints import stored_run_config
from visiontrain.training.hardware import build_trainer
from visiontrain.training.reports import write_confusion, write_json
from visiontrain.training.results import Evaluation, ExportResult
from visiontrain.training.task import BuiltModel, PreparedData

log = logging.getLogger("visiontrain")


def data_root(data: ImageDataSettings) -> Path:
    """Where the images are; built-in data is written there first if needed."""
    root = Path(str(data.root)).expanduser()
    if data.builtin:
        materialise_builtin(data.builtin, root)
    return root


def scan(data: ImageDataSettings, seed: int, classes: list[str] | None = None,
         required_splits: tuple[str, ...] = ("train", "val"), allow_key: str = "data.allow_outside_root",
         reduce_to: int | None = None) -> Inventory:
    """The inventory of ``data``'s images, each decoded as the dataset will (``reduce_to``: the resize size)."""
    return build_inventory(data_root(data), data.format, data.val_fraction, seed, classes=classes,
                           required_splits=required_splits, duplicates=data.duplicates,
                           allow_outside_root=data.allow_outside_root, allow_key=allow_key,
                           pixel_limit=pixel_limit(data.max_image_pixels, "data.max_image_pixels"),
                           reduce_to=reduce_to)


def input_spec_from(cfg: DictConfig) -> InputSpec:
    """The input spec of a composed config not yet checked (a notebook, a test): ``model.input`` filled from the
    weights. A run uses the spec its library checks decided (:class:`ImageDecisions`)."""
    model = parse(ImageModelSettings, cfg, "model")
    return input_spec_for(model.input, weight_source(model))


def datamodule_for(inventory: Inventory, spec: InputSpec, data: ImageDataSettings, seed: int,
                   train_transform: Any = None, trainer: Trainer | None = None,
                   drop_last_train: bool = False) -> ImageDataModule:
    """The datamodule of ``inventory`` (``train_transform``: the run's, decided once; None: no augmentation)."""
    train_transform = train_transform if train_transform is not None else build_train_transform(spec, None)
    return ImageDataModule.from_settings(
        inventory, train_transform, build_eval_transform(spec), data,
        accelerator="cpu" if trainer is None else str(trainer.accelerator), reduce_to=spec.resize_to, seed=seed,
        processes=1 if trainer is None else processes_per_node(trainer), drop_last_train=drop_last_train)


def evaluation_report(trainer: pl.Trainer, module: ImageClassifier, datamodule: ImageDataModule,
                      ckpt_path: str | None, split: str, out_dir: Path) -> dict[str, Any]:
    """Validate (or test) ``ckpt_path`` and write the confusion matrix and per-class metrics."""
    run = trainer.validate if split == "val" else trainer.test
    results = run(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    report: dict[str, Any] = {"split": split, "metrics": metrics}
    if trainer.is_global_zero and module.last_confusion is not None:
        files = write_confusion(module.last_confusion.numpy(), module.class_names, out_dir,
                                prefix="" if split == "val" else f"{split}_")
        report.update(per_class=files.pop("per_class"), files=files,
                      confusion_matrix=module.last_confusion.tolist())
    return report


def check_mixup_data(inventory: Inventory, batch_size: int, processes: int = 1) -> None:
    """Mixup drops each epoch's last, incomplete batch: a training set smaller than one batch would leave none."""
    per_process = len(inventory.splits["train"]) // max(1, processes)
    if per_process < batch_size:
        raise ConfigError("data.batch_size", f"is {batch_size}, but with mixup on the training loader keeps full "
                          f"batches only and each training process has {per_process} images",
                          f"data.batch_size={max(2, per_process - per_process % 2)} (even), or augment.mixup off")


@dataclass(frozen=True, kw_only=True)
class PreparedImages(PreparedData):
    """The checked inventory of image files, the input spec it was decoded for (decided once, here, and used by
    ``build``) and, with ``data.balance=loss_weights``, the class weights."""

    inventory: Inventory
    spec: InputSpec
    class_weights: list[float] | None = None


@dataclass(frozen=True, kw_only=True)
class BuiltImageModel(BuiltModel):
    """A classifier and its datamodule, with the input size and the weight source ``build`` decided."""

    spec: InputSpec
    source: WeightSource


class ImageTask:
    """How the runner builds, evaluates and exports an image classifier (see :class:`~visiontrain.training.task.Task`)."""

    name = IMAGE_TASK
    check_libraries = staticmethod(check_image_libraries)  # the config checks that need timm and albumentations
    curve_metric = "acc"
    report_split = "val"  # whose confusion matrix the report points at

    def __init__(self, cfg: DictConfig, settings: ImageTrainConfig) -> None:
        self.cfg = cfg  # the raw config: what Hydra instantiates (trainer, callbacks, loggers, optimizer, ...)
        self.settings = settings  # the same config parsed and typed: what everything else reads
        # decided once: by the library checks when they ran on these settings, else here
        self.decided: ImageDecisions = settings.decided or decide_image_run(cfg, settings.model)

    def prepare(self, run_dir: Path, is_main_process: bool) -> PreparedImages:
        """Check every file once: the inventory, its counts, the split it made and the rejects report."""
        settings = self.settings
        started = time.perf_counter()
        spec = self.decided.spec
        inventory = scan(settings.data, settings.seed, reduce_to=spec.resize_to)
        if is_main_process:
            inventory.write_rejects(run_dir / "rejects.csv")
            inventory.write_split(run_dir / "split.csv")
        if settings.monitor.metric == "val/acc_top5" and len(inventory.classes) <= 5:
            raise ConfigError("monitor.metric", f"top-5 accuracy needs more than 5 classes; the data has "
                              f"{len(inventory.classes)}", "monitor.metric=val/acc")
        weights = class_weights(inventory) if settings.data.balance == "loss_weights" else None
        summary = {"root": inventory.root, "format": inventory.format, "classes": inventory.classes,
                   **inventory.counts(), "class_weights": weights, "rejects_csv": str(run_dir / "rejects.csv"),
                   "split_csv": str(run_dir / "split.csv"),
                   "seconds": round(time.perf_counter() - started, 3)}
        return PreparedImages(summary=summary, inventory=inventory, spec=spec, class_weights=weights)

    def build(self, data: PreparedImages, split: None = None) -> BuiltImageModel:
        """The classifier on its starting weights and the datamodule of the inventory's own split."""
        cfg, settings, spec, source = self.cfg, self.settings, data.spec, self.decided.source
        mixup = settings.augment.mixup
        mixing = mixup is not None and mixup.mixes
        if mixing:
            check_mixup_data(data.inventory, settings.data.batch_size, processes_per_node(settings.trainer))
        datamodule = datamodule_for(data.inventory, spec, settings.data, settings.seed, self.decided.train_transform,
                                    settings.trainer, drop_last_train=mixing)
        freeze_epochs = settings.schedule.freeze_epochs
        if not source.pretrained and freeze_epochs > 0:  # an image run builds its model once
            log.warning("schedule.freeze_epochs=%d freezes a backbone that got no pretrained weights: its random "
                        "features cannot be fitted by the head alone. Use schedule=full_finetune, or give it "
                        "weights (model.weights=..., model.pretrained=true or model.weights_file=...)",
                        freeze_epochs)
        model = settings.model
        module = ImageClassifier(
            backbone=source.backbone, class_names=data.inventory.classes, input_spec=spec.to_dict(),
            pretrained=source.kind == "hub", weights_file=source.file,
            weights=source.packaged.name if source.packaged else None,
            drop_rate=model.drop_rate, label_smoothing=model.label_smoothing,
            class_weights=data.class_weights, optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
            schedule=OmegaConf.to_container(cfg.schedule, resolve=True),
            run_config=stored_run_config(cfg), mixup=mixup.model_dump() if mixing else None,
            ema=model.ema.model_dump() if model.ema is not None else None)
        if module.weights_report:
            log.info(module.weights_report["summary"])
        return BuiltImageModel(datamodule=datamodule, module=module, spec=spec, source=source)

    def info(self, data: PreparedImages, built: BuiltImageModel) -> dict[str, Any]:
        source, module = built.source, built.module
        weights = {**source.describe(), **(module.weights_report or {})}
        if source.kind == "hub":
            weights["source"] = f"hub: {source.backbone}"
        return {"input_spec": built.spec.to_dict(), "parameters": module.parameter_counts(), "weights": weights}

    def evaluate(self, trainer: pl.Trainer, data: PreparedImages, built: BuiltImageModel, ckpt_path: str | None,
                 out_dir: Path) -> Evaluation:
        report = {"val": evaluation_report(trainer, built.module, built.datamodule, ckpt_path, "val", out_dir)}
        if "test" in data.inventory.splits:
            report["test"] = evaluation_report(trainer, built.module, built.datamodule, ckpt_path, "test", out_dir)
        return Evaluation(**report)

    def export(self, data: PreparedImages, built: BuiltImageModel, ckpt_path: str, run_dir: Path, metric: dict[str, Any],
               extra_metadata: dict[str, Any]) -> ExportResult:
        e = self.settings.export
        return export_image_checkpoint(ckpt_path, run_dir / "model.onnx", built.datamodule, e.parity_images, e.atol,
                                       e.opset, metric, extra_metadata, e.quantize, e.calibration_images,
                                       exporter=e.exporter)

    def reference_stats(self, data: PreparedImages, built: BuiltImageModel) -> dict[str, Any]:
        """Input statistics of (up to 500) training images and the model's outputs on validation images."""
        from visiontrain.core.image_statistics import image_statistics
        from visiontrain.monitoring.reference import MAX_IMAGES, image_inputs_reference, outputs_reference

        train = data.inventory.splits["train"]
        chosen = [train[i] for i in np.linspace(0, len(train) - 1, min(MAX_IMAGES, len(train))).astype(int)]
        # decoded as serve, stream and drift decode (JPEG draft at the resize size), with the scan's limit
        inputs = image_inputs_reference(
            image_statistics(decode_scanned(sample.path, built.spec.resize_to, data.inventory.pixel_limit))
            for sample in chosen)
        count = min(MAX_IMAGES, len(data.inventory.splits["val"]))
        probabilities = []
        module = built.module.eval().to("cpu")
        spec = built.spec.to_dict()
        with torch.no_grad():
            for start in range(0, count, 64):
                batch = model_inputs(built.datamodule, "val", range(start, min(start + 64, count)), spec)
                probabilities.append(torch.softmax(module.evaluation_model()(batch), dim=-1))  # uncompiled, CPU
        confidence, predicted = torch.cat(probabilities).max(dim=-1)
        return {"task": self.name, "inputs": inputs, "inputs_from": f"{len(chosen)} training images",
                "outputs": outputs_reference(module.class_names, predicted.numpy(), confidence.numpy()),
                "outputs_from": f"{count} validation images"}

    def sample_predictions(self, data: PreparedImages, built: BuiltImageModel, count: int = 16) -> list[dict[str, Any]]:
        """The first ``count`` validation images with true and predicted class, for the tracker."""
        dataset = built.datamodule.dataset("val")
        indices = range(min(count, len(dataset)))
        images = torch.stack([dataset[i][0] for i in indices])  # uint8, as the loader gives them
        labels = [int(dataset[i][1]) for i in indices]
        module = built.module
        with torch.no_grad():
            model = module.eval().to("cpu").evaluation_model()  # uncompiled: compiled would recompile for the CPU
            probabilities = torch.softmax(model(module.normalise(images)), dim=-1)
        names = module.class_names
        samples = []
        for image, label, probability, index in zip(images, labels, probabilities, indices):
            pixels = image.permute(1, 2, 0).numpy()
            confidence, predicted = probability.max(dim=0)
            samples.append({"image": np.ascontiguousarray(pixels), "path": dataset.samples[index].path,
                            "true": names[label], "predicted": names[int(predicted)],
                            "confidence": round(float(confidence), 4)})
        return samples

    # ----- the report ------------------------------------------------------------------------------------
    @staticmethod
    def describe_data(data: dict[str, Any]) -> str:
        """Images per split and class, then the rejected: ``files_in`` is the sum of the numbers shown."""
        splits = [f"{split} {count} (" + ", ".join(f"{name} {n}" for name, n in data["per_class"][split].items())
                  + ")" for split, count in data["per_split"].items()]
        rejected = f"rejected {data['files_rejected']} ({Path(data['rejects_csv']).name})"
        return "data: " + " · ".join([*splits, rejected])

    @staticmethod
    def describe_weights(weights: dict[str, Any]) -> str:
        if weights.get("summary"):
            return weights["summary"]
        return "weights: from the hub" if weights.get("kind") == "hub" else "weights: none, trained from scratch"

    @staticmethod
    def describe_export(export: dict[str, Any]) -> str:
        parity = export["parity"]
        line = (f"onnx parity on {parity['images']} {parity['source']}: max |logit diff| = "
                f"{parity['max_abs_logit_diff']:.2e}, top-1 identical: {parity['top1_identical']}")
        int8 = export.get("int8")
        if int8:
            line += (f"\nint8 onnx {int8['onnx']} ({int8['int8_mib']} MiB vs {int8['float_mib']} MiB): top-1 agrees "
                     f"with float on {int8['top1_agreement']:.1%} of {int8['images']} validation images, accuracy "
                     f"{int8['float_accuracy']:.4f} -> {int8['int8_accuracy']:.4f}")
        return line

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        lines = [self.describe_data(summary["data"]), self.describe_weights(summary["weights"])]
        if summary.get("export"):
            lines.append(self.describe_export(summary["export"]))
        return lines

    # ----- a finished checkpoint ---------------------------------------------------------------------------
    @staticmethod
    def _checkpoint_data(module: ImageClassifier, options: EvaluateOptions | ExportOptions, split: str
                         ) -> tuple[ImageDataModule | None, Inventory | None]:
        """The checkpoint's own data (same split and seed), or ``data_root`` evaluated in full."""
        stored = validate(StoredImageRun, module.hparams.run_config or {})
        fields = dict(stored.data)
        if options.data_root:
            root = Path(options.data_root).expanduser()
            if not root.exists():
                raise ConfigError("data_root", f"{root} does not exist", "data_root=/path/to/images")
            fields.update(root=str(root), builtin=None, format="auto", val_fraction=1.0,
                          allow_outside_root=getattr(options, "allow_outside_root", False))
        if not fields.get("root"):
            return None, None
        fields.update(batch_size=options.batch_size, balance="none")
        data = validate(StoredImageData, fields, "data")
        spec_fields = {k: v for k, v in module.hparams.input_spec.items() if k != "resize_to"}
        spec = InputSpec(**{**spec_fields, "mean": tuple(spec_fields["mean"]), "std": tuple(spec_fields["std"])})
        inventory = scan(data, stored.seed, classes=module.class_names, required_splits=(split,),
                         allow_key="allow_outside_root" if options.data_root else "data.allow_outside_root",
                         reduce_to=spec.resize_to)
        return datamodule_for(inventory, spec, data, stored.seed), inventory

    @classmethod
    def evaluate_checkpoint(cls, cfg: DictConfig, ckpt: Path, checkpoint: dict[str, Any],
                            run_dir: Path) -> float | None:
        options = parse(EvaluateOptions, cfg)
        split, tta = options.split, options.tta
        module = load_classifier(ckpt, tta=tta, checkpoint=checkpoint)
        if tta == "hflip" and validate(StoredImageRun, module.hparams.run_config or {}).augment.hflip_p == 0:
            log.warning("tta=hflip on a model trained without horizontal flips (augment.hflip_p=0): if a mirrored "
                        "image means something else in this data (digits, text), use tta=none")
        datamodule, inventory = cls._checkpoint_data(module, options, split)
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
                         f"  written to {run_dir} (evaluation.json, confusion_matrix.csv/.png, per_class.csv, "
                         "rejects.csv)"]))
        return report["metrics"].get(f"{split}/acc")

    @classmethod
    def export_checkpoint(cls, cfg: DictConfig, ckpt: Path, checkpoint: dict[str, Any], output: Path,
                          run_dir: Path) -> ExportResult:
        """Export to ONNX and check it with onnxruntime on the checkpoint's validation images."""
        options = parse(ExportOptions, cfg)
        module = load_classifier(ckpt, checkpoint=checkpoint)
        datamodule = None
        try:
            datamodule, _ = cls._checkpoint_data(module, options, "val")
        except Exception as error:  # noqa: BLE001 - parity then falls back to random inputs, and says so
            if options.data_root:  # images the user named: a mistake to report, never replaced by noise
                raise
            log.warning("no validation images for the parity check (%s); using random inputs", error)
        result = export_image_checkpoint(ckpt, output, datamodule, options.parity_images, options.atol,
                                         options.opset, None, quantize=options.quantize,
                                         calibration_images=options.calibration_images, module=module,
                                         exporter=options.exporter)
        write_json(result.as_dict(), run_dir / "export.json")
        parity = result.parity
        print(f"exported {ckpt} -> {output}\n  parity on {parity.images} {parity.source}: max |logit diff| = "
              f"{parity.max_abs_logit_diff:.2e}, top-1 identical: {parity.top1_identical}, "
              f"passed: {parity.passed}")
        if result.int8:
            int8 = result.int8
            print(f"  int8 -> {int8['onnx']}: top-1 agreement with float {int8['top1_agreement']:.1%} on "
                  f"{int8['images']} validation images, accuracy {int8.get('float_accuracy', float('nan')):.4f} -> "
                  f"{int8.get('int8_accuracy', float('nan')):.4f}")
        return result
