"""Pair-based losses: every positive and negative pair of the batch, weighted or hinged.

Contrastive (Hadsell, Chopra, LeCun 2006), SNR contrastive (Yuan et al. 2019), generalised lifted
structure (Song et al. 2016, in the form of Hermans et al. 2017), multi-similarity with and without
its miner (Wang et al. 2019), circle (Sun et al. 2020) and tuplet margin (Yu & Tao 2019). Each one
computes what pytorch-metric-learning's (PML's) loss of the same name computes with its default
reducer and no miner (or, for `multi_similarity_miner`, with its MultiSimilarityMiner), as one
vectorised pass over [B, B] masks instead of PML's index lists.

Shared deliberate differences from PML, stated once here and in each class:
- No re-normalisation. PML's distances L2-normalise the embeddings again by default; we take them
  as given (the harness normalises them). On unit-norm input the values are identical; the
  gradients differ only by their radial component, which the harness's own normalisation removes.
- A batch with no positive pair or no negative pair (all labels distinct, or all equal) gives
  exactly 0, still attached to the graph. PML computes the one-sided term there for contrastive,
  SNR contrastive, lifted structure and multi-similarity (e.g. pulls an all-equal batch together).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution

from losses.common import cdist_euclidean_distances, check_inputs, pair_masks
from losses.registry import register_loss

__all__ = [
    "CircleLoss",
    "ContrastiveLoss",
    "GeneralizedLiftedStructureLoss",
    "MultiSimilarityLoss",
    "MultiSimilarityMinerLoss",
    "SNRContrastiveLoss",
    "TupletMarginLoss",
    "cosine_similarities",
    "snr_distances",
]

_HADSELL = "Hadsell, Chopra, LeCun. Dimensionality Reduction by Learning an Invariant Mapping. CVPR 2006"
_YUAN = ("Yuan, Deng, Tang, Tang, Chen. Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric "
         "Learning. CVPR 2019")
_SONG = ("Song, Xiang, Jegelka, Savarese. Deep Metric Learning via Lifted Structured Feature Embedding. "
         "CVPR 2016; generalised form: Hermans, Beyer, Leibe. In Defense of the Triplet Loss. 2017")
_WANG = ("Wang, Han, Huang, Dong, Scott. Multi-Similarity Loss with General Pair Weighting for Deep "
         "Metric Learning. CVPR 2019")
_SUN = ("Sun, Cheng, Zhang, Zhang, Zheng, Wang, Wei. Circle Loss: A Unified Perspective of Pair "
        "Similarity Optimization. CVPR 2020")
_YU = "Yu, Tao. Deep Metric Learning with Tuplet Margin Loss. ICCV 2019"

# PML fills left-out entries of a masked log-sum-exp with the most negative finite float, not -inf:
# a row with nothing kept then has a finite log-sum-exp and a finite (zero) gradient.
_FILL = torch.finfo(torch.float32).min

# Masks are applied by multiplying with float masks (or adding fills) rather than with where() or
# masked_fill(): on CPU those take several times as long on a [B, B] matrix; every masked term is finite.


def cosine_similarities(embeddings: torch.Tensor) -> torch.Tensor:
    """Pairwise dot products [B, B] in float32: the cosine similarity of L2-normalised embeddings."""
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = embeddings.float()
        return x @ x.T


class _Pairs:
    """The batch's pair masks (boolean, and float 0/1) and whether it has both kinds of pair.

    The additive fills (0 where kept, _FILL where left out) and per-row "has any" flags are built on
    first use, once per batch, so a loss pays only for what it reads.
    """

    def __init__(self, labels: torch.Tensor) -> None:
        self.positive, self.negative = pair_masks(labels)
        self.pos = self.positive.float()
        self.neg = self.negative.float()
        # float reductions: boolean any() is several times slower on CPU
        self.valid = (self.pos.sum() > 0) & (self.neg.sum() > 0)

    @functools.cached_property
    def pos_fill(self) -> torch.Tensor:
        return (1.0 - self.pos) * _FILL

    @functools.cached_property
    def neg_fill(self) -> torch.Tensor:
        return (1.0 - self.neg) * _FILL

    @functools.cached_property
    def pos_rows(self) -> torch.Tensor:
        return self.pos.amax(dim=1) > 0

    @functools.cached_property
    def neg_rows(self) -> torch.Tensor:
        return self.neg.amax(dim=1) > 0


def _prepare(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, _Pairs]:
    check_inputs(embeddings, labels)
    return embeddings.float(), _Pairs(labels)


# x + fill (fill 0 or _FILL) rather than where(): a left-out x (|x| far below 1e31) vanishes into
# _FILL exactly, and the gradient it gets back is 0 (its softmax weight is exp(_FILL - max) = 0, and a
# row with nothing kept is zeroed after the log-sum-exp).


def _masked_logsumexp(x: torch.Tensor, fill: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Row-wise log(sum over kept entries of exp(x)); 0 for a row with nothing kept (as PML)."""
    return (x + fill).logsumexp(dim=1) * rows


