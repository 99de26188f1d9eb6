"""Classification (softmax) losses with a learnable class-weight matrix: normalised softmax, CosFace, ArcFace.

- normalized_softmax: Zhai, Wu. Classification is a Strong Baseline for Deep Metric Learning. BMVC 2019.
- cosface: Wang et al. CosFace: Large Margin Cosine Loss for Deep Face Recognition. CVPR 2018.
- arcface: Deng, Guo, Xue, Zafeiriou. ArcFace: Additive Angular Margin Loss for Deep Face Recognition. CVPR 2019.

All three score a sample against every class by the cosine between the L2-normalised embedding and
the L2-normalised class weight (a column of `W`, [embedding_dim, num_classes], the layout of
pytorch-metric-learning's `W`, so the parameter copies across unchanged), turn the scores into
logits, and take the cross-entropy with the sample's label, averaged over the batch. `W` is drawn
from N(0, 1) with torch's global RNG, as PML's default `weight_init_func` (`torch.nn.init.normal_`)
does, so the same seed gives PML's weights. The embeddings are normalised again here (the harness
already gives unit vectors) because PML does so, and it keeps the gradient tangent to the sphere.

Labels must lie in 0..num_classes-1 (cross-entropy rejects others; not checked here, which would
cost a device sync). Every sample has a sample-class pair, so any batch, including all labels
distinct or all equal, gives a finite loss with finite gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution

from losses.registry import register_loss

__all__ = ["ArcFaceLoss", "CosFaceLoss", "NormalizedSoftmaxLoss"]

_LOSS_LR = FloatDistribution(1e-6, 1.0, log=True)
# the reality check's spaces for CosFace and ArcFace
_SCALE = FloatDistribution(0.01, 200.0)


class _ClassWeightLoss(torch.nn.Module):
    """Holds the class weights `W` [embedding_dim, num_classes] and computes the cosine matrix."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.W = torch.nn.Parameter(torch.empty(embedding_dim, num_classes))
        torch.nn.init.normal_(self.W)

    def _cosines(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """cos(embedding_i, W[:, c]) as a float32 [B, num_classes] matrix."""
        if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
            raise ValueError(f"expected embeddings [B, D] and labels [B], got {tuple(embeddings.shape)} "
                             f"and {tuple(labels.shape)}")
        x = F.normalize(embeddings.float(), dim=1)
        w = F.normalize(self.W.float(), dim=0)
        return x @ w


@register_loss(
    "normalized_softmax",
    space={"loss_lr": _LOSS_LR, "temperature": FloatDistribution(0.01, 100.0, log=True)},
    defaults={"temperature": 0.05},
    description="Cross-entropy over cosine similarities to normalised class weights divided by a temperature.",
    paper="Zhai, Wu. Classification is a Strong Baseline for Deep Metric Learning. BMVC 2019",
)
class NormalizedSoftmaxLoss(_ClassWeightLoss):
    """Normalised softmax (Zhai & Wu 2019): L = mean_i CE(cos(x_i, w_c) / temperature, y_i).

    Cosine similarity between the normalised embedding and each normalised class weight; mean over
    the samples of the batch. Same value and gradients as PML's NormalizedSoftmaxLoss (default
    DotProductSimilarity, which normalises the embeddings; MeanReducer).
    """

    def __init__(self, embedding_dim: int, num_classes: int, temperature: float = 0.05) -> None:
        super().__init__(embedding_dim, num_classes)
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            logits = self._cosines(embeddings, labels) / self.temperature
            return F.cross_entropy(logits, labels)

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, temperature={self.temperature}"


@register_loss(
    "cosface",
    space={"loss_lr": _LOSS_LR, "margin": FloatDistribution(0.0, 1.0), "scale": _SCALE},
    defaults={"margin": 0.35, "scale": 64.0},
    description="Large margin cosine loss: scaled cosine logits with a margin subtracted from the target cosine.",
    paper="Wang, Wang, Zhou, Ji, Gong, Zhou, Li, Liu. CosFace: Large Margin Cosine Loss for Deep Face "
          "Recognition. CVPR 2018",
)
class CosFaceLoss(_ClassWeightLoss):
    """CosFace (Wang et al. 2018): L = mean_i CE(s * (cos θ_ic - m [c = y_i]), y_i).

    θ_ic is the angle between the normalised embedding and the normalised weight of class c (cosine
    similarity); the margin m is subtracted from the target class's cosine only, then every logit is
    multiplied by the scale s. Mean over the samples. Same value and gradients as PML's CosFaceLoss.
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.35, scale: float = 64.0) -> None:
        super().__init__(embedding_dim, num_classes)
        self.margin = margin
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cosines = self._cosines(embeddings, labels)
            target = cosines.gather(1, labels[:, None]) - self.margin
            logits = cosines.scatter(1, labels[:, None], target) * self.scale
            return F.cross_entropy(logits, labels)

    def extra_repr(self) -> str:
        return (f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, margin={self.margin}, "
                f"scale={self.scale}")


@register_loss(
    "arcface",
    space={"loss_lr": _LOSS_LR, "margin": FloatDistribution(0.0, 90.0), "scale": _SCALE},
    defaults={"margin": 28.6, "scale": 64.0},
    description="Additive angular margin loss: the margin (degrees) is added to the angle to the target class.",
    paper="Deng, Guo, Xue, Zafeiriou. ArcFace: Additive Angular Margin Loss for Deep Face Recognition. CVPR 2019",
)
class ArcFaceLoss(_ClassWeightLoss):
    """ArcFace (Deng et al. 2019): L = mean_i CE(s * f(θ_ic, [c = y_i]), y_i) with m = radians(margin).

    θ_ic = acos(clamp(cos θ_ic, -1, 1)) is the angle between the normalised embedding and the
    normalised weight of class c (cosine similarity). Non-target logits are s * cos θ. The target
    logit is s * cos(θ + m) while θ <= π - m; beyond, where cos(θ + m) would turn back up, it is
    s * (cos θ - m sin m) (PML's and insightface's fallback, which keeps the logit decreasing in θ;
    it jumps at θ = π - m, from -1 to -cos m - m sin m, as in PML).
    Mean over the samples. `margin` is in degrees, as searched (PML's default 28.6° ≈ 0.5 rad).

    Same value and gradients as PML's ArcFaceLoss. Where the target cosine is ±1 or beyond (θ = 0 or
    π, where acos' is infinite), no gradient flows through it: PML gets the same from torch's clamp,
    which passes none at its bounds; here it is explicit, so it does not rest on that convention. The
    fallback branch uses the clamped cosine itself rather than PML's cos(acos(·)) of it: the same
    value and derivative, without going through acos.
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 28.6, scale: float = 64.0) -> None:
        super().__init__(embedding_dim, num_classes)
        self.margin = margin
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        m = math.radians(self.margin)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cosines = self._cosines(embeddings, labels)
            cos_t = cosines.gather(1, labels[:, None])
            # at |cos| = 1 acos' is infinite: take the value from a detached copy so no gradient flows
            inside = cos_t.abs() < 1.0
            cos_t = torch.where(inside, cos_t, cos_t.detach().clamp(-1.0, 1.0))
            theta = torch.acos(cos_t)
            # inclusive bound, as PML
            target = torch.where(theta <= math.pi - m, torch.cos(theta + m), cos_t - m * math.sin(m))
            logits = cosines.scatter(1, labels[:, None], target) * self.scale
            return F.cross_entropy(logits, labels)

    def extra_repr(self) -> str:
        return (f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, margin={self.margin}, "
                f"scale={self.scale}")
