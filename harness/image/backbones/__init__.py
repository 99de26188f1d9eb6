"""Backbones: the harness's own trunks (BN-Inception, as the Reality Check paper used it) and any timm model.

Every backbone is built without its classifier: `forward(x)` gives [B, num_features] pooled features. A
local state dict can be loaded into any of them with `load_weights`, which ignores the removed classifier's
keys and otherwise insists on an exact fit, so a wrong file fails loudly instead of training from a
half-loaded trunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import timm
from torch import nn

from harness.errors import HarnessError
from harness.image.backbones import bn_inception as _bn_inception_module
from harness.image.backbones import weights
from harness.image.backbones.bn_inception import bn_inception  # the function now shadows the submodule's name here
from harness.image.backbones.weights import one_line

__all__ = ["available_backbones", "bn_inception", "check_backbone_name", "create_backbone", "fit_state_dict",
           "load_weights", "weight_metadata"]

# The harness's own backbones; they take precedence over timm models of the same name.
_LOCAL = ("bn_inception",)


def available_backbones() -> list[str]:
    """The harness's own backbone names (timm's are listed by `timm.list_models()`)."""
    return list(_LOCAL)


def check_backbone_name(name: str) -> None:
    """Fail in one line, before anything is built, when `name` is neither ours nor timm's."""
    if name in _LOCAL or timm.is_model(name):
        return
    raise HarnessError(f"unknown backbone '{name}'; the harness's own: {', '.join(_LOCAL)}; "
                       f"or any of timm's {len(timm.list_models()):,} model names (timm.list_models())")


def create_backbone(name: str, *, pretrained: bool, weights: str | Path | None, in_chans: int) -> nn.Module:
    """A classifier-free trunk with `num_features` and `forward(x) -> [B, num_features]`.

    `pretrained` asks for the published weights (bn_inception: ImageNet; timm: its default tag);
    `weights` is a local state dict loaded after construction. Both at once would be ambiguous.
    """
    check_backbone_name(name)
    if pretrained and weights is not None:
        raise HarnessError(f"backbone '{name}': give either pretrained weights or a weights file, not both")
    if name == "bn_inception":
        if in_chans != 3:
            raise HarnessError(f"backbone 'bn_inception' takes 3-channel (BGR) images, not {in_chans}")
        model = bn_inception("imagenet" if pretrained else None)
        if weights is not None:  # always a file here, even one named "imagenet"
            load_weights(model, weights, backbone=name)
        return model
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_chans)
    except (RuntimeError, OSError) as error:
        raise HarnessError(f"cannot build backbone '{name}' (pretrained={pretrained}): "
                           f"{one_line(error)}") from error
    if weights is not None:
        load_weights(model, weights, backbone=name)
    return model


def _classifier_prefixes(module: nn.Module, backbone: str) -> tuple[str, ...]:
    """Key prefixes of the classifier the harness removed, whose weights a file may still carry."""
    if backbone == "bn_inception":
        return (_bn_inception_module.CLASSIFIER_PREFIX,)
    cfg = getattr(module, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier") if isinstance(cfg, Mapping) else getattr(cfg, "classifier", None)
    if classifier is None:
        default = timm.models.get_pretrained_cfg(backbone)
        classifier = default.classifier if default is not None else None
    if classifier is None:
        return ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def fit_state_dict(module: nn.Module, state: object, *, source: str, backbone: str) -> None:
    """`weights.fit_state_dict` with the classifier keys of `backbone` allowed in the file."""
    weights.fit_state_dict(module, state, source=source, backbone=backbone,
                           classifier_prefixes=_classifier_prefixes(module, backbone))


def load_weights(module: nn.Module, path: str | Path, *, backbone: str) -> None:
    """`weights.load_weights` with the classifier keys of `backbone` allowed in the file."""
    weights.load_weights(module, path, backbone=backbone, classifier_prefixes=_classifier_prefixes(module, backbone))


def weight_metadata(name: str, pretrained: bool) -> dict | None:
    """The input the pretrained weights expect: size, channel order, pixel range, mean and std.

    None when not pretrained: random weights expect nothing in particular.
    """
    check_backbone_name(name)
    if not pretrained:
        return None
    if name == "bn_inception":
        return _bn_inception_module.IMAGENET_WEIGHTS.metadata()
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise HarnessError(f"timm has no pretrained weights for backbone '{name}'")
    _, height, width = cfg.input_size
    return {"input_size": height if height == width else [height, width], "channel_order": "RGB",
            "pixel_range": 1.0, "mean": [float(m) for m in cfg.mean], "std": [float(s) for s in cfg.std]}
