"""Load weights from local files without unpickling arbitrary objects, whatever code saved them.

Supported: ``.safetensors``; ``.pth``/``.pt``/``.bin`` state dicts (``torch.load(weights_only=True)``);
visiontrain ``.ckpt`` files (a backbone fine-tuned on another dataset).

Tensors are matched to the model by name first. A file saved by another implementation of the same
architecture (``_blocks.0._depthwise_conv.weight`` for timm's ``blocks.0.0.conv_dw.weight``) is matched by
order instead, with every shape checked, the idea behind timm's ``load_checkpoint(..., remap=True)``; a file
whose shapes do not line up is refused, naming the first pair that differs. The head may differ: a head of
another size is left to the new task (re-created), one of the same size is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from visiontrain.core.files import sha256_of_file
from visiontrain.errors import WeightsError

_TORCH_SUFFIXES = {".pth", ".pt", ".bin"}
_CHECKPOINT_PREFIX = "model."  # ImageClassifier keeps the timm model in `self.model`
_EMA_PREFIX = "ema.module."  # and, with model.ema on, its weight average in `self.ema.module`
_COUNTER_SUFFIX = "num_batches_tracked"  # BatchNorm step counters: not weights, absent from many files
_PAIRS_SHOWN = 3


@dataclass
class LoadReport:
    """What a weights file contributed to a model, and how its tensors were matched."""

    source: str
    method: str = "names"  # names | order
    loaded: list[str] = field(default_factory=list)      # model tensors that got the file's values
    remapped: int = 0                                    # of those, matched by order under another name
    skipped: list[str] = field(default_factory=list)     # file tensors not used (a head of another size)
    head: str = "re-created"                             # re-created | loaded
    missing: list[str] = field(default_factory=list)     # model tensors the file did not provide
    first_pairs: list[tuple[str, str]] = field(default_factory=list)  # (file name, model name)
    last_pairs: list[tuple[str, str]] = field(default_factory=list)
    sha256: str = ""

    def to_dict(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "method": self.method, "loaded": len(self.loaded),
                "remapped": self.remapped, "skipped": len(self.skipped), "skipped_names": self.skipped,
                "head": self.head, "missing": self.missing,
                "first_pairs": [list(p) for p in self.first_pairs], "last_pairs": [list(p) for p in self.last_pairs]}

    def describe(self) -> str:
        line = (f"weights {self.source}: {len(self.loaded)} tensors loaded by {self.method}"
                f" ({self.remapped} remapped), {len(self.skipped)} skipped, head {self.head}")
        if self.method == "order" and self.first_pairs:
            first, last = self.first_pairs[0], self.last_pairs[-1]
            line += f"; first {first[0]} -> {first[1]}, last {last[0]} -> {last[1]}"
        return line


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
        for prefix in (_EMA_PREFIX, _CHECKPOINT_PREFIX):  # the averaged weights are the ones that were exported
            if any(k.startswith(prefix) for k in state):
                return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        return state
    for key in ("model", "state_dict_ema", "model_ema"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            return payload[key]
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload
    raise WeightsError(f"{path} holds no state dict of tensors")


def _weights_only(state: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, value in state.items()
            if isinstance(value, torch.Tensor) and not name.endswith(_COUNTER_SUFFIX)]


def match_by_name(source: dict[str, torch.Tensor], own: dict[str, torch.Tensor], body: list[str]) -> dict[str, str] | None:
    """model name -> file name when every body tensor is in the file under its own name and shape."""
    if all(n in source and source[n].shape == own[n].shape for n in body):
        return {n: n for n in own if n in source and source[n].shape == own[n].shape}
    return None


def match_by_order(source: dict[str, torch.Tensor], own: dict[str, torch.Tensor], body: list[str],
                   head: list[str], path: str) -> dict[str, str]:
    """model name -> file name, pairing the model's body tensors with the file's in order, shapes checked.

    What follows the body in the file is its head: loaded when it has the new head's shapes, skipped otherwise.
    """
    names = _weights_only(source)
    if len(names) < len(body):
        raise WeightsError(f"{path} does not fit this backbone: it holds {len(names)} tensors, the backbone needs "
                           f"{len(body)} (matched by order, as the names differ). Check model.backbone matches the file.")
    for index, (model_name, file_name) in enumerate(zip(body, names)):
        if tuple(source[file_name].shape) != tuple(own[model_name].shape):
            raise WeightsError(
                f"{path} does not fit this backbone: the names differ, and matched by order tensor {index} of the "
                f"file, {file_name} {tuple(source[file_name].shape)}, does not fit {model_name} "
                f"{tuple(own[model_name].shape)}. Check model.backbone matches the file.")
    mapping = dict(zip(body, names))
    rest = names[len(body):]
    if len(rest) == len(head) and all(tuple(source[f].shape) == tuple(own[m].shape) for m, f in zip(head, rest)):
        mapping.update(zip(head, rest))
    return mapping


def load_weights(model: nn.Module, path: str | Path, head_names: set[str] | None = None) -> LoadReport:
    """Copy the file's tensors into ``model`` (names first, else order); refuse a file that does not fit."""
    source = read_state_dict(path)
    own = model.state_dict()
    head_names = head_names or set()
    head = [n for n in _weights_only(own) if n in head_names]
    body = [n for n in _weights_only(own) if n not in head_names]
    mapping = match_by_name(source, own, body)
    method = "names"
    if mapping is None:
        named = sum(1 for n in body if n in source)
        if named > 0.5 * len(body):  # same naming, other architecture or variant: not a remap case
            mismatched = [n for n in body if n not in source or source[n].shape != own[n].shape]
            raise WeightsError(f"{path} does not fit this backbone: {len(body) - len(mismatched)} of {len(body)} "
                               f"tensors match by name and shape; first that does not: {mismatched[0]}. Check "
                               "model.backbone matches the file.")
        mapping, method = match_by_order(source, own, body, head, str(path)), "order"
    model.load_state_dict({m: source[f] for m, f in mapping.items()}, strict=False)
    pairs = [(f, m) for m, f in mapping.items()]
    used = set(mapping.values())
    return LoadReport(
        source=str(path), method=method, loaded=sorted(mapping), remapped=sum(1 for m, f in mapping.items() if m != f),
        skipped=[n for n in _weights_only(source) if n not in used], head="loaded" if head and head[0] in mapping
        else "re-created", missing=sorted(n for n in _weights_only(own) if n not in mapping),
        first_pairs=pairs[:_PAIRS_SHOWN], last_pairs=pairs[-_PAIRS_SHOWN:], sha256=sha256_of_file(path))
