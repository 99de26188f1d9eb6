"""PML's counterparts of the softmax family (losses/softmax.py), with our class weights copied in.

PML's `W` has our layout, [embedding_size, num_classes]. Its default distances (DotProductSimilarity
with normalised embeddings; CosineSimilarity) and MeanReducer are what ours compute, so no option
needs setting beyond the hyperparameters. ArcFace's margin is in degrees in both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_metric_learning import losses as pml_losses

__all__ = ["EQUIVALENTS"]


def _with_our_weights(pml: torch.nn.Module, ours: torch.nn.Module) -> torch.nn.Module:
    pml = pml.to(ours.W.device)
    with torch.no_grad():
        pml.W.copy_(ours.W)
    return pml


def _construct(cls: type, ours: torch.nn.Module, **hparams: float) -> torch.nn.Module:
    # PML draws its own W on construction: keep the caller's global RNG stream untouched
    with torch.random.fork_rng(devices=[]):
        pml = cls(num_classes=ours.num_classes, embedding_size=ours.embedding_dim, **hparams)
    return _with_our_weights(pml, ours)


def normalized_softmax(ours: torch.nn.Module) -> torch.nn.Module:
    return _construct(pml_losses.NormalizedSoftmaxLoss, ours, temperature=ours.temperature)


def cosface(ours: torch.nn.Module) -> torch.nn.Module:
    return _construct(pml_losses.CosFaceLoss, ours, margin=ours.margin, scale=ours.scale)


def arcface(ours: torch.nn.Module) -> torch.nn.Module:
    return _construct(pml_losses.ArcFaceLoss, ours, margin=ours.margin, scale=ours.scale)


EQUIVALENTS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "normalized_softmax": normalized_softmax,
    "cosface": cosface,
    "arcface": arcface,
}