def _log1p_sum_exp(x: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Row-wise log(1 + sum over kept entries of exp(x)); 0 (softplus of _FILL) for a row with nothing kept.

    softplus(logsumexp) rather than appending a zero column as PML does: same value, no [B, B+1] copy.
    """
    return F.softplus((x + fill).logsumexp(dim=1))


def _avg_nonzero(terms: torch.Tensor) -> torch.Tensor:
    """Sum over the number of non-zero terms (PML's AvgNonZeroReducer keeps terms > 0; ours are >= 0,
    and left-out terms must be 0 already)."""
    return terms.sum() / torch.count_nonzero(terms).clamp_min(1)


def _only_if(valid: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    # where() rather than a Python branch: no device sync, and the value is exactly 0 with a gradient
    return torch.where(valid, loss, 0.0)


class ContrastiveLoss(torch.nn.Module):
    """Contrastive loss (Hadsell, Chopra, LeCun 2006), PML's ContrastiveLoss.

    Over ordered pairs (i, j), i != j, d Euclidean on the given embeddings:
    positive pairs relu(d - pos_margin), negative pairs relu(neg_margin - d);
    loss = mean of the non-zero positive terms + mean of the non-zero negative terms (PML's
    AvgNonZeroReducer on each part, then summed), so easy pairs do not dilute the gradient.

    Deliberate differences from PML: no re-normalisation of the embeddings; a batch without a
    positive or without a negative pair gives 0 (PML gives the one-sided part).
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0) -> None:
        super().__init__()
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings, pairs = _prepare(embeddings, labels)
        distances = cdist_euclidean_distances(embeddings)
        pulls = F.relu(distances - self.pos_margin) * pairs.pos
        pushes = F.relu(self.neg_margin - distances) * pairs.neg
        return _only_if(pairs.valid, _avg_nonzero(pulls) + _avg_nonzero(pushes))

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}"


def snr_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """SNR distance [B, B]: var(x_i - x_j) / var(x_i) over the feature dimension (Yuan et al. 2019).

    Not symmetric: row i is the anchor whose variance is the "signal". With c = x - mean(x) per row,
    var(x_i - x_j) is proportional to |c_i|^2 + |c_j|^2 - 2 c_i.c_j (the same factor 1/(D-1) as
    var(x_i), so it cancels): one Gram matrix instead of PML's [B, B, D] difference tensor.
    """
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        centred = embeddings.float() - embeddings.float().mean(dim=1, keepdim=True)
        gram = centred @ centred.T
    signal = gram.diagonal()
    noise = (signal[:, None] + signal[None, :] - 2.0 * gram).clamp_min(0.0)
    # a constant embedding has no signal; PML divides by 0 there, we keep the value finite
    return noise / signal.clamp_min(1e-12)[:, None]


