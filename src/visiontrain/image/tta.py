"""Test-time augmentation for ``visiontrain evaluate tta=...``: predict on each view, average the probabilities.

Why: a model trained with random horizontal flips sees a photo and its mirror image as equally likely; averaging
its predictions on both removes part of the noise of a single view, for twice the inference cost.

Probabilities are averaged (softmax of each view, then the mean), as fastai's ``tta`` does; the result is returned
as the log of the mean probability, which is a valid logit: its softmax is the averaged prediction, so the loss,
accuracy and confusion matrix of the evaluation are those of the averaged prediction.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from visiontrain.config.choices import TTA_MODES


def tta_views(images: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The views of an NCHW batch that ``mode`` predicts on."""
    if mode == "none":
        return [images]
    if mode == "hflip":
        return [images, images.flip(-1)]
    raise ValueError(f"unknown test-time augmentation {mode!r}; one of {', '.join(TTA_MODES)}")


def tta_logits(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, mode: str) -> torch.Tensor:
    """log(mean over views of softmax(forward(view))); plain ``forward(images)`` for ``mode="none"``."""
    views = tta_views(images, mode)
    if len(views) == 1:
        return forward(images)
    logits = forward(torch.cat(views)).split(len(images))  # one batch: eval-mode BatchNorm makes it per image
    log_probabilities = torch.stack([torch.log_softmax(view, dim=-1) for view in logits])
    return torch.logsumexp(log_probabilities, dim=0) - math.log(len(views))  # stable log of the mean probability
