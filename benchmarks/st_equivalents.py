"""sentence-transformers' batch triplet losses behind our forward(embeddings, labels) signature.

The second reference of benchmarks/losses.py, and the only one for batch_semi_hard, which PML does
not implement (see benchmarks/pml_equivalents/triplet.py). Same Euclidean distance and margin as
ours; the equality of values and gradients is tested in tests/test_losses.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

__all__ = ["st_equivalents"]

# our name -> (their class, their per-batch method, whether it takes a margin)
_METHODS = {
    "batch_hard": ("BatchHardTripletLoss", "batch_hard_triplet_loss", True),
    "batch_all": ("BatchAllTripletLoss", "batch_all_triplet_loss", True),
    "batch_semi_hard": ("BatchSemiHardTripletLoss", "batch_semi_hard_triplet_loss", True),
    "batch_hard_soft_margin": ("BatchHardSoftMarginTripletLoss", "batch_hard_triplet_soft_margin_loss", False),
}


class _BatchMethod(torch.nn.Module):
    """Calls their per-batch method directly: the model call their forward() makes is skipped."""

    def __init__(self, loss: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.loss = loss
        self.method = method

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return getattr(self.loss, self.method)(labels, embeddings)


def st_equivalents() -> dict[str, Callable[[torch.nn.Module], torch.nn.Module]]:
    """Our name -> builder of their loss configured like our built module; empty without the library."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                from sentence_transformers.sentence_transformer import losses as st_losses
            except ImportError:  # releases before the sentence_transformer subpackage
                from sentence_transformers import losses as st_losses
    except ImportError:
        return {}
    distance = st_losses.BatchHardTripletLossDistanceFunction.eucledian_distance

    def builder(cls_name: str, method: str, has_margin: bool) -> Callable[[torch.nn.Module], torch.nn.Module]:
        def build(ours: torch.nn.Module) -> torch.nn.Module:
            cls = getattr(st_losses, cls_name)
            # model=None: the per-batch methods use only the distance and the margin
            loss = cls(None, distance, ours.margin) if has_margin else cls(None, distance)
            return _BatchMethod(loss, method)
        return build

    return {name: builder(*spec) for name, spec in _METHODS.items()}