class SNRContrastiveLoss(torch.nn.Module):
    """Contrastive loss on the signal-to-noise-ratio distance (Yuan et al. 2019), PML's
    SignalToNoiseRatioContrastiveLoss with a ZeroMeanRegularizer.

    d(i, j) = var(x_i - x_j) / var(x_i) (see `snr_distances`); positive pairs relu(d - pos_margin),
    negative pairs relu(neg_margin - d), each part averaged over its non-zero terms (AvgNonZero) and
    summed, plus regularizer_weight * mean_i |sum_k x_ik| (the paper's zero-mean constraint on the
    features; PML's ZeroMeanRegularizer, reduced by its mean).

    Defaults: margins 0 and 1 (PML's); regularizer_weight 0.1 is a moderate point of the
    reality-check range [0, 1], not a value checked against the paper.

    Deliberate differences from PML: no re-normalisation of the embeddings; a batch without a
    positive or without a negative pair gives 0 (PML gives the one-sided part plus the regulariser).
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0, regularizer_weight: float = 0.1) -> None:
        super().__init__()
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.regularizer_weight = regularizer_weight

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings, pairs = _prepare(embeddings, labels)
        distances = snr_distances(embeddings)
        pulls = F.relu(distances - self.pos_margin) * pairs.pos
        pushes = F.relu(self.neg_margin - distances) * pairs.neg
        regulariser = embeddings.sum(dim=1).abs().mean()
        return _only_if(pairs.valid,
                        _avg_nonzero(pulls) + _avg_nonzero(pushes) + self.regularizer_weight * regulariser)

    def extra_repr(self) -> str:
        return (f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, "
                f"regularizer_weight={self.regularizer_weight}")


class GeneralizedLiftedStructureLoss(torch.nn.Module):
    """Generalised lifted structure loss (Song et al. 2016; the per-anchor form of Hermans et al. 2017),
    PML's GeneralizedLiftedStructureLoss.

    Per anchor i, d Euclidean on the given embeddings:
    L_i = relu(log sum_{p in P(i)} exp(d_ip - pos_margin) + log sum_{n in N(i)} exp(neg_margin - d_in)),
    a log-sum-exp over an empty set counting as 0 (as PML); loss = mean of L_i over all anchors
    (PML's MeanReducer), easy anchors included.

    Deliberate differences from PML: no re-normalisation of the embeddings; a batch without a
    positive or without a negative pair gives 0 (PML gives the one-sided part).
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0) -> None:
        super().__init__()
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings, pairs = _prepare(embeddings, labels)
        distances = cdist_euclidean_distances(embeddings)
        pulls = _masked_logsumexp(distances - self.pos_margin, pairs.pos_fill, pairs.pos_rows)
        pushes = _masked_logsumexp(self.neg_margin - distances, pairs.neg_fill, pairs.neg_rows)
        return _only_if(pairs.valid, F.relu(pulls + pushes).mean())

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}"


class MultiSimilarityLoss(torch.nn.Module):
    """Multi-similarity loss (Wang et al. 2019), PML's MultiSimilarityLoss without a miner.

    Per anchor i, S the cosine similarity (dot product of the given L2-normalised embeddings):
    L_i = 1/alpha log(1 + sum_{p in P(i)} exp(-alpha (S_ip - base)))
        + 1/beta  log(1 + sum_{n in N(i)} exp(beta (S_in - base)));
    loss = mean of L_i over all anchors (PML's MeanReducer).

    Deliberate differences from PML: no re-normalisation of the embeddings; a batch without a
    positive or without a negative pair gives 0 (PML gives the one-sided part).
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.base = base

    def _loss(self, similarities: torch.Tensor, pos_fill: torch.Tensor, neg_fill: torch.Tensor) -> torch.Tensor:
        pulls = _log1p_sum_exp(self.alpha * (self.base - similarities), pos_fill) / self.alpha
        pushes = _log1p_sum_exp(self.beta * (similarities - self.base), neg_fill) / self.beta
        return (pulls + pushes).mean()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings, pairs = _prepare(embeddings, labels)
        return _only_if(pairs.valid, self._loss(cosine_similarities(embeddings), pairs.pos_fill, pairs.neg_fill))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}"


class MultiSimilarityMinerLoss(MultiSimilarityLoss):
    """Multi-similarity loss on the pairs its miner selects (Wang et al. 2019), PML's
    MultiSimilarityLoss given the indices of MultiSimilarityMiner(epsilon).

    Mining, per anchor i on the cosine similarity S (no gradient through the choice):
    keep a positive p if S_ip - epsilon < max_{n in N(i)} S_in, a negative n if
    S_in + epsilon > min_{p in P(i)} S_ip (strict, as PML); then the loss of `MultiSimilarityLoss`
    over the kept pairs only, averaged over all anchors (anchors with nothing kept count as 0).

    Deliberate differences from PML: no re-normalisation of the embeddings; PML returns 0 when the
    miner keeps at most one positive and at most one negative pair (its generic "too few pairs"
    check), we compute the loss on them.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, epsilon: float = 0.1) -> None:
        super().__init__(alpha, beta, base)
        self.epsilon = epsilon

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings, pairs = _prepare(embeddings, labels)
        similarities = cosine_similarities(embeddings)
        with torch.no_grad():
            s = similarities.detach()
            # rows without negatives (positives) get the extreme float, so nothing is kept there
            hardest_negative = (s + pairs.neg_fill).amax(dim=1, keepdim=True)
            hardest_positive = (s - pairs.pos_fill).amin(dim=1, keepdim=True)
            # written as PML compares (s - eps < max, s + eps > min) so rounding picks the same pairs
            pos = pairs.positive & (s - self.epsilon < hardest_negative)
            neg = pairs.negative & (s + self.epsilon > hardest_positive)
            pos_fill = (~pos).float() * _FILL
            neg_fill = (~neg).float() * _FILL
        return _only_if(pairs.valid, self._loss(similarities, pos_fill, neg_fill))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, epsilon={self.epsilon}"


