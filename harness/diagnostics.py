"""Training diagnostics from FaceNet's advice on training triplet models (Schroff et al. 2015).

A loss's own value cannot be compared across losses, nor across a curriculum that changes its
mining, so every training also reports one yardstick on its current batch: the batch-hard triplet
loss with margin 0.2 (Hermans et al. 2017) on the unit-normalised embeddings. Beside it, how much of
the batch still teaches (active triplets, anchors whose hardest negative is closer than their
hardest positive) and how the embeddings spread (mean pairwise distance, the share of variance on
the top principal component). A training whose embeddings collapse to one point is flagged.

Everything is computed without gradients on a detached copy, and draws no random numbers, so a
training's numerics are the same with or without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["YARDSTICK_MARGIN", "COLLAPSE_DISTANCE", "DIAGNOSTICS", "batch_diagnostics", "collapsed"]

YARDSTICK_MARGIN = 0.2
# Collapse: embeddings within this mean distance of each other on the unit sphere (whose
# diameter is 2), or the yardstick stuck at the margin, which is where it sits when every
# distance is the same.
COLLAPSE_DISTANCE = 1e-3
STUCK_TOLERANCE = 1e-3
DIAGNOSTICS = ("batch_hard_loss", "active_triplets", "hardest_negative_closer", "mean_pairwise_distance",
               "top_pc_variance")


@torch.no_grad()
def batch_diagnostics(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The diagnostics of one training batch [B, D] with its labels [B].

    batch_hard_loss          mean over anchors of max(0, hardest positive - hardest negative + 0.2)
    active_triplets          share of the batch's (anchor, positive, negative) triplets with a hinge > 0
    hardest_negative_closer  share of anchors whose hardest negative is closer than their hardest positive
    mean_pairwise_distance   mean Euclidean distance between two different items
    top_pc_variance          share of the embeddings' variance along their first principal component
    Anchors without a positive or a negative in the batch count in none of the anchor figures.
    """
    x = F.normalize(embeddings.detach().float(), dim=1)
    labels = labels.detach().to(x.device)
    n = len(x)
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # exact: no |x|^2 - 2xy + |y|^2
    same = labels[:, None] == labels[None, :]
    other = ~torch.eye(n, dtype=torch.bool, device=x.device)
    positive, negative = same & other, ~same
    hardest_positive = dist.masked_fill(~positive, -torch.inf).amax(dim=1)
    hardest_negative = dist.masked_fill(~negative, torch.inf).amin(dim=1)
    anchors = positive.any(dim=1) & negative.any(dim=1)
    hinge = (hardest_positive - hardest_negative + YARDSTICK_MARGIN).clamp(min=0)

    # Active triplets, counted per anchor without building all B^3 of them: a negative is active
    # for a positive when d(a, n) < d(a, p) + margin, so sort each anchor's negative distances and
    # count those below each positive's bound.
    negative_sorted = dist.masked_fill(~negative, torch.inf).sort(dim=1).values
    bounds = (dist + YARDSTICK_MARGIN).masked_fill(~positive, -torch.inf)
    active = torch.searchsorted(negative_sorted, bounds, side="left").sum()
    triplets = (positive.sum(dim=1) * negative.sum(dim=1)).sum()

    centred = x - x.mean(dim=0)
    variances = torch.linalg.svdvals(centred) ** 2
    total = variances.sum()
    return {
        "batch_hard_loss": _mean(hinge[anchors]),
        "active_triplets": float(active / triplets) if triplets else float("nan"),
        "hardest_negative_closer": _mean((hardest_negative < hardest_positive)[anchors].float()),
        "mean_pairwise_distance": _mean(dist[other]),
        # all items at one point: one direction holds all of the (zero) variance
        "top_pc_variance": float(variances[0] / total) if total > 0 else 1.0,
    }


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if len(values) else float("nan")


def collapsed(history: list[dict]) -> bool:
    """Whether a training collapsed, from its validation steps' diagnostics: at its last step the
    embeddings sit within COLLAPSE_DISTANCE of each other, or the yardstick stayed at the margin
    over its last two steps (once could be chance)."""
    if not history:
        return False
    if history[-1]["mean_pairwise_distance"] < COLLAPSE_DISTANCE:
        return True
    last = history[-2:]
    return len(last) == 2 and all(abs(step["batch_hard_loss"] - YARDSTICK_MARGIN) < STUCK_TOLERANCE for step in last)
