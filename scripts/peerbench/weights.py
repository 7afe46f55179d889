"""The packaged EfficientNet-Lite0 ImageNet weights under timm's names, for the peers that cannot load them.

visiontrain loads the packaged file by tensor order (:func:`visiontrain.image.weights.load_weights`); the same
function, given timm's own model, gives the peers the same tensors under timm's names:

- ``imagenet_file``: the whole 1,000-class ImageNet model. fastai gets it through timm's own pretrained path
  (``pretrained_cfg_overlay=dict(file=...)``), which drops the 1,000-class head as it does for the hub's weights.
- ``initial_checkpoint``: for timm's ``train.py --initial-checkpoint``, which loads with ``strict=True`` into a
  model already built with ``--num-classes N``: the ImageNet body plus an N-class head at timm's own
  initialisation (seeded), i.e. what ``--pretrained`` leaves when it re-creates a head of another size.
"""

from __future__ import annotations

from pathlib import Path

import torch

WEIGHTS = "efficientnet_lite0.in1k"


def _timm_model(num_classes: int):
    import timm

    from visiontrain.image.packaged_weights import packaged_weights

    return timm.create_model(packaged_weights(WEIGHTS).backbone, pretrained=False, num_classes=num_classes)


def imagenet_file(path: Path) -> Path:
    """The packaged weights, every tensor (head included) under timm's name, as a plain state dict."""
    from visiontrain.image.packaged_weights import packaged_weights
    from visiontrain.image.weights import load_weights

    model = _timm_model(1000)
    report = load_weights(model, packaged_weights(WEIGHTS).path(), {"classifier.weight", "classifier.bias"})
    if report.missing or report.head != "loaded":
        raise SystemExit(f"the packaged weights did not fill timm's model: missing {report.missing[:3]}, "
                         f"head {report.head}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def initial_checkpoint(imagenet: Path, path: Path, num_classes: int, seed: int) -> Path:
    """The ImageNet body with a fresh ``num_classes`` head, initialised by timm with ``seed``."""
    torch.manual_seed(seed)
    model = _timm_model(num_classes)
    state = torch.load(imagenet, map_location="cpu", weights_only=True)
    own = model.state_dict()
    body = {name: value for name, value in state.items() if own[name].shape == value.shape}
    skipped = sorted(set(state) - set(body))
    if skipped != ["classifier.bias", "classifier.weight"]:
        raise SystemExit(f"expected only the ImageNet head to differ from a {num_classes}-class model; got {skipped}")
    model.load_state_dict(body, strict=False)
    torch.save(model.state_dict(), path)
    return path
