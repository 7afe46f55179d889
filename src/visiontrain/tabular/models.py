"""Tabular models as LightningModules, so every model runs through the same Trainer, checkpoints and loggers.

``TabularMLP`` trains by gradient descent. ``EstimatorModel`` wraps a scikit-learn baseline (logistic
regression, gradient boosting, histogram gradient boosting): its single training epoch fits the estimator on the
training rows (tree split thresholds then made float32-exact, see :mod:`~visiontrain.tabular.tree_thresholds`), and
validation, checkpoints, threshold tuning and export work exactly as for the MLP. The fitted feature pipeline
and estimator travel inside the checkpoint as skops bytes, loaded from an explicit list of trusted types: no
arbitrary unpickling.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.pipeline import Pipeline
from torch import nn

from visiontrain.config.targets import instantiate_trusted
from visiontrain.core.names import TABULAR_TASK, TASK_KEY
from visiontrain.errors import CheckpointError
from visiontrain.tabular.metrics import binary_metrics, regression_metrics, tune_threshold
from visiontrain.tabular.tree_thresholds import snap_split_thresholds
from visiontrain.training.checkpoints import module_from_checkpoint, read_checkpoint

# types skops refuses by default that a fitted pipeline or baseline legitimately holds
TRUSTED_SKOPS_TYPES = ["numpy.dtype", "sklearn.tree._tree.Tree", "sklearn._loss.loss.HalfBinomialLoss",
                       "sklearn._loss.link.LogitLink", "sklearn._loss.link.Interval",
                       "sklearn.ensemble._gb.VerboseReporter",
                       "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
CHECKPOINT_KEY = "visiontrain_tabular"
TASK_NAME = TABULAR_TASK  # recorded in every checkpoint (see visiontrain.registry)


def dump_sklearn(obj: Any) -> bytes:
    import skops.io as sio

    return sio.dumps(obj)


def load_sklearn(payload: bytes) -> Any:
    """Load skops bytes, refusing any type outside scikit-learn's defaults and ``TRUSTED_SKOPS_TYPES``."""
    import skops.io as sio

    untrusted = [t for t in sio.get_untrusted_types(data=payload) if t not in TRUSTED_SKOPS_TYPES]
    if untrusted:
        raise ValueError(f"the checkpoint holds types that are not trusted: {', '.join(untrusted)}")
    return sio.loads(payload, trusted=TRUSTED_SKOPS_TYPES)