class CircleLoss(torch.nn.Module):
    """Circle loss, pair-based form (Sun et al. 2020), PML's CircleLoss.

    Per anchor i, S the cosine similarity (dot product of the given L2-normalised embeddings),
    weights a_p = relu(1 + m - S_ip), a_n = relu(S_in + m) taken as constants (no gradient, as the
    paper and PML):
    L_i = softplus(log sum_p exp(-gamma a_p (S_ip - (1 - m))) + log sum_n exp(gamma a_n (S_in - m))),
    L_i = 0 for an anchor without a positive or a negative; loss = mean of the non-zero L_i (PML's
    AvgNonZeroReducer).

    Space: m in [0, 1] lin (the paper uses 0.25 for faces and re-id, 0.4 for fine-grained retrieval;
    default 0.4, PML's); gamma in [3.2, 2560] log, the paper's 32..256 widened by 10 on each side
    (default 80, the paper's fine-grained value).

    Deliberate difference from PML: no re-normalisation of the embeddings.
    """

    def __init__(self, m: float = 0.4, gamma: float = 80.0) -> None:
        super().__init__()
        self.m = m
        self.gamma = gamma

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings, pairs = _prepare(embeddings, labels)
        similarities = cosine_similarities(embeddings)
        fixed = similarities.detach()
        pulls = -self.gamma * F.relu(1.0 + self.m - fixed) * (similarities - (1.0 - self.m))
        pushes = self.gamma * F.relu(fixed + self.m) * (similarities - self.m)
        per_anchor = F.softplus(_masked_logsumexp(pulls, pairs.pos_fill, pairs.pos_rows)
                                + _masked_logsumexp(pushes, pairs.neg_fill, pairs.neg_rows))
        per_anchor = per_anchor * (pairs.pos_rows & pairs.neg_rows)
        return _only_if(pairs.valid, _avg_nonzero(per_anchor))

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}"


