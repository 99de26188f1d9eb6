"""Batch triplet losses: batch-hard, batch-all, batch-semi-hard and batch-hard with a soft margin.

All four take the embeddings exactly as the model gives them (the harness L2-normalises them; no
loss here normalises again) and use the Euclidean distance computed from the Gram matrix, as
sentence-transformers' `BatchHardTripletLossDistanceFunction.euclidean_distance` does, so values
match that library to float precision on the batches the harness draws (P classes x K images).
The mining losses (hard, semi-hard) choose their pairs on that matrix without gradient and then
recompute only the chosen distances, as norms of differences, with gradient: the same value to
float precision, and a backward pass over 2B (or 2P) vectors instead of the B x B matrix.

Shared rule for degenerate terms: a term that needs a positive or a negative the batch does not
contain is left out of both the sum and the count. A batch with no valid term at all (all labels
distinct, or all equal) gives exactly 0, still attached to the graph so `backward()` works and the
gradient is zero. sentence-transformers differs only on such terms, see each class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution

from losses.common import check_inputs, gram_euclidean_distances, pair_masks
from losses.registry import register_loss

__all__ = [
    "BatchAllTripletLoss",
    "BatchHardSoftMarginTripletLoss",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
]

_HERMANS = "Hermans, Beyer, Leibe. In Defense of the Triplet Loss for Person Re-Identification. 2017"
_SCHROFF = ("Schroff, Kalenichenko, Philbin. FaceNet: A Unified Embedding for Face Recognition and "
            "Clustering. CVPR 2015")


def _masked_mean(terms: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # where() rather than multiplying by the mask: a left-out term may be inf, and inf * 0 is NaN
    return terms.where(valid, 0.0).sum() / valid.sum().clamp_min(1)


def _hardest(embeddings: torch.Tensor,
             labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per anchor: distance to its farthest positive and its nearest negative, and whether it has both.

    The pair is chosen without gradient, then only the 2B chosen distances are recomputed with
    gradient: the backward pass touches 2B vectors instead of a B x B distance matrix, which is
    what makes this faster than a generic miner + loss. Rows are ranked by |b|² - 2<a, b>, which is
    d²(a, b) less the row's constant |a|²: one fused matrix product orders each row as d² does.
    """
    batch = labels.shape[0]
    with torch.no_grad(), torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = embeddings.detach().float()
        same = labels[:, None] == labels[None, :]
        same_count = same.sum(dim=1)
        rank = torch.addmm((x * x).sum(dim=1)[None, :], x, x.T, alpha=-2.0)
        positive_rank = rank.masked_fill(labels[:, None] != labels[None, :], -torch.inf)
        positive_rank.fill_diagonal_(-torch.inf)  # the anchor is not its own positive
        farthest_positive = positive_rank.argmax(dim=1)
        nearest_negative = rank.masked_fill_(same, torch.inf).argmin(dim=1)
        # an anchor without a positive or a negative gets index 0 above, a finite stand-in left out here
        valid = (same_count > 1) & (same_count < batch)
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = embeddings.float()
        # index_select, not x[idx]: its backward is a cheap index_add. The norm's gradient at a zero
        # difference is 0, never NaN (duplicate embeddings).
        hardest_positive = torch.linalg.vector_norm(x - x.index_select(0, farthest_positive), dim=1)
        hardest_negative = torch.linalg.vector_norm(x - x.index_select(0, nearest_negative), dim=1)
    return hardest_positive, hardest_negative, valid


