"""The floor every trainer must clear: a logistic regression on the frozen packaged-weights features.

One forward pass of each image through visiontrain's eval transform (resize, centre crop at the shared image
size) and the ImageNet backbone, the pooled 1,280-d features, scikit-learn's ``LogisticRegression`` fitted on
the training split and scored on the validation split: the same split every side trains on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

BATCH = 32


@dataclass(frozen=True)
class ProbeResult:
    val_acc: float
    train_images: int
    val_images: int
    seconds: float


def _features(model: torch.nn.Module, datamodule, split: str, spec: dict) -> np.ndarray:
    from visiontrain.image.export import model_inputs

    total = len(datamodule.inventory.splits[split])
    with torch.no_grad():
        batches = [model.forward_head(model.forward_features(model_inputs(
            datamodule, split, range(start, min(start + BATCH, total)), spec)), pre_logits=True)
            for start in range(0, total, BATCH)]
    return torch.cat(batches).numpy()


def linear_probe(cfg, inventory) -> ProbeResult:
    """Fit and score the probe on ``inventory``'s split with the model and input spec ``cfg`` composes."""
    from sklearn.linear_model import LogisticRegression

    from visiontrain.config.checks import check_train_config
    from visiontrain.image.backbone import create_backbone, find_head_parameters
    from visiontrain.image.packaged_weights import packaged_weights
    from visiontrain.image.task import datamodule_for, input_spec_from
    from visiontrain.image.weights import load_weights

    started = time.perf_counter()
    settings = check_train_config(cfg)
    spec = input_spec_from(cfg)
    weights = packaged_weights(settings.model.weights)
    model = create_backbone(weights.backbone, len(inventory.classes)).eval()
    load_weights(model, weights.path(), find_head_parameters(model, spec.image_size))
    datamodule = datamodule_for(inventory, spec, settings.data, settings.seed)
    features = {split: _features(model, datamodule, split, spec.to_dict()) for split in ("train", "val")}
    labels = {split: np.array([s.label for s in inventory.splits[split]]) for split in ("train", "val")}
    probe = LogisticRegression(max_iter=3000).fit(features["train"], labels["train"])
    return ProbeResult(float(probe.score(features["val"], labels["val"])), len(labels["train"]), len(labels["val"]),
                       time.perf_counter() - started)
