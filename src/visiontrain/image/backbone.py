"""Create a timm backbone with a new head, and find which of its parameters form that head."""

from __future__ import annotations

import difflib
import logging
import socket
from urllib.parse import urlparse

import torch
from torch import nn

from visiontrain.errors import ConfigError, WeightsError

log = logging.getLogger("visiontrain")


def check_backbone_name(name: str, key: str = "model.backbone") -> None:
    """Fail early, with suggestions, on a backbone timm does not know."""
    import timm

    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "list names with `python -c 'import timm; print(timm.list_models(\"*resnet*\"))'`"
    raise ConfigError(key, f"unknown timm backbone {name!r}", f"{key}=<a timm model name>; {hint}")


def create_backbone(name: str, num_classes: int, pretrained: bool = False, drop_rate: float = 0.0) -> nn.Module:
    """``timm.create_model`` with a freshly initialised ``num_classes`` head.

    With ``pretrained=True`` the weights come from the timm / Hugging Face hub; when the hub cannot be
    reached the error says so and names the local-file alternative.
    """
    import timm

    check_backbone_name(name)
    if pretrained:
        use_cache_only_if_hub_unreachable()
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, drop_rate=drop_rate)
    except Exception as error:  # noqa: BLE001 - hub failures surface as many exception types
        if not pretrained:
            raise
        raise WeightsError(
            f"could not fetch pretrained weights for {name!r} from the model hub ({type(error).__name__}: "
            f"{error}). Without network access, download the weights elsewhere and pass "
            f"model.weights_file=/path/to/{name}.safetensors (or .pth / a visiontrain .ckpt) with "
            "model.pretrained=false, or train from scratch with model.pretrained=false."
        ) from error
    if not (pretrained and num_classes == model.pretrained_cfg.get("num_classes")):  # the hub's head is kept
        zero_new_head(model)
    return model


def zero_new_head(model: nn.Module) -> None:
    """Start the new classifier at zero, whatever the backbone family.

    timm initialises an EfficientNet classifier uniformly within +-1/sqrt(num_classes): a 2-class head gets
    weights of std 0.41, the first logits are huge, and a stage that trains the head on frozen features
    spends its epochs unlearning them. A zero head predicts uniform probabilities, its gradient is the
    features themselves, and fitting it on frozen features is the convex problem of a linear probe.
    """
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    layers = [m for m in (classifier.modules() if isinstance(classifier, nn.Module) else ())
              if isinstance(m, (nn.Linear, nn.Conv2d))]
    if layers:
        nn.init.zeros_(layers[-1].weight)
        if layers[-1].bias is not None:
            nn.init.zeros_(layers[-1].bias)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can a TCP connection to the Hugging Face hub (or ``HF_ENDPOINT``'s mirror) be opened?"""
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def use_cache_only_if_hub_unreachable() -> None:
    """Without network, go straight to the local hub cache instead of retrying for about a minute.

    huggingface_hub retries an unreachable hub with backoff before it looks in its cache; switching to its
    offline mode (what ``HF_HUB_OFFLINE=1`` does) gives the same answer at once: cached weights load, missing
    ones fail with the message that names ``model.weights_file``.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or hub_reachable():
        return
    log.warning("the model hub (%s) is unreachable: looking for pretrained weights in the local cache only",
                constants.ENDPOINT)
    constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub.constants.is_offline_mode()


def find_head_parameters(model: nn.Module, image_size: int) -> set[str]:
    """Names of the parameters used by ``forward_head`` (pooling, pre-logits norm, classifier).

    Found by running the model once and recording which modules ``forward_head`` calls, so it works for
    any timm architecture rather than guessing from attribute names.
    """
    called: set[int] = set()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            features = model.forward_features(torch.zeros(1, 3, image_size, image_size))
            hooks = [m.register_forward_hook(lambda mod, *_: called.add(id(mod))) for m in model.modules()]
            try:
                model.forward_head(features)
            finally:
                for hook in hooks:
                    hook.remove()
    finally:
        model.train(was_training)
    return {f"{module_name}.{param_name}" if module_name else param_name
            for module_name, module in model.named_modules() if id(module) in called
            for param_name, _ in module.named_parameters(recurse=False)}


def backbone_layer_ids(model: nn.Module, head: set[str], coarse: bool) -> dict[str, int]:
    """Depth index of every backbone parameter (0 = stem), from timm's own group matcher."""
    from timm.models import group_parameters

    names = [n for n, _ in model.named_parameters() if n not in head]
    if not hasattr(model, "group_matcher"):
        return {n: 0 for n in names}
    groups = group_parameters(model, model.group_matcher(coarse=coarse))
    layer_of = {name: layer for layer, members in groups.items() for name in members}
    ordered = sorted({layer_of.get(n, 0) for n in names})
    dense = {layer: i for i, layer in enumerate(ordered)}  # renumber 0..L-1 without gaps
    return {n: dense[layer_of.get(n, 0)] for n in names}
