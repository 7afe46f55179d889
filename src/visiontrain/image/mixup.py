"""Mixup / CutMix of training batches (``augment.mixup``), with timm's ``Mixup``: off unless an alpha is > 0.

Why: on small fine-tuning sets, blending pairs of images (mixup) or pasting a patch of one into another (CutMix)
and training on the correspondingly blended labels regularises like more data would; timm's ImageNet recipes use
both. It runs on the device, on the normalised batch, so the loader and the exported model are untouched.

timm pairs image ``i`` with image ``n - 1 - i`` and needs an even batch: ``data.batch_size`` must be even (the
config check says so), and while mixup is on the training loader drops its last, incomplete batch (as timm's
training loader does), so every batch is full and even. Validation batches are never mixed.
"""

from __future__ import annotations

from typing import Any

from timm.data import Mixup

MIXUP_DEFAULTS: dict[str, Any] = {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "prob": 1.0, "switch_prob": 0.5,
                                  "mode": "batch", "label_smoothing": 0.1}


def mixup_enabled(settings: dict[str, Any] | None) -> bool:
    """On when either alpha is > 0, as in timm's train.py."""
    settings = settings or {}
    return float(settings.get("mixup_alpha", 0.0)) > 0 or float(settings.get("cutmix_alpha", 0.0)) > 0


def build_mixup(settings: dict[str, Any] | None, num_classes: int) -> Mixup | None:
    """timm's ``Mixup`` for ``augment.mixup`` settings, or None when mixing is off."""
    if not mixup_enabled(settings):
        return None
    s = {**MIXUP_DEFAULTS, **(settings or {})}
    return Mixup(mixup_alpha=float(s["mixup_alpha"]), cutmix_alpha=float(s["cutmix_alpha"]), prob=float(s["prob"]),
                 switch_prob=float(s["switch_prob"]), mode=str(s["mode"]),
                 label_smoothing=float(s["label_smoothing"]), num_classes=num_classes)
