"""The LightningModule: a timm backbone with a new head, trained on the freeze-then-fine-tune schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import timm
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from visiontrain.config.reading import validate
from visiontrain.config.targets import instantiate_trusted
from visiontrain.core.names import IMAGE_TASK, TASK_KEY
from visiontrain.errors import CheckpointError
from visiontrain.image.backbone import backbone_layer_ids, create_backbone, find_head_parameters
from visiontrain.image.mixup import build_mixup
from visiontrain.image.packaged_weights import packaged_weights
from visiontrain.image.transforms import apply_normalisation, normalisation_tensors
from visiontrain.image.tta import TTA_MODES, tta_logits
from visiontrain.image.weights import load_weights
from visiontrain.training.checkpoints import module_from_checkpoint, read_checkpoint
from visiontrain.training.ema import build_ema
from visiontrain.training.schedule import (
    FineTuneSchedule,
    StagedLR,
    build_param_groups,
    stage_name,
    trainable_in_stage_two,
)

TASK_NAME = IMAGE_TASK  # recorded in every checkpoint (see visiontrain.registry)

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 0.05}


def _metrics(num_classes: int, prefix: str) -> MetricCollection:
    metrics: dict[str, Any] = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
    }
    if num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics, prefix=prefix)


class ImageClassifier(pl.LightningModule):
    """Image classifier over any timm backbone.

    Freezing never toggles ``requires_grad`` of parameters that will train later: a frozen backbone runs
    under ``torch.no_grad`` in eval mode instead. DDP therefore registers every trainable parameter from the
    start, and unfreezing needs no optimizer surgery (all groups exist from step 0, at LR 0 while frozen).

    Optional, all off by default: ``mixup`` (``augment.mixup``: Mixup/CutMix of training batches, soft-target
    loss), ``ema`` (``model.ema``: a moving average of the weights, which validation, checkpoint selection and
    export then use) and ``tta`` (test-time augmentation of evaluation batches, set by ``visiontrain evaluate``).
    """

    def __init__(self, backbone: str, class_names: list[str], input_spec: dict[str, Any],
                 pretrained: bool = False, weights_file: str | None = None, weights: str | None = None,
                 drop_rate: float = 0.0,
                 label_smoothing: float = 0.0, class_weights: list[float] | None = None,
                 optimizer: dict[str, Any] | None = None, schedule: dict[str, Any] | None = None,
                 run_config: dict[str, Any] | None = None, mixup: dict[str, Any] | None = None,
                 ema: dict[str, Any] | None = None, tta: str = "none") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.model = create_backbone(backbone, len(class_names), pretrained, drop_rate)
        self.head_names = find_head_parameters(self.model, int(input_spec["image_size"]))
        self.weights_report = self._load_starting_weights(weights, weights_file)
        self.schedule = validate(FineTuneSchedule, schedule or {}, "schedule")  # stored: plain data
        self.layer_ids = backbone_layer_ids(self.model, self.head_names, coarse=False)
        stage_two = trainable_in_stage_two(backbone_layer_ids(self.model, self.head_names, coarse=True),
                                           self.schedule.unfreeze)
        self.trainable_names = self.head_names | stage_two
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(name in self.trainable_names)  # never-trained blocks stay fixed
        self._head_modules = self._modules_owning(self.head_names)
        self._fixed_modules = self._modules_owning(set(self.layer_ids) - stage_two)
        if self.schedule.bn_stats == "frozen":  # normalisation statistics stay the pretrained ones
            head = {id(m) for m in self._head_modules}
            self._fixed_modules += [m for m in self.model.modules() if id(m) not in head
                                    and isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.backbone_frozen = False
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
        num_classes = len(class_names)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_metrics, self.test_metrics = _metrics(num_classes, "val/"), _metrics(num_classes, "test/")
        self.confusion = MulticlassConfusionMatrix(num_classes)
        self.last_confusion: torch.Tensor | None = None
        self.mixup = build_mixup(mixup, num_classes)
        self.ema = build_ema(self.model, ema)  # after the starting weights: the average starts from them
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
        self.tta = tta
        offset, scale = normalisation_tensors(input_spec["mean"], input_spec["std"])
        self.register_buffer("pixel_offset", offset, persistent=False)  # follow the model to its device,
        self.register_buffer("pixel_scale", scale, persistent=False)    # stay out of checkpoints
        self.channels_last = False
        self._features_fn = self._head_fn = None  # compiled callables when trainer.compile is set
        size = int(input_spec["image_size"])  # one image, for the FLOPs (and layer sizes) of the model summary
        self.example_input_array = torch.zeros(1, 3, size, size)

    def _load_starting_weights(self, weights: str | None, weights_file: str | None) -> dict[str, Any] | None:
        """Packaged weights (by name) or a local file into the backbone; what was loaded, for the run's report."""
        packaged = packaged_weights(weights) if weights else None
        path = packaged.path() if packaged else weights_file
        if not path:
            return None
        report = load_weights(self.model, path, self.head_names)
        provenance = {"package": packaged.describe()} if packaged else {}
        return {**report.to_dict(), "summary": report.describe(), **provenance}

    # ----- freezing -------------------------------------------------------------------------------------
    def _modules_owning(self, names: set[str]) -> list[nn.Module]:
        owners = []
        for module_name, module in self.model.named_modules():
            own = [f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters(recurse=False)]
            if own and all(n in names for n in own):
                owners.append(module)
        return owners

    def set_backbone_frozen(self, frozen: bool) -> None:
        self.backbone_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> "ImageClassifier":
        """Lightning calls ``train()`` around every validation; frozen parts must stay in eval mode."""
        super().train(mode)
        if mode and self.backbone_frozen:
            head = {id(m) for m in self._head_modules}
            for module in self.model.modules():
                if module is not self.model and id(module) not in head:
                    module.training = False  # per module: the head (and its dropout) keeps training
        elif mode:
            for module in self._fixed_modules:
                module.training = False
        if self.ema is not None:
            self.ema.module.eval()  # an average of weights is only ever evaluated
        return self

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for n, p in self.model.named_parameters()
                        if n in (self.head_names if self.backbone_frozen else self.trainable_names))
        return {"total": total, "trainable": trainable, "frozen": total - trainable}

    # ----- hardware -------------------------------------------------------------------------------------
    def accelerate(self, channels_last: bool = False, compile_mode: str | bool | None = False) -> None:
        """NHWC memory layout and/or torch.compile, applied by the ``Acceleration`` callback before fit.

        Compilation wraps the two forward functions instead of replacing ``self.model``, so checkpoints keep
        their parameter names and load into an uncompiled model (export, evaluate, predict).
        """
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.channels_last = True
        if compile_mode is not False:
            self._features_fn = torch.compile(self.model.forward_features, mode=compile_mode)
            self._head_fn = torch.compile(self.model.forward_head, mode=compile_mode)

    # ----- input ----------------------------------------------------------------------------------------
    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 batches from the loader to the normalised float input ``forward`` (and ONNX) take."""
        return apply_normalisation(images, self.pixel_offset, self.pixel_scale)

    def model_batch(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """A loader's batch as the model takes it: uint8 images normalised on the device, after the (4x smaller)
        uint8 batch was copied there. Every step calls it, so any loader of uint8 or float images works."""
        images, labels = batch
        return (self.normalise(images) if images.dtype == torch.uint8 else images), labels

    # ----- forward and steps -----------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if not self.backbone_frozen and self._features_fn is None:  # timm's forward: head(features(x)), called
            return self.model(images)  # as a module, so hooks (the model summary's FLOPs and sizes) see it
        features_fn = self._features_fn or self.model.forward_features
        if self.backbone_frozen:
            with torch.no_grad():
                features = features_fn(images)
        else:
            features = features_fn(images)
        return (self._head_fn or self.model.forward_head)(features)

    def on_train_epoch_start(self) -> None:
        frozen = self.schedule.is_frozen(self.current_epoch)
        if frozen != self.backbone_frozen or self.current_epoch == 0:
            self.set_backbone_frozen(frozen)
            counts = self.parameter_counts()
            self.print(f"epoch {self.current_epoch}: stage {stage_name(self.schedule, self.current_epoch)} "
                       f"({counts['trainable']:,} of {counts['total']:,} parameters train)")

    def mix(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixup/CutMix of a normalised training batch: the mixed images (in place, as timm mixes) and the soft
        targets (label smoothing included), one row of class probabilities per image."""
        if self.mixup is None:
            raise RuntimeError("mixing needs augment.mixup.mixup_alpha or augment.mixup.cutmix_alpha > 0")
        if len(images) % 2:
            raise RuntimeError(f"a training batch of {len(images)} images: mixup pairs images and needs an even "
                               "batch (data.batch_size even; the training loader drops its last, incomplete batch)")
        return self.mixup(images, labels)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = self.model_batch(batch)
        if self.mixup is not None:
            images, targets = self.mix(images, labels)
            logits = self(images)
            # soft-target cross-entropy (timm's SoftTargetCrossEntropy), keeping data.balance=loss_weights weights
            loss = nn.functional.cross_entropy(logits, targets, weight=self.criterion.weight)
        else:
            logits = self(images)
            loss = self.criterion(logits, labels)
        self.train_acc(logits, labels)  # against the original labels, mixed or not
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/frozen", float(self.backbone_frozen), on_step=False, on_epoch=True)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """After each optimizer step (not each batch: gradient accumulation), move the EMA towards the weights."""
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def evaluation_model(self) -> nn.Module:
        """The weights that are scored, exported and served: the EMA copy when ``model.ema`` is on, else ``model``."""
        return self.ema.module if self.ema is not None else self.model

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Evaluation logits: of :meth:`evaluation_model`, averaged over the ``tta`` views."""
        if self.ema is None and self.tta == "none":
            return self(images)  # the (possibly compiled, channels_last) training forward
        return tta_logits(self.evaluation_model(), images, self.tta)

    def _evaluation_step(self, batch: tuple[torch.Tensor, torch.Tensor], metrics: MetricCollection,
                         prefix: str) -> None:
        images, labels = self.model_batch(batch)
        logits = self.predict_logits(images)
        self.log(f"{prefix}loss", nn.functional.cross_entropy(logits, labels), prog_bar=prefix == "val/",
                 sync_dist=True)
        metrics.update(logits, labels)
        self.confusion.update(logits, labels)
        self.log_dict(metrics, prog_bar=prefix == "val/")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, self.val_metrics, "val/")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, self.test_metrics, "test/")

    def _finish_confusion(self) -> None:
        self.last_confusion = self.confusion.compute().detach().cpu()
        self.confusion.reset()

    def on_validation_epoch_end(self) -> None:
        self._finish_confusion()

    def on_test_epoch_end(self) -> None:
        self._finish_confusion()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[TASK_KEY] = TASK_NAME

    # ----- optimisation ----------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        settings = dict(self.hparams.optimizer or DEFAULT_OPTIMIZER)
        lr, weight_decay = float(settings["lr"]), float(settings.get("weight_decay", 0.0))
        groups = build_param_groups(self.model, self.head_names, self.layer_ids,
                                    self.trainable_names - self.head_names, lr, weight_decay, self.schedule)
        optimizer = instantiate_trusted(settings, "optimizer", "optimizer", params=groups, _convert_="all")
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = total_steps / max(1, int(self.trainer.max_epochs or 1))
        lambdas = [StagedLR(g["role"], steps_per_epoch, total_steps, self.schedule.freeze_epochs,
                            self.schedule.warmup_epochs, self.schedule.min_lr_ratio) for g in groups]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_classifier(ckpt_path: str | Path, tta: str = "none", checkpoint: dict[str, Any] | None = None
                    ) -> ImageClassifier:
    """A trained classifier from a visiontrain checkpoint, without the hub or the original weights file.

    The file is read as plain data (:func:`read_checkpoint`) and the model rebuilt from our class; a backbone
    name that would fetch anything (``hf-hub:``, ``local-dir:``) is refused. ``tta``: the test-time augmentation
    its evaluation steps use (see :mod:`visiontrain.image.tta`).
    """
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(ckpt_path)
    hparams = checkpoint.get("hyper_parameters") or {}
    backbone = hparams.get("backbone")
    if not isinstance(backbone, str) or ":" in backbone or not timm.is_model(backbone):
        raise CheckpointError(f"ckpt={ckpt_path}: not an image checkpoint of a timm architecture "
                              f"(backbone {backbone!r})")
    return module_from_checkpoint(ImageClassifier, checkpoint, ckpt_path, pretrained=False, weights_file=None,
                                  weights=None, tta=tta)