class TupletMarginLoss(torch.nn.Module):
    """Tuplet margin loss (Yu & Tao 2019), PML's TupletMarginLoss.

    Per ordered positive pair (a, p), S the cosine similarity (dot product of the given
    L2-normalised embeddings), theta_ap = arccos S_ap and beta = `margin` in degrees:
    L_ap = log(1 + sum_{n in N(a)} exp(scale (S_an - cos(theta_ap - beta))));
    loss = mean of L_ap over all positive pairs (PML's MeanReducer).

    Computed as one [P, B] broadcast over the P positive pairs instead of PML's [P, all negative
    pairs] matrix. Without the paper's intra-pair variance term (PML combines it separately too).

    Deliberate differences from PML: no re-normalisation of the embeddings; S_ap is clamped to
    [-1 + 1e-6, 1 - 1e-6] before arccos, so (near-)coincident positives (angle under 0.08 degrees)
    give a finite gradient where PML's arccos gives NaN or an infinite gradient.
    """

    def __init__(self, margin: float = 5.73, scale: float = 64.0) -> None:
        super().__init__()
        self.margin = margin
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings, pairs = _prepare(embeddings, labels)
        similarities = cosine_similarities(embeddings)
        anchor, other = pairs.positive.nonzero(as_tuple=True)
        angle = similarities[anchor, other].clamp(-1.0 + 1e-6, 1.0 - 1e-6).acos()
        target = torch.cos(angle - math.radians(self.margin))
        # terms[k, n]: pair k's anchor against every sample n, kept where n is a negative of it
        terms = _log1p_sum_exp(self.scale * (similarities[anchor] - target[:, None]), pairs.neg_fill[anchor])
        return _only_if(pairs.valid, terms.sum() / max(len(terms), 1))

    def extra_repr(self) -> str:
        return f"margin={self.margin}, scale={self.scale}"


_MARGIN = FloatDistribution(-0.2, 2.0)
_SNR_MARGIN = FloatDistribution(0.0, 2.0)
_MS_SPACE = {
    "alpha": FloatDistribution(0.01, 100.0),
    "beta": FloatDistribution(0.01, 100.0),
    "base": FloatDistribution(0.0, 1.0),
}
_MS_DEFAULTS = {"alpha": 2.0, "beta": 50.0, "base": 0.5}

register_loss("contrastive", space={"pos_margin": _MARGIN, "neg_margin": _MARGIN},
              defaults={"pos_margin": 0.0, "neg_margin": 1.0}, paper=_HADSELL,
              description="Hinged pull of positive and push of negative pairs, Euclidean, non-zero mean.",
              )(ContrastiveLoss)
register_loss("snr_contrastive",
              space={"pos_margin": _SNR_MARGIN, "neg_margin": _SNR_MARGIN,
                     "regularizer_weight": FloatDistribution(0.0, 1.0)},
              defaults={"pos_margin": 0.0, "neg_margin": 1.0, "regularizer_weight": 0.1}, paper=_YUAN,
              description="Contrastive loss on the signal-to-noise-ratio distance, with a zero-mean regulariser.",
              )(SNRContrastiveLoss)
register_loss("lifted_structure", space={"pos_margin": _SNR_MARGIN, "neg_margin": _SNR_MARGIN},
              defaults={"pos_margin": 0.0, "neg_margin": 1.0}, paper=_SONG,
              description="Generalised lifted structure: log-sum-exp over each anchor's positives and negatives.",
              )(GeneralizedLiftedStructureLoss)
register_loss("multi_similarity", space=_MS_SPACE, defaults=_MS_DEFAULTS, paper=_WANG,
              description="Multi-similarity loss over all pairs, cosine similarity.",
              )(MultiSimilarityLoss)
register_loss("multi_similarity_miner", space={**_MS_SPACE, "epsilon": FloatDistribution(0.0, 1.0)},
              defaults={**_MS_DEFAULTS, "epsilon": 0.1}, paper=_WANG,
              description="Multi-similarity loss over the pairs its multi-similarity miner selects.",
              )(MultiSimilarityMinerLoss)
register_loss("circle", space={"m": FloatDistribution(0.0, 1.0), "gamma": FloatDistribution(3.2, 2560.0, log=True)},
              defaults={"m": 0.4, "gamma": 80.0}, paper=_SUN,
              description="Circle loss, pair-based: self-paced weights on cosine similarities.",
              )(CircleLoss)
register_loss("tuplet_margin",
              space={"margin": FloatDistribution(0.0, 60.0), "scale": FloatDistribution(6.4, 640.0, log=True)},
              defaults={"margin": 5.73, "scale": 64.0}, paper=_YU,
              description="Tuplet margin loss: angular margin on positives, softmax over negatives.",
              )(TupletMarginLoss)
