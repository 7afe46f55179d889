"""Load weights from local files without unpickling arbitrary objects.

Supported: ``.safetensors``; ``.pth``/``.pt``/``.bin`` state dicts (``torch.load(weights_only=True)``);
visiontrain ``.ckpt`` files (a backbone fine-tuned on another dataset). A head whose shape does not match the
new task is skipped, so a backbone trained on 1,000 classes seeds a 2-class model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from visiontrain.errors import WeightsError

_TORCH_SUFFIXES = {".pth", ".pt", ".bin"}
_CHECKPOINT_PREFIX = "model."  # ImageClassifier keeps the timm model in `self.model`


@dataclass
class LoadReport:
    """What a weights file contributed to a model."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": len(self.loaded), "skipped_shape_mismatch": self.skipped_shape,
                "missing": self.missing, "unexpected": self.unexpected}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from a weights file; never executes pickled code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist (model.weights_file)")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if suffix in _TORCH_SUFFIXES or suffix == ".ckpt":
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - torch raises several types for unsafe or broken files
            raise WeightsError(f"cannot read {path} safely as weights: {error}") from error
        return _unwrap(payload, path)
    raise WeightsError(f"unsupported weights file type {suffix!r} ({path}); use .safetensors, .pth, .pt, .bin or .ckpt")


def _unwrap(payload: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(payload, dict) and "state_dict" in payload:  # Lightning checkpoint
        state = payload["state_dict"]
        if any(k.startswith(_CHECKPOINT_PREFIX) for k in state):
            state = {k[len(_CHECKPOINT_PREFIX):]: v for k, v in state.items() if k.startswith(_CHECKPOINT_PREFIX)}
        return state
    for key in ("model", "state_dict_ema", "model_ema"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            return payload[key]
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload
    raise WeightsError(f"{path} holds no state dict of tensors")


def load_weights(model: nn.Module, path: str | Path, head_names: set[str] | None = None) -> LoadReport:
    """Copy matching tensors from ``path`` into ``model``; refuse a file that does not fit the backbone."""
    state = read_state_dict(path)
    own = model.state_dict()
    report = LoadReport(str(path))
    usable = {}
    for name, tensor in state.items():
        if name not in own:
            report.unexpected.append(name)
        elif own[name].shape != tensor.shape:
            report.skipped_shape.append(name)
        else:
            usable[name] = tensor
    report.loaded, report.skipped_shape = sorted(usable), sorted(report.skipped_shape)
    report.missing = sorted(set(own) - set(usable))
    head_names = head_names or set()
    missing_backbone = [n for n in report.missing if n not in head_names and not n.endswith("num_batches_tracked")]
    if not usable or len(missing_backbone) > 0.5 * max(1, len(own) - len(head_names)):
        raise WeightsError(
            f"{path} does not fit this backbone: {len(usable)} tensors match, {len(missing_backbone)} backbone "
            f"tensors are missing (first: {missing_backbone[:3]}). Check model.backbone matches the file."
        )
    model.load_state_dict(usable, strict=False)
    return report
