"""The freeze-then-fine-tune schedule as plain, testable functions of the epoch and step.

Stage 1 (``epoch < freeze_epochs``): the backbone is frozen (no gradients, BatchNorm statistics fixed) and only
the head trains. Stage 2: the backbone (all of it, or its top ``unfreeze`` groups) trains with a lower
learning rate, optionally decayed layer by layer, after a warmup, with cosine decay to the end.

Because the stage is derived from the epoch, never stored, a run resumed after the unfreeze point is in
stage 2 by construction (the failure of Lightning's own finetuning callback on resume cannot happen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from timm.optim import param_groups_weight_decay
from torch import nn

from visiontrain.config.image import Schedule

FineTuneSchedule = Schedule  # the ``schedule.*`` section; a classifier reads its stored copy with the same model


def stage_name(schedule: FineTuneSchedule, epoch: int) -> str:
    return "frozen_backbone" if schedule.is_frozen(epoch) else "fine_tune"


def trainable_in_stage_two(layer_ids: dict[str, int], unfreeze: str | int) -> set[str]:
    """Backbone parameters that train after the unfreeze; the rest stay frozen for the whole run."""
    if unfreeze == "all":
        return set(layer_ids)
    top = int(unfreeze)
    if top <= 0:
        return set()
    depth = max(layer_ids.values(), default=0) + 1
    return {name for name, layer in layer_ids.items() if layer >= depth - top}


def build_param_groups(model: nn.Module, head: set[str], layer_ids: dict[str, int], trainable: set[str],
                       lr: float, weight_decay: float, schedule: FineTuneSchedule) -> list[dict]:
    """Optimizer groups: the head, then one group per backbone layer, each split into decay and no decay.

    The parameters without weight decay are those timm exempts (:func:`decay_exemptions`): biases, norms and
    what the model's ``no_weight_decay()`` names.

    Every group carries ``name``, ``role`` (head/backbone) and its configured ``lr``, so learning-rate
    monitors show the stages and tests can check the rates, and ``lr_scale``, that rate as a share of ``lr``
    (what the learning-rate finder keeps when it sets one rate on every group).
    """
    depth = max(layer_ids.values(), default=0) + 1
    exempt = decay_exemptions(model)
    groups: dict[tuple[str, int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if name not in head and name not in trainable:
            continue
        role = "head" if name in head else "backbone"
        layer = depth if role == "head" else layer_ids[name]
        if id(parameter) not in exempt:
            raise ValueError(f"parameter {name} is in the optimizer's groups but does not require gradients; "
                             "a parameter that trains in any stage must keep requires_grad=True")
        no_decay = exempt[id(parameter)]
        key = (role, layer, no_decay)
        if key not in groups:
            scale = 1.0 if role == "head" else schedule.backbone_lr_scale * (
                (schedule.layer_decay ** (depth - 1 - layer)) if schedule.layer_decay else 1.0)
            groups[key] = {"params": [], "name": f"{role}" + ("" if role == "head" else f".layer{layer}")
                           + (".no_decay" if no_decay else ""), "role": role, "lr": lr * scale, "lr_scale": scale,
                           "weight_decay": 0.0 if no_decay else weight_decay}
        groups[key]["params"].append(parameter)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0] != "head", -k[1], k[2]))]


def decay_exemptions(model: nn.Module) -> dict[int, bool]:
    """By id, for every parameter that requires gradients: whether timm trains it without weight decay.

    Exempt are biases, 1-D parameters (norms) and what the model's ``no_weight_decay()`` names (a ViT's
    ``cls_token`` and ``pos_embed``), as timm's own ``create_optimizer_v2`` decides.
    """
    names = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    groups = param_groups_weight_decay(model, weight_decay=1.0, no_weight_decay_list=names)
    return {id(p): group["weight_decay"] == 0.0 for group in groups for p in group["params"]}


@dataclass
class StagedLR:
    """LR multiplier per step for one parameter-group role (a picklable callable for ``LambdaLR``).

    Head: full rate through stage 1 (a zero-initialised head on frozen features is a linear probe, which
    needs no warmup), then cosine decay. Backbone: zero in stage 1, warmup from the unfreeze step, then the
    same cosine decay. Without a frozen stage everything warms up together. Its fields are plain numbers, so it is saved in checkpoints.
    """

    role: str
    steps_per_epoch: float
    total_steps: int
    freeze_epochs: int
    warmup_epochs: float
    min_lr_ratio: float

    def __call__(self, step: int) -> float:
        freeze_steps = int(round(self.freeze_epochs * self.steps_per_epoch))
        warmup_steps = max(1, int(round(self.warmup_epochs * self.steps_per_epoch)))
        if step < freeze_steps:
            return 0.0 if self.role == "backbone" else 1.0
        since_unfreeze = step - freeze_steps
        decay_steps = max(1, self.total_steps - freeze_steps)
        progress = min(1.0, since_unfreeze / decay_steps)
        cosine = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        warms_up = self.role == "backbone" or freeze_steps == 0
        warmup = min(1.0, (since_unfreeze + 1) / warmup_steps) if warms_up and self.warmup_epochs > 0 else 1.0
        return warmup * cosine
