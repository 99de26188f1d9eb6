"""PML counterparts of the batch triplet losses (losses/triplet.py), configured alike.

Ours take the embeddings as given (no re-normalisation), so PML's Euclidean distance is told not to
normalise either: values are then equal on any input, and gradients too (PML's default distance
normalises, which on unit vectors leaves the value but projects out the radial gradient).

batch_semi_hard has no counterpart: FaceNet's rule takes, per anchor-positive pair, the NEAREST
negative farther than the positive (else the farthest negative), while PML's
TripletMarginMiner(type_of_triplets="semihard") keeps ALL semi-hard triplets and BatchEasyHardMiner's
"semihard" negatives are chosen per anchor (from its one mined positive), not per pair; neither
reproduces the fallback nor the mean over all pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_metric_learning import distances, miners, reducers
from pytorch_metric_learning import losses as pml_losses

__all__ = ["EQUIVALENTS", "MinedLoss", "euclidean"]


def euclidean() -> distances.LpDistance:
    """PML's Euclidean distance on the embeddings as given, like ours."""
    return distances.LpDistance(p=2, power=1, normalize_embeddings=False)


class MinedLoss(torch.nn.Module):
    """A PML miner and loss behind our forward(embeddings, labels) signature."""

    def __init__(self, miner: torch.nn.Module, loss: torch.nn.Module) -> None:
        super().__init__()
        self.miner = miner
        self.loss = loss

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(embeddings, labels, self.miner(embeddings, labels))


def batch_all(ours: torch.nn.Module) -> torch.nn.Module:
    # all triplets, mean over the non-zero ones (PML's default AvgNonZeroReducer; ours counts > 1e-16)
    return pml_losses.TripletMarginLoss(margin=ours.margin, triplets_per_anchor="all", distance=euclidean(),
                                        reducer=reducers.AvgNonZeroReducer())


def batch_hard(ours: torch.nn.Module) -> torch.nn.Module:
    # MeanReducer: ours averages over every anchor with a positive and a negative (the ones the miner
    # keeps), easy ones included; PML's default AvgNonZeroReducer would average over violating ones only
    return MinedLoss(miners.BatchHardMiner(distance=euclidean()),
                     pml_losses.TripletMarginLoss(margin=ours.margin, distance=euclidean(),
                                                  reducer=reducers.MeanReducer()))


def batch_hard_soft_margin(ours: torch.nn.Module) -> torch.nn.Module:
    # smooth_loss: softplus(d_ap - d_an + margin), with margin 0 exactly ours
    return MinedLoss(miners.BatchHardMiner(distance=euclidean()),
                     pml_losses.TripletMarginLoss(margin=0.0, smooth_loss=True, distance=euclidean(),
                                                  reducer=reducers.MeanReducer()))


EQUIVALENTS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "batch_all": batch_all,
    "batch_hard": batch_hard,
    "batch_hard_soft_margin": batch_hard_soft_margin,
}