class TabularModel(pl.LightningModule):
    """What every tabular model shares: scores, metrics per epoch, the tuned threshold, the saved pipeline."""

    def __init__(self, task_type: str, class_names: list[str] | None, feature_names: list[str],
                 threshold_metric: str = "f1", target_scale: tuple[float, float] = (0.0, 1.0),
                 run_config: dict[str, Any] | None = None, feature_pipeline: Pipeline | None = None) -> None:
        """``feature_pipeline``: the fitted preprocessing, saved with the model (skops) and exported with it."""
        super().__init__()
        self.task_type = task_type
        self.class_names = list(class_names or [])
        self.feature_names = list(feature_names)
        self.threshold_metric = threshold_metric
        self.threshold = 0.5
        self.target_mean, self.target_std = map(float, target_scale)
        self.feature_pipeline = feature_pipeline
        self._outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"val": [], "test": []}
        self.last_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def is_classifier(self) -> bool:
        return self.task_type == "classification"

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Probability of the positive class (classification) or the prediction (regression), shape [N]."""
        raise NotImplementedError

    def loss(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        return None

    # ----- evaluation shared by all models ---------------------------------------------------------------
    def _evaluation_step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        features, target = batch
        loss = self.loss(features, target)
        if loss is not None:
            self.log(f"{split}/loss", loss, on_epoch=True, on_step=False, batch_size=len(target))
        self._outputs[split].append((self.scores(features).detach().cpu().double(), target.detach().cpu()))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_split_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_split_metrics("test")

    def _log_split_metrics(self, split: str) -> None:
        outputs, self._outputs[split] = self._outputs[split], []
        if not outputs:
            return
        scores = torch.cat([s for s, _ in outputs]).numpy()
        target = torch.cat([t for _, t in outputs]).numpy()
        self.last_scores[split] = (target, scores)
        if not self.is_classifier:
            values = regression_metrics(target, scores)
        else:
            if split == "val" and self.trainer.state.fn == "fit":  # tuned while fitting; stored with the model
                self.threshold, _ = tune_threshold(target, scores, self.threshold_metric)
            values = binary_metrics(target, scores, self.threshold)
            values["threshold"] = self.threshold
        self.log_dict({f"{split}/{k}": float(v) for k, v in values.items()}, prog_bar=split == "val")

    # ----- what the checkpoint carries besides weights -----------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[TASK_KEY] = TASK_NAME
        checkpoint[CHECKPOINT_KEY] = {"threshold": self.threshold, "pipeline": dump_sklearn(self.feature_pipeline),
                                      **self._extra_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY, {})
        self.threshold = float(state.get("threshold", 0.5))
        if state.get("pipeline") is not None:
            self.feature_pipeline = load_sklearn(state["pipeline"])
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable, "frozen": total - trainable}


class TabularMLP(TabularModel):
    """A multilayer perceptron on the encoded features: Linear -> BatchNorm -> ReLU -> Dropout blocks."""

    kind = "mlp"

    def __init__(self, in_features: int, hidden: list[int] | tuple[int, ...] = (128, 64), dropout: float = 0.1,
                 positive_weight: float | None = None, optimizer: dict[str, Any] | None = None,
                 cosine: bool = True, **shared: Any) -> None:
        super().__init__(**shared)
        self.save_hyperparameters(ignore=["feature_pipeline"])
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.example_input_array = torch.zeros(1, in_features)  # one row, for the FLOPs of the model summary
        weight = torch.tensor(positive_weight) if positive_weight else None
        self.criterion = nn.BCEWithLogitsLoss(pos_weight=weight) if self.is_classifier else nn.MSELoss()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The score the ONNX file outputs: probability, or the prediction in target units."""
        output = self.net(features).squeeze(-1)
        return torch.sigmoid(output) if self.is_classifier else output * self.target_std + self.target_mean

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return self(features)

    def loss(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output = self.net(features).squeeze(-1)
        if self.is_classifier:
            return self.criterion(output, target.float())
        return self.criterion(output, (target.float() - self.target_mean) / self.target_std)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(*batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch[1]))
        return loss

    def configure_optimizers(self) -> Any:
        config = dict(self.hparams.optimizer or {"_target_": "torch.optim.AdamW", "lr": 1e-3})
        optimizer = instantiate_trusted(config, "optimizer", "optimizer", params=self.parameters())
        if not self.hparams.cosine:
            return optimizer
        epochs = max(1, int(self.trainer.max_epochs or 1))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=config["lr"] * 0.01)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class EstimatorModel(TabularModel):
    """A scikit-learn estimator fitted in one training epoch on all training rows.

    The rows come as the training loader's batches, like any model's (an unshuffled loader that drops nothing:
    see ``TabularDataModule(shuffle_train=False)``); they are gathered over the epoch and the estimator is fitted
    once, on every row, before the epoch's validation scores it.
    """

    kind = "estimator"

    def __init__(self, estimator: dict[str, Any], balanced: bool = False, **shared: Any) -> None:
        super().__init__(**shared)
        self.save_hyperparameters(ignore=["feature_pipeline"])
        self.automatic_optimization = False
        self.estimator = instantiate_trusted(estimator, "estimator", "model.estimator")
        self.fitted = False
        self._training_rows: list[tuple[np.ndarray, np.ndarray]] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if not self.fitted:
            features, target = batch
            self._training_rows.append((features.detach().cpu().numpy(), target.detach().cpu().numpy()))
        return None

    def on_validation_epoch_start(self) -> None:
        self._fit_gathered_rows()  # Lightning validates inside the training epoch, before its end hook

    def on_test_epoch_start(self) -> None:
        self._fit_gathered_rows()

    def on_train_epoch_end(self) -> None:
        self._fit_gathered_rows()

    def _fit_gathered_rows(self) -> None:
        """Fit once, on all the rows the first training epoch gave."""
        if self.fitted or not self._training_rows:
            return
        features = np.concatenate([f for f, _ in self._training_rows])
        target = np.concatenate([t for _, t in self._training_rows])
        self._training_rows = []
        weights = None
        if self.hparams.balanced and self.is_classifier:
            from sklearn.utils.class_weight import compute_sample_weight

            weights = compute_sample_weight("balanced", target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter: the metrics tell whether it fitted
            self.estimator.fit(features, target, sample_weight=weights)
        snap_split_thresholds(self.estimator)  # float32-exact splits: ONNX routes every row as Python does
        self.fitted = True

    def configure_optimizers(self) -> None:
        return None

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        array = features.detach().cpu().numpy()
        if self.is_classifier:
            values = self.estimator.predict_proba(array)[:, 1]
        else:
            values = self.estimator.predict(array)
        return torch.as_tensor(np.asarray(values, dtype=np.float64))

    def _extra_state(self) -> dict[str, Any]:
        return {"estimator": dump_sklearn(self.estimator), "fitted": self.fitted}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("estimator") is not None:
            self.estimator = load_sklearn(state["estimator"])
            self.fitted = bool(state.get("fitted", True))

    def parameter_counts(self) -> dict[str, int]:
        return {"total": 0, "trainable": 0, "frozen": 0}


MODEL_CLASSES: dict[str, type[TabularModel]] = {"mlp": TabularMLP, "estimator": EstimatorModel}


def load_tabular_model(ckpt_path: str | Path, checkpoint: dict[str, Any] | None = None) -> TabularModel:
    """A trained tabular model (pipeline, estimator and threshold included) from a visiontrain checkpoint.

    Read as plain data (:func:`read_checkpoint`); the estimator settings pass the allow-list before anything is
    built, and the fitted estimator and pipeline come from skops with trusted types only.
    """
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(ckpt_path)
    hparams = checkpoint.get("hyper_parameters") or {}
    if "task_type" not in hparams:
        raise CheckpointError(f"ckpt={ckpt_path}: not a tabular checkpoint (no task_type)")
    kind = "estimator" if "estimator" in hparams else "mlp"
    return module_from_checkpoint(MODEL_CLASSES[kind], checkpoint, ckpt_path, feature_pipeline=None)
