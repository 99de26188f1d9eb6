"""PML's counterparts of the pair-based losses (losses/pair.py) and of `triplet`, configured alike.

Every PML distance here has normalize_embeddings=False: our losses take the harness's L2-normalised
embeddings as given, and PML's extra normalisation would change the gradients' radial component.
No PML reducer is overridden: each of our losses reproduces PML's default reducer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance, SNRDistance
from pytorch_metric_learning.regularizers import ZeroMeanRegularizer

__all__ = ["EQUIVALENTS", "MinedLoss", "UnnormalisedCosineSimilarity"]


class UnnormalisedCosineSimilarity(CosineSimilarity):
    """PML's CosineSimilarity without its normalisation: the dot product of already unit vectors.

    A subclass because CircleLoss and TupletMarginLoss insist on a CosineSimilarity instance and
    CosineSimilarity's constructor forces normalize_embeddings=True.
    """

    def __init__(self) -> None:
        super().__init__()
        self.normalize_embeddings = False


class MinedLoss(torch.nn.Module):
    """A PML loss applied to the pairs its miner returns, callable as loss(embeddings, labels)."""

    def __init__(self, loss: torch.nn.Module, miner: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(embeddings, labels, self.miner(embeddings, labels))


def _euclidean() -> LpDistance:
    return LpDistance(p=2, normalize_embeddings=False)


def _contrastive(ours: torch.nn.Module) -> torch.nn.Module:
    return pml_losses.ContrastiveLoss(pos_margin=ours.pos_margin, neg_margin=ours.neg_margin, distance=_euclidean())


def _triplet(ours: torch.nn.Module) -> torch.nn.Module:
    # no miner: all triplets of the batch; default AvgNonZeroReducer
    return pml_losses.TripletMarginLoss(margin=ours.margin, distance=_euclidean())


def _snr_contrastive(ours: torch.nn.Module) -> torch.nn.Module:
    return pml_losses.SignalToNoiseRatioContrastiveLoss(
        pos_margin=ours.pos_margin, neg_margin=ours.neg_margin, distance=SNRDistance(normalize_embeddings=False),
        embedding_regularizer=ZeroMeanRegularizer(), embedding_reg_weight=ours.regularizer_weight)


def _lifted_structure(ours: torch.nn.Module) -> torch.nn.Module:
    return pml_losses.GeneralizedLiftedStructureLoss(pos_margin=ours.pos_margin, neg_margin=ours.neg_margin,
                                                     distance=_euclidean())


def _multi_similarity(ours: torch.nn.Module) -> torch.nn.Module:
    return pml_losses.MultiSimilarityLoss(alpha=ours.alpha, beta=ours.beta, base=ours.base,
                                          distance=UnnormalisedCosineSimilarity())


def _multi_similarity_miner(ours: torch.nn.Module) -> torch.nn.Module:
    miner = pml_miners.MultiSimilarityMiner(epsilon=ours.epsilon, distance=UnnormalisedCosineSimilarity())
    return MinedLoss(_multi_similarity(ours), miner)


def _circle(ours: torch.nn.Module) -> torch.nn.Module:
    return pml_losses.CircleLoss(m=ours.m, gamma=ours.gamma, distance=UnnormalisedCosineSimilarity())


def _tuplet_margin(ours: torch.nn.Module) -> torch.nn.Module:
    return pml_losses.TupletMarginLoss(margin=ours.margin, scale=ours.scale, distance=UnnormalisedCosineSimilarity())


EQUIVALENTS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "contrastive": _contrastive,
    "triplet": _triplet,
    "snr_contrastive": _snr_contrastive,
    "lifted_structure": _lifted_structure,
    "multi_similarity": _multi_similarity,
    "multi_similarity_miner": _multi_similarity_miner,
    "circle": _circle,
    "tuplet_margin": _tuplet_margin,
}
