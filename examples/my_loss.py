"""An example of a researcher's own loss, benchmarked without editing the harness.

    make benchmark LOSS=examples/my_loss.py:CosineContrastiveLoss
"""

from __future__ import annotations

import torch
from optuna.distributions import FloatDistribution

from losses import declare_loss


@declare_loss(
    space={"neg_margin": FloatDistribution(-0.5, 0.9)},  # searched by Optuna, like the zoo's spaces
    defaults={"neg_margin": 0.3},
    description="Pull positives to cosine 1, push negatives below a cosine margin.",
    paper="Example loss for the dml-harness README (contrastive loss with cosine similarity).",
)
class CosineContrastiveLoss(torch.nn.Module):
    """Mean over positive pairs of (1 - cos) plus mean over negative pairs of relu(cos - neg_margin)."""

    def __init__(self, neg_margin: float = 0.3) -> None:
        super().__init__()
        self.neg_margin = neg_margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = embeddings @ embeddings.T  # the harness passes L2-normalised embeddings
        same = labels[:, None] == labels[None, :]
        positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        negative = ~same
        pull = (1 - cosine)[positive].sum() / positive.sum().clamp_min(1)
        push = torch.relu(cosine - self.neg_margin)[negative].sum() / negative.sum().clamp_min(1)
        return pull + push
