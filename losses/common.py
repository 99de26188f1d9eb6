"""Helpers the loss families share: input checks, pair masks and the two pairwise distances.

One module of its own, so a family never reaches into a sibling's private names, and a change here
changes the identity (losses.identity) of every loss that imports it, and of no other.
The two Euclidean distances differ on purpose in numerics and cost, and their names say how:
`gram_euclidean_distances` makes the diagonal exactly 0 with a zero gradient there (the batch
triplet losses, as sentence-transformers computes them); `cdist_euclidean_distances` is torch.cdist's
matrix-product path as pytorch-metric-learning uses it (the pair losses).
"""

from __future__ import annotations

import torch

__all__ = ["cdist_euclidean_distances", "check_inputs", "gram_euclidean_distances", "pair_masks",
           "squared_euclidean_distances"]


def check_inputs(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    """Embeddings [B, D] and labels [B], or a ValueError naming both shapes."""
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(f"expected embeddings [B, D] and labels [B], got {tuple(embeddings.shape)} "
                         f"and {tuple(labels.shape)}")


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) boolean [B, B]: same label and a != p; different label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def squared_euclidean_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances [B, B] in float32, from the Gram matrix, clamped at 0."""
    # half-precision Gram matrices lose the small distances that decide hard triplets
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = embeddings.float()
        gram = x @ x.T
    squared_norms = gram.diagonal()
    return (squared_norms[None, :] - 2.0 * gram + squared_norms[:, None]).clamp_min(0.0)


def gram_euclidean_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances [B, B] in float32, exactly 0 with a zero (not NaN) gradient where d = 0.

    d² = |a|² - 2<a, b> + |b|² from the Gram matrix, clamped at 0 against rounding; the diagonal is
    exactly 0 because |a|² is read off the Gram diagonal itself. The square root is taken only
    where d² > 0, so the infinite derivative of sqrt at 0 never enters the graph.
    """
    d2 = squared_euclidean_distances(embeddings)
    nonzero = d2 > 0
    return torch.where(nonzero, d2.where(nonzero, 1.0).sqrt(), 0.0)


def cdist_euclidean_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances [B, B] in float32, with a finite gradient where d = 0.

    As torch.cdist's matrix-product path (PML's distance): d² = |a|² + |b|² - 2<a, b> in one addmm,
    d = sqrt(max(d², 1e-30)); a zero distance reads about 1e-15 (or ~1e-4 from rounding) and passes
    a finite gradient. `gram_euclidean_distances` makes the diagonal exactly 0 through three where()
    calls, which on CPU cost as much as the rest of a pair loss; every pair loss masks the diagonal.
    """
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = embeddings.float()
        squared_norms = (x * x).sum(dim=1)
        d2 = torch.addmm(squared_norms[:, None] + squared_norms[None, :], x, x.T, alpha=-2.0)
    return d2.clamp_min(1e-30).sqrt()