class BatchHardTripletLoss(torch.nn.Module):
    """Batch-hard triplet loss (Hermans, Beyer, Leibe 2017).

    For each anchor a: L_a = max(0, max_p d(a, p) - min_n d(a, n) + margin), d Euclidean on the
    given embeddings; loss = mean of L_a over all anchors that have a positive and a negative
    (every anchor of a P x K batch with K >= 2), easy anchors (L_a = 0) included.

    Differences, deliberate:
    - sentence-transformers' BatchHardTripletLoss averages over every anchor of the batch: an anchor
      without a positive enters as max(0, margin - min_n d(a, n)) (a push-only term), and in a
      batch of one class every anchor enters as exactly `margin`. We leave such anchors out, so a
      single-class batch gives 0; on batches where each anchor has both, the values are identical.
    - pytorch-metric-learning's TripletMarginLoss + BatchHardMiner re-normalises the embeddings
      and averages over the non-zero terms only; we average over all anchors, as Hermans et al.
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        positive, negative, valid = _hardest(embeddings, labels)
        return _masked_mean(F.relu(positive - negative + self.margin), valid)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class BatchHardSoftMarginTripletLoss(torch.nn.Module):
    """Batch-hard triplet loss with a soft margin (Hermans, Beyer, Leibe 2017).

    For each anchor a: L_a = softplus(max_p d(a, p) - min_n d(a, n)) = log(1 + exp(.)), d Euclidean
    on the given embeddings; loss = mean of L_a over all anchors that have a positive and a
    negative. No margin: the softplus keeps pushing, ever more weakly, past any fixed margin.

    Difference, deliberate: sentence-transformers' BatchHardSoftMarginTripletLoss averages over every
    anchor, so an anchor without a positive enters as softplus(-min_n d(a, n)) and a single-class
    batch gives log 2; we leave such anchors out (a single-class batch gives 0). Identical otherwise.
    """

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        positive, negative, valid = _hardest(embeddings, labels)
        # softplus rather than log1p(exp(x)): no overflow for large x
        return _masked_mean(F.softplus(positive - negative), valid)


class BatchAllTripletLoss(torch.nn.Module):
    """Batch-all triplet loss (Hermans, Beyer, Leibe 2017).

    Over all triplets (a, p, n) with label(p) = label(a), p != a and label(n) != label(a):
    L = max(0, d(a, p) - d(a, n) + margin), d Euclidean on the given embeddings;
    loss = sum of L / number of triplets with L > 1e-16 (the "active" triplets), as Hermans' "BA≠0"
    and sentence-transformers' BatchAllTripletLoss. Averaging over active triplets keeps the
    gradient from vanishing as most triplets become easy.

    Computed as one [P, B] broadcast over the P anchor-positive pairs (B * (K - 1) rows in a
    P x K batch) instead of the full [B, B, B] cube; same terms, less memory.

    Differences, deliberate: with no active triplet, sentence-transformers divides the sum by 1e-16,
    which turns a sum of sub-1e-16 terms into a value near 1; we divide by max(count, 1).
    pytorch-metric-learning's TripletMarginLoss (no miner) is the same reduction but re-normalises
    the embeddings first.
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        distances = gram_euclidean_distances(embeddings)
        positive, negative = pair_masks(labels)
        anchor, other = positive.nonzero(as_tuple=True)
        # terms[i, n]: triplet (anchor[i], other[i], n)
        terms = F.relu(distances[anchor, other][:, None] - distances[anchor] + self.margin)
        terms = terms.where(negative[anchor], 0.0)
        active = (terms > 1e-16).sum()
        return terms.sum() / active.clamp_min(1)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class BatchSemiHardTripletLoss(torch.nn.Module):
    """Batch semi-hard triplet loss (Schroff, Kalenichenko, Philbin 2015, FaceNet).

    For each anchor-positive pair (a, p), the negative is the nearest n with d(a, n) > d(a, p)
    (strictly: "semi-hard"); if no negative is farther than the positive, the farthest negative.
    L = max(0, d(a, p) - d(a, n) + margin), d Euclidean on the given embeddings;
    loss = mean of L over all anchor-positive pairs, including those with L = 0 (as
    sentence-transformers' BatchSemiHardTripletLoss and TensorFlow Addons' triplet_semihard_loss).

    Difference, deliberate: in a batch of one class there is no negative; sentence-transformers then
    uses 0 as the "farthest negative" and returns mean(d(a, p) + margin), a pure pull. We leave
    pairs without a negative out, so such a batch gives 0. In any batch with two or more classes
    every anchor has a negative, and the values are identical.
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        positive, negative = pair_masks(labels)
        anchor, other = positive.nonzero(as_tuple=True)
        # choose each pair's negative without gradient on the [P, B] rows, then recompute only the
        # 2P chosen distances with gradient, as batch-hard does
        with torch.no_grad():
            distances = gram_euclidean_distances(embeddings.detach())
            to_all = distances[anchor]  # [P, B]: from each pair's anchor to every sample
            is_negative = negative[anchor]
            farther = is_negative & (to_all > distances[anchor, other][:, None])
            nearest_farther = to_all.masked_fill(~farther, torch.inf).argmin(dim=1)
            farthest = to_all.masked_fill(~is_negative, -torch.inf).argmax(dim=1)
            chosen = torch.where(farther.any(dim=1), nearest_farther, farthest)
            has_negative = is_negative.any(dim=1)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings.float()
            from_anchor = x.index_select(0, anchor)
            anchor_positive = torch.linalg.vector_norm(from_anchor - x.index_select(0, other), dim=1)
            anchor_negative = torch.linalg.vector_norm(from_anchor - x.index_select(0, chosen), dim=1)
        terms = F.relu(anchor_positive - anchor_negative + self.margin)
        return _masked_mean(terms, has_negative)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


_MARGIN = FloatDistribution(0.01, 1.0)

register_loss("batch_hard", space={"margin": _MARGIN}, defaults={"margin": 0.2}, paper=_HERMANS,
              description="Triplet loss with the farthest positive and nearest negative of each anchor.",
              )(BatchHardTripletLoss)
register_loss("batch_all", space={"margin": _MARGIN}, defaults={"margin": 0.2}, paper=_HERMANS,
              description="Triplet loss over all valid triplets, averaged over the active ones.",
              )(BatchAllTripletLoss)
register_loss("batch_semi_hard", space={"margin": _MARGIN}, defaults={"margin": 0.2}, paper=_SCHROFF,
              description="Triplet loss with the nearest negative farther than the positive (FaceNet).",
              )(BatchSemiHardTripletLoss)
register_loss("batch_hard_soft_margin", space={}, defaults={}, paper=_HERMANS,
              description="Batch-hard triplet loss with softplus in place of the margin hinge.",
              )(BatchHardSoftMarginTripletLoss)
register_loss("triplet", space={"margin": FloatDistribution(-0.2, 2.0)}, defaults={"margin": 0.05}, paper=_HERMANS,
              description="batch_all (all triplets, mean over the active ones) with the reality-check margin range.",
              )(BatchAllTripletLoss)
