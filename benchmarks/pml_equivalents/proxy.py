"""PML's counterparts of the proxy family (losses/proxy.py), with our learnt parameters copied in."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import regularizers as pml_regularizers

from losses.proxy import PerClassMarginLoss

__all__ = ["EQUIVALENTS"]


def _proxy_nca(ours: torch.nn.Module) -> torch.nn.Module:
    classes, dim = ours.proxies.shape
    theirs = pml_losses.ProxyNCALoss(num_classes=classes, embedding_size=dim, softmax_scale=ours.softmax_scale)
    theirs.proxies.data.copy_(ours.proxies.data)
    return theirs


def _proxy_anchor(ours: torch.nn.Module) -> torch.nn.Module:
    classes, dim = ours.proxies.shape
    theirs = pml_losses.ProxyAnchorLoss(num_classes=classes, embedding_size=dim, margin=ours.margin,
                                        alpha=ours.alpha)
    theirs.proxies.data.copy_(ours.proxies.data)
    return theirs


def _margin(ours: torch.nn.Module) -> torch.nn.Module:
    # one β: num_classes=None; per class: one β per class, indexed by the anchor's label (as ours)
    classes = ours.learned_beta.shape[0] if isinstance(ours, PerClassMarginLoss) else None
    theirs = pml_losses.MarginLoss(margin=ours.margin, nu=0.0, beta=ours.beta, learn_beta=True, num_classes=classes)
    theirs.beta.data.copy_(ours.learned_beta.data)
    return theirs


def _soft_triple(ours: torch.nn.Module) -> torch.nn.Module:
    dim = ours.centers.shape[0]
    regularizer = pml_regularizers.SparseCentersRegularizer(ours.num_classes, ours.centers_per_class)
    theirs = pml_losses.SoftTripleLoss(num_classes=ours.num_classes, embedding_size=dim,
                                       centers_per_class=ours.centers_per_class, la=ours.la, gamma=ours.gamma,
                                       margin=ours.margin, weight_regularizer=regularizer,
                                       weight_reg_weight=ours.reg_weight)
    theirs.fc.data.copy_(ours.centers.data)  # same [D, C*K] layout, column c*K + k
    return theirs


EQUIVALENTS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "proxy_nca": _proxy_nca,
    "proxy_anchor": _proxy_anchor,
    "margin": _margin,
    "margin_per_class": _margin,
    "soft_triple": _soft_triple,
}
