"""Image classification as a task of the runner: inventory -> datamodule -> classifier -> reports -> ONNX."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import timm
import torch
from omegaconf import DictConfig, OmegaConf

from visiontrain.data.builtin import materialise_builtin
from visiontrain.data.datamodule import (ImageDataModule, class_weights, processes_per_node,
                                         resolve_pin_memory)
from visiontrain.data.duplicates import DuplicatePolicy
from visiontrain.data.inventory import Inventory, build_inventory
from visiontrain.data.mixup import mixup_enabled
from visiontrain.data.transforms import (InputSpec, build_eval_transform, build_train_transform, normalise,
                                         resolve_input_spec)
from visiontrain.errors import CheckpointError, ConfigError
from visiontrain.export.onnx_export import export_onnx
from visiontrain.export.parity import check_parity
from visiontrain.models.classifier import ImageClassifier
from visiontrain.models.weight_source import WeightSource, weight_source
from visiontrain.redaction import config_without_secrets
from visiontrain.training.checkpoints import module_from_checkpoint, read_checkpoint
from visiontrain.training.reports import write_confusion

log = logging.getLogger("visiontrain")


def data_root(data_cfg: DictConfig | dict) -> Path:
    """Where the images are; built-in data is written there first if needed."""
    root = Path(str(data_cfg["root"])).expanduser()
    if data_cfg.get("builtin"):
        materialise_builtin(data_cfg["builtin"], root)
    return root


def scan(data_cfg: DictConfig | dict, seed: int, classes: list[str] | None = None,
         required_splits: tuple[str, ...] = ("train", "val")) -> Inventory:
    return build_inventory(data_root(data_cfg), data_cfg["format"], float(data_cfg["val_fraction"]), seed,
                           classes=classes, required_splits=required_splits,
                           duplicates=DuplicatePolicy.from_config(data_cfg.get("duplicates")),
                           allow_outside_root=bool(data_cfg.get("allow_outside_root", False)))


def input_spec_from(cfg: DictConfig) -> InputSpec:
    """``model.input`` with its unset fields filled from the weights (or the backbone's pretrained config)."""
    source = weight_source(cfg.model)
    i = cfg.model.input
    return resolve_input_spec(source.backbone, i.image_size, i.mean, i.std, i.crop_pct, i.interpolation,
                              weights=source.input_defaults())


def train_steps_for(cfg: DictConfig, spec: InputSpec) -> Any:
    """The configured augmentation list with ``${model.input.image_size}`` resolved to the actual input size."""
    return OmegaConf.merge(cfg, {"model": {"input": {"image_size": spec.image_size}}}).augment.train


def datamodule_for(inventory: Inventory, spec: InputSpec, data_cfg: DictConfig | dict, seed: int,
                   train_steps: Any = None, trainer_cfg: DictConfig | dict | None = None,
                   drop_last_train: bool = False) -> ImageDataModule:
    trainer_cfg = trainer_cfg if trainer_cfg is not None else {"accelerator": "cpu"}
    pin_memory = resolve_pin_memory(data_cfg.get("pin_memory", "auto"), str(trainer_cfg.get("accelerator", "cpu")))
    return ImageDataModule(inventory, build_train_transform(spec, train_steps), build_eval_transform(spec),
                           batch_size=int(data_cfg["batch_size"]), num_workers=data_cfg["num_workers"],
                           balance=data_cfg["balance"], pin_memory=pin_memory,
                           reduce_to=spec.resize_to, seed=seed, processes=processes_per_node(trainer_cfg),
                           drop_last_train=drop_last_train)


def load_classifier(ckpt_path: str | Path, tta: str = "none", checkpoint: dict[str, Any] | None = None
                    ) -> ImageClassifier:
    """A trained classifier from a visiontrain checkpoint, without the hub or the original weights file.

    The file is read as plain data (:func:`read_checkpoint`) and the model rebuilt from our class; a backbone
    name that would fetch anything (``hf-hub:``, ``local-dir:``) is refused. ``tta``: the test-time augmentation
    its evaluation steps use (see :mod:`visiontrain.models.tta`).
    """
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(ckpt_path)
    hparams = checkpoint.get("hyper_parameters") or {}
    backbone = hparams.get("backbone")
    if not isinstance(backbone, str) or ":" in backbone or not timm.is_model(backbone):
        raise CheckpointError(f"ckpt={ckpt_path}: not an image checkpoint of a timm architecture "
                              f"(backbone {backbone!r})")
    return module_from_checkpoint(ImageClassifier, checkpoint, ckpt_path, pretrained=False, weights_file=None,
                                  weights=None, tta=tta)


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


def export_checkpoint(ckpt_path: str | Path, onnx_path: Path, datamodule: ImageDataModule | None,
                      parity_images: int, atol: float, opset: int, metric: dict[str, Any] | None,
                      extra_metadata: dict[str, Any] | None = None, quantize: str | None = None,
                      calibration_images: int = 128) -> dict[str, Any]:
    """Export ``ckpt_path`` to ONNX (metadata inside) and check onnxruntime against PyTorch on real images.

    ``quantize="int8"`` also writes ``<name>.int8.onnx``, calibrated on training images and compared with the
    float file on the validation images. With ``model.ema`` on, the EMA weights are exported (and checked).
    """
    module = load_classifier(ckpt_path).eval()
    model = module.evaluation_model()
    spec = module.hparams.input_spec
    metadata = {
        "task": "image_classification", "class_names": module.class_names, "input_name": "image",
        "input_size": [3, spec["image_size"], spec["image_size"]], "mean": spec["mean"], "std": spec["std"],
        "resize_to": spec["resize_to"], "crop": "center", "interpolation": spec["interpolation"],
        "pixel_scale": "RGB uint8 / 255, then (x - mean) / std, NCHW float32",
        "backbone": module.hparams.backbone, "source_checkpoint": str(Path(ckpt_path).resolve()),
        "metric": metric or {}, "weights_averaged": module.ema is not None, "visiontrain_version": _version(),
        **(extra_metadata or {}),
    }
    started = time.perf_counter()
    export_onnx(model, onnx_path, int(spec["image_size"]), metadata, opset=opset)
    images, paths = _parity_batch(datamodule, parity_images, spec)
    parity = check_parity(onnx_path, model, images, atol=atol, image_paths=paths)
    result = {"onnx": str(onnx_path), "parity": parity, "metadata": metadata}
    if quantize == "int8":
        result["int8"] = int8_copy(onnx_path, datamodule, spec, calibration_images)
    return {**result, "seconds": round(time.perf_counter() - started, 3)}


def model_inputs(datamodule: ImageDataModule, split: str, indices: Any, spec: dict[str, Any]) -> torch.Tensor:
    """Images of ``split`` through the eval transform, normalised: exactly what the model sees in validation."""
    dataset = datamodule.dataset(split)
    return normalise(torch.stack([dataset[int(i)][0] for i in indices]), spec["mean"], spec["std"])


def int8_copy(onnx_path: Path, datamodule: ImageDataModule | None, spec: dict[str, Any], calibration_images: int,
              evaluation_images: int = 1000) -> dict[str, Any]:
    """``model.int8.onnx`` next to ``onnx_path``: calibrated on training images, scored on validation images."""
    from visiontrain.export.quantize import compare_outputs, quantize_int8

    if datamodule is None or not datamodule.inventory.splits.get("train"):
        raise ConfigError("export.quantize", "int8 calibration needs the training images, which are not available",
                          "export.quantize=null, or export from a run whose data is still in place")
    train, val = datamodule.inventory.splits["train"], datamodule.inventory.splits["val"]
    pick = np.linspace(0, len(train) - 1, min(calibration_images, len(train))).astype(int)
    calibration = model_inputs(datamodule, "train", pick, spec).numpy()  # eval transform: no augmentation
    count = min(evaluation_images, len(val))
    images = model_inputs(datamodule, "val", range(count), spec).numpy()
    labels = np.array([val[i].label for i in range(count)])
    int8_path = onnx_path.with_suffix(".int8.onnx")
    started = time.perf_counter()
    quantize_int8(onnx_path, int8_path, calibration)
    seconds = round(time.perf_counter() - started, 3)
    return {"onnx": str(int8_path), "calibration_images": len(calibration), "quantize_seconds": seconds,
            **compare_outputs(onnx_path, int8_path, images, labels)}


def _parity_batch(datamodule: ImageDataModule | None, count: int, spec: dict[str, Any]) -> tuple[torch.Tensor, list[str]]:
    size = int(spec["image_size"])
    if datamodule is None or count <= 0:
        return torch.randn(max(count, 2), 3, size, size, generator=torch.Generator().manual_seed(0)), []
    samples = datamodule.inventory.splits["val"][:count]
    return model_inputs(datamodule, "val", range(len(samples)), spec), [s.path for s in samples]


def _version() -> str:
    from visiontrain import __version__

    return __version__


class ImageTask:
    """How the runner builds, evaluates and exports an image classifier."""

    name = "image_classification"

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.inventory: Inventory | None = None
        self.datamodule: ImageDataModule | None = None
        self.source: WeightSource | None = None  # where the starting weights came from, set by build()

    curve_metric = "acc"
    report_split = "val"  # whose confusion matrix the report points at

    def prepare(self, run_dir: Path, is_main_process: bool) -> dict[str, Any]:
        """Check every file once: the inventory, its counts and the rejects report."""
        cfg = self.cfg
        started = time.perf_counter()
        self.inventory = scan(cfg.data, int(cfg.seed))
        if is_main_process:
            self.inventory.write_rejects(run_dir / "rejects.csv")
        if cfg.monitor.metric == "val/acc_top5" and len(self.inventory.classes) <= 5:
            raise ConfigError("monitor.metric", f"top-5 accuracy needs more than 5 classes; the data has "
                              f"{len(self.inventory.classes)}", "monitor.metric=val/acc")
        self.class_weights = class_weights(self.inventory) if cfg.data.balance == "loss_weights" else None
        return {"root": self.inventory.root, "format": self.inventory.format, "classes": self.inventory.classes,
                **self.inventory.counts(), "class_weights": self.class_weights,
                "rejects_csv": str(run_dir / "rejects.csv"), "seconds": round(time.perf_counter() - started, 3)}

    @staticmethod
    def describe_data(data: dict[str, Any]) -> str:
        classes = ", ".join(f"{name} ({count})" for name, count in data["per_class"]["train"].items())
        return (f"data: {data['files_in']} files in, {data['files_used']} used, {data['files_rejected']} rejected "
                f"({data['rejects_csv']}); classes: {classes}")

    def folds(self) -> list:
        return []  # one split: the folders' own (or a seeded stratified) train/val

    def final_split(self) -> None:
        return None

    def trainer_overrides(self) -> dict[str, Any]:
        return {}

    def build(self, split: None = None) -> tuple[ImageDataModule, ImageClassifier]:
        cfg = self.cfg
        self.spec = input_spec_from(cfg)
        mixup = OmegaConf.to_container(cfg.augment.mixup, resolve=True) if "mixup" in cfg.augment else None
        mixing = mixup_enabled(mixup)
        if mixing:
            check_mixup_data(self.inventory, int(cfg.data.batch_size), processes_per_node(cfg.trainer))
        self.datamodule = datamodule_for(self.inventory, self.spec, cfg.data, int(cfg.seed),
                                         train_steps_for(cfg, self.spec), cfg.trainer, drop_last_train=mixing)
        self.source = source = weight_source(cfg.model)
        if not source.pretrained and int(cfg.schedule.freeze_epochs) > 0:  # an image run builds its model once
            log.warning("schedule.freeze_epochs=%d freezes a backbone that got no pretrained weights: its random "
                        "features cannot be fitted by the head alone. Use schedule=full_finetune, or give it "
                        "weights (model.weights=..., model.pretrained=true or model.weights_file=...)",
                        int(cfg.schedule.freeze_epochs))
        module = ImageClassifier(
            backbone=source.backbone, class_names=self.inventory.classes, input_spec=self.spec.to_dict(),
            pretrained=source.kind == "hub", weights_file=source.file,
            weights=source.packaged.name if source.packaged else None,
            drop_rate=float(cfg.model.drop_rate), label_smoothing=float(cfg.model.label_smoothing),
            class_weights=self.class_weights, optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
            schedule=OmegaConf.to_container(cfg.schedule, resolve=True),
            run_config=config_without_secrets(cfg), mixup=mixup if mixing else None,
            ema=OmegaConf.to_container(cfg.model.ema, resolve=True) if "ema" in cfg.model else None)
        if module.weights_report:
            log.info(module.weights_report["summary"])
        return self.datamodule, module

    def info(self, module: ImageClassifier) -> dict[str, Any]:
        source = self.source  # decided by build()
        weights = {**source.describe(), **(module.weights_report or {})}
        if source.kind == "hub":
            weights["source"] = f"hub: {source.backbone}"
        return {"input_spec": self.spec.to_dict(), "parameters": module.parameter_counts(), "weights": weights}

    @staticmethod
    def describe_weights(weights: dict[str, Any]) -> str:
        if weights.get("summary"):
            return weights["summary"]
        return "weights: from the hub" if weights.get("kind") == "hub" else "weights: none, trained from scratch"

    def evaluate(self, trainer: pl.Trainer, module: ImageClassifier, ckpt_path: str | None,
                 run_dir: Path) -> dict[str, Any]:
        report = {"val": evaluation_report(trainer, module, self.datamodule, ckpt_path, "val", run_dir)}
        if "test" in self.inventory.splits:
            report["test"] = evaluation_report(trainer, module, self.datamodule, ckpt_path, "test", run_dir)
        return report

    def export(self, ckpt_path: str, run_dir: Path, metric: dict[str, Any],
               extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        e = self.cfg.export
        return export_checkpoint(ckpt_path, run_dir / "model.onnx", self.datamodule, int(e.parity_images),
                                 float(e.atol), int(e.opset), metric, extra_metadata, e.get("quantize"),
                                 int(e.get("calibration_images", 128)))

    def reference_stats(self, module: ImageClassifier) -> dict[str, Any]:
        """Input statistics of (up to 500) training images and the model's outputs on validation images."""
        from visiontrain.core.image_decode import decode
        from visiontrain.core.image_statistics import image_statistics
        from visiontrain.monitoring.reference import MAX_IMAGES, image_inputs_reference, outputs_reference

        train = self.inventory.splits["train"]
        chosen = [train[i] for i in np.linspace(0, len(train) - 1, min(MAX_IMAGES, len(train))).astype(int)]
        inputs = image_inputs_reference(image_statistics(decode(sample.path)) for sample in chosen)
        count = min(MAX_IMAGES, len(self.inventory.splits["val"]))
        probabilities = []
        module = module.eval().to("cpu")
        spec = self.spec.to_dict()
        with torch.no_grad():
            for start in range(0, count, 64):
                batch = model_inputs(self.datamodule, "val", range(start, min(start + 64, count)), spec)
                probabilities.append(torch.softmax(module.evaluation_model()(batch), dim=-1))  # uncompiled, CPU
        confidence, predicted = torch.cat(probabilities).max(dim=-1)
        return {"task": self.name, "inputs": inputs, "inputs_from": f"{len(chosen)} training images",
                "outputs": outputs_reference(module.class_names, predicted.numpy(), confidence.numpy()),
                "outputs_from": f"{count} validation images"}

    def sample_predictions(self, module: ImageClassifier, count: int = 16) -> list[dict[str, Any]]:
        """The first ``count`` validation images with true and predicted class, for the tracker."""
        dataset = self.datamodule.dataset("val")
        indices = range(min(count, len(dataset)))
        images = torch.stack([dataset[i][0] for i in indices])  # uint8, as the loader gives them
        labels = [int(dataset[i][1]) for i in indices]
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
