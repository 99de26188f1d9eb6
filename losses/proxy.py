"""Proxy and learnable-parameter losses: ProxyNCA, Proxy Anchor, Margin (learnable β) and SoftTriple.

Papers: Movshovitz-Attias et al., No Fuss Distance Metric Learning using Proxies (ICCV 2017); Kim et
al., Proxy Anchor Loss for Deep Metric Learning (CVPR 2020); Wu et al., Sampling Matters in Deep
Embedding Learning (ICCV 2017); Qian et al., SoftTriple Loss: Deep Metric Learning Without Triplet
Sampling (ICCV 2019).

Every loss here owns learnable parameters (proxies, centres or β), searched with their own learning
rate `loss_lr`. Random ones are drawn in the constructor with the initialiser pytorch-metric-learning
(PML) uses, from a generator seeded with torch's global seed (`torch.initial_seed()`): the harness's
seed fixes them, and two builds under one seed agree (the shared contract test builds twice).

Like PML, each loss L2-normalises the embeddings (and proxies or centres) it compares: a no-op in
value on the harness's already normalised embeddings, but it makes the gradient tangent to the
sphere exactly as PML's is, so values and gradients match PML's. Everything is computed in float32
with autocast off, whatever the input precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution

from losses.registry import register_loss

__all__ = [
    "MarginLoss",
    "PerClassMarginLoss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "SoftTripleLoss",
]

_LOSS_LR = FloatDistribution(1e-6, 1.0, log=True)
_MOVSHOVITZ = ("Movshovitz-Attias, Toshev, Leung, Ioffe, Singh. No Fuss Distance Metric Learning using "
               "Proxies. ICCV 2017")
_KIM = "Kim, Kim, Cho, Kwak. Proxy Anchor Loss for Deep Metric Learning. CVPR 2020"
_WU = "Wu, Manmatha, Smola, Krähenbühl. Sampling Matters in Deep Embedding Learning. ICCV 2017"
_QIAN = ("Qian, Shang, Sun, Hu, Li, Jin. SoftTriple Loss: Deep Metric Learning Without Triplet Sampling. "
         "ICCV 2019")
_MARGIN_SPACE = {
    "loss_lr": _LOSS_LR,
    "margin": FloatDistribution(-0.2, 2.0),
    "beta": FloatDistribution(-0.2, 2.0),
}


def _seeded() -> torch.Generator:
    """A generator seeded with the global RNG's seed: the harness's seed fixes the initial parameters.

    Drawn from the seed rather than the global state, so building the same loss twice after one
    `torch.manual_seed(s)` gives the same parameters, equal to those PML draws right after that seed.
    """
    return torch.Generator().manual_seed(torch.initial_seed())


def _prepare(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Shape check, then float32 unit vectors."""
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(f"expected embeddings [B, D] and labels [B], got {tuple(embeddings.shape)} "
                         f"and {tuple(labels.shape)}")
    return F.normalize(embeddings.float(), dim=1)


def _cosine(embeddings: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
    """Cosine similarity [B, N] of unit embeddings to the rows of `proxies`, in float32."""
    # bf16 autocast would round similarities that exp() at scale 32+ amplifies
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        return embeddings @ F.normalize(proxies.float(), dim=1).T


@register_loss("proxy_nca", space={"loss_lr": _LOSS_LR, "softmax_scale": FloatDistribution(0.01, 100.0)},
               defaults={"softmax_scale": 1.0},
               description="NCA against one learnable proxy per class (softmax over squared distances).",
               paper=_MOVSHOVITZ)
class ProxyNCALoss(torch.nn.Module):
    """ProxyNCA (Movshovitz-Attias et al. 2017), as PML's ProxyNCALoss.

    One proxy p_c per class (N(0, 1) initialised, as PML). With x and p L2-normalised and
    d²(x, p) = |x - p|² (squared Euclidean):
        L_i = -log( exp(-s d²(x_i, p_{y_i})) / sum_c exp(-s d²(x_i, p_c)) ),   s = softmax_scale,
    the positive proxy in the numerator, all proxies (the positive included) in the denominator, as
    PML; loss = mean of L_i over the batch. On unit vectors d² = 2 - 2 cos, and a softmax ignores the
    constant, so this is cross-entropy on the logits 2 s cos(x_i, p_c), which is how it is computed.

    Difference, deliberate: PML computes the softmax probability and then its log, and drops the
    samples whose probability underflows to 0 in float32 (s (d²_pos - d²_min) above ~87-103, possible
    for s > ~22); we take log-softmax directly, so those (hardest) samples keep a finite loss and stay
    in the mean. Identical whenever no probability underflows.
    """

    def __init__(self, embedding_dim: int, num_classes: int, softmax_scale: float = 1.0) -> None:
        super().__init__()
        self.softmax_scale = softmax_scale
        self.proxies = torch.nn.Parameter(torch.randn(num_classes, embedding_dim, generator=_seeded()))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = _prepare(embeddings, labels)
        return F.cross_entropy((2.0 * self.softmax_scale) * _cosine(x, self.proxies), labels)

    def extra_repr(self) -> str:
        return f"softmax_scale={self.softmax_scale}, proxies={tuple(self.proxies.shape)}"


@register_loss("proxy_anchor", space={"loss_lr": _LOSS_LR, "margin": FloatDistribution(0.0, 1.0),
                                      "alpha": FloatDistribution(3.2, 320.0, log=True)},
               defaults={"margin": 0.1, "alpha": 32.0},
               description="Each class proxy as an anchor pulling its samples and pushing all others.",
               paper=_KIM)
class ProxyAnchorLoss(torch.nn.Module):
    """Proxy Anchor (Kim et al. 2020), as PML's ProxyAnchorLoss.

    One proxy p_c per class (kaiming-normal, fan_out, as PML); s(x, p) is cosine similarity. With
    X_c+ the batch samples of class c, X_c- the others, P+ the proxies with a sample in the batch,
    C the number of classes:
        loss = 1/|P+| sum_{c in P+} log(1 + sum_{x in X_c+} exp(-alpha (s(x, p_c) - margin)))
             + 1/C    sum_c        log(1 + sum_{x in X_c-} exp( alpha (s(x, p_c) + margin)))
    the positive part averaged over proxies with positives, the negative over all proxies (as the
    paper and PML). No deliberate difference from PML.
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.1, alpha: float = 32.0) -> None:
        super().__init__()
        self.margin = margin
        self.alpha = alpha
        self.proxies = torch.nn.Parameter(torch.empty(num_classes, embedding_dim))
        torch.nn.init.kaiming_normal_(self.proxies, mode="fan_out", generator=_seeded())

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = _prepare(embeddings, labels)
        cos = _cosine(x, self.proxies)  # [B, C]
        positive = F.one_hot(labels, cos.shape[1]).bool()
        # log(1 + sum exp(z)) over each column, the 1 as an extra zero row; left-out entries are -inf,
        # so a proxy without positives gets exactly log(1) = 0 and no gradient
        zero_row = cos.new_zeros(1, cos.shape[1])
        pos = torch.cat([(-self.alpha * (cos - self.margin)).masked_fill(~positive, -torch.inf), zero_row])
        neg = torch.cat([(self.alpha * (cos + self.margin)).masked_fill(positive, -torch.inf), zero_row])
        with_positives = positive.any(dim=0).sum()
        return torch.logsumexp(pos, dim=0).sum() / with_positives + torch.logsumexp(neg, dim=0).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, alpha={self.alpha}, proxies={tuple(self.proxies.shape)}"


def _unit_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [B, B] between unit vectors, with a zero (not NaN) gradient where d = 0."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        d2 = (2.0 - 2.0 * (x @ x.T)).clamp_min(0.0)
    nonzero = d2 > 0
    return torch.where(nonzero, d2.where(nonzero, 1.0).sqrt(), 0.0)


def _margin_loss(x: torch.Tensor, labels: torch.Tensor, beta: torch.Tensor, margin: float) -> torch.Tensor:
    """PML's MarginLoss over all triplets of the batch, summed pairwise in O(B²).

    `beta` is a scalar or per-anchor [B, 1]. Each triplet (a, p, n) contributes
    relu(d_ap - β + m) + relu(β - d_an + m); a positive pair (a, p) therefore appears N_a times
    (N_a: negatives of a) and a negative pair (a, n) P_a times (P_a: positives of a), which is how
    the sum and PML's divisor (non-zero pos terms + non-zero neg terms, counted per triplet) are formed.
    """
    same = labels[:, None] == labels[None, :]
    positive = same.clone()
    positive.fill_diagonal_(False)
    negative = ~same
    per_anchor_negatives = negative.sum(dim=1, keepdim=True).float()
    per_anchor_positives = positive.sum(dim=1, keepdim=True).float()
    distances = _unit_distances(x)
    pos = F.relu(distances - beta + margin)
    neg = F.relu(beta - distances + margin)
    pos_weight = positive * per_anchor_negatives  # zero where a has no negative: no triplet then
    neg_weight = negative * per_anchor_positives
    total = (pos * pos_weight).sum() + (neg * neg_weight).sum()
    divisor = ((pos > 0) * pos_weight).sum() + ((neg > 0) * neg_weight).sum()
    # no active triplet: every term is 0, so total is an attached 0 and the clamp avoids 0 / 0
    return total / divisor.clamp_min(1.0)


@register_loss("margin", space=_MARGIN_SPACE, defaults={"margin": 0.2, "beta": 1.2},
               description="Pairs pulled inside / pushed outside a learnable boundary β (all triplets).",
               paper=_WU)
class MarginLoss(torch.nn.Module):
    """Margin loss with one learnable β (Wu et al. 2017), as PML's MarginLoss(learn_beta=True), no miner.

    d Euclidean between the L2-normalised embeddings. Over all triplets (a, p, n) of the batch:
        l = relu(d(a, p) - β + margin) + relu(β - d(a, n) + margin)
    loss = sum of l / (number of non-zero positive terms + number of non-zero negative terms), both
    counted per triplet (PML's DivisorReducer); 0 when no term is active or no triplet exists. β
    starts at `beta` and is learnt (`learned_beta`, shape [1]). The β regulariser nu·β of the paper is
    left out, i.e. nu = 0, PML's default. No deliberate difference from PML in value; we sum over
    pairs weighted by their triplet counts instead of materialising the B³ triplets.
    """

    def __init__(self, margin: float = 0.2, beta: float = 1.2) -> None:
        super().__init__()
        self.margin = margin
        self.beta = beta  # the initial value; the learnt one is `learned_beta`
        self.learned_beta = torch.nn.Parameter(torch.tensor([float(beta)]))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = _prepare(embeddings, labels)
        return _margin_loss(x, labels, self.learned_beta.float(), self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, beta={self.beta}"


@register_loss("margin_per_class", space=_MARGIN_SPACE, defaults={"margin": 0.2, "beta": 1.2},
               description="Margin loss with one learnable boundary β per class (the anchor's).",
               paper=_WU)
class PerClassMarginLoss(torch.nn.Module):
    """Margin loss with one learnable β per class (Wu et al. 2017), as PML's MarginLoss(learn_beta=True,
    num_classes=C), no miner.

    As `margin`, with β_{y_a}, the β of the anchor's class, in both terms of triplet (a, p, n);
    `learned_beta` has shape [C], all starting at `beta`. β of classes absent from a batch get no
    gradient from it. nu = 0 (no β regulariser), PML's default. No deliberate difference from PML.
    """

    def __init__(self, num_classes: int, margin: float = 0.2, beta: float = 1.2) -> None:
        super().__init__()
        self.margin = margin
        self.beta = beta
        self.learned_beta = torch.nn.Parameter(torch.full((num_classes,), float(beta)))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = _prepare(embeddings, labels)
        return _margin_loss(x, labels, self.learned_beta.float()[labels, None], self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, beta={self.beta}, classes={self.learned_beta.shape[0]}"


@register_loss("soft_triple", space={"loss_lr": _LOSS_LR, "la": FloatDistribution(0.01, 100.0),
                                     "gamma": FloatDistribution(0.01, 100.0),
                                     "reg_weight": FloatDistribution(0.0, 1.0),
                                     "margin": FloatDistribution(0.0, 1.0)},
               defaults={"la": 20.0, "gamma": 0.1, "reg_weight": 0.2, "margin": 0.01},
               description="Softmax over classes, each a soft maximum over several learnable centres.",
               paper=_QIAN)
class SoftTripleLoss(torch.nn.Module):
    """SoftTriple (Qian et al. 2019), as PML's SoftTripleLoss with its SparseCentersRegularizer.

    K = centers_per_class centres w_c^k per class, stored as the columns of `centers` [D, C·K] (column
    c·K + k, PML's `fc` layout; kaiming-uniform with a = √5, as PML). With cosine similarities
    s_c^k = cos(x, w_c^k):
        S_c(x) = sum_k softmax_k(s_c^k / gamma) s_c^k
        L_i = cross-entropy(la (S(x_i) - margin·onehot(y_i)), y_i),      loss = mean_i L_i
            + reg_weight · sum_c sum_{k<k'} sqrt(2 + tiny - 2 cos(w_c^k, w_c^k')) / (C K (K - 1))
    (tiny = float32's smallest normal, as PML; 2 cos clamped at 2). No deliberate difference from
    PML; the regulariser only forms the C within-class K × K blocks, not PML's full C·K × C·K matrix.
    """

    def __init__(self, embedding_dim: int, num_classes: int, la: float = 20.0, gamma: float = 0.1,
                 reg_weight: float = 0.2, margin: float = 0.01, centers_per_class: int = 10) -> None:
        super().__init__()
        self.la = la
        self.gamma = gamma
        self.reg_weight = reg_weight
        self.margin = margin
        self.num_classes = num_classes
        self.centers_per_class = centers_per_class
        self.centers = torch.nn.Parameter(torch.empty(embedding_dim, num_classes * centers_per_class))
        torch.nn.init.kaiming_uniform_(self.centers, a=math.sqrt(5), generator=_seeded())

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = _prepare(embeddings, labels)
        classes, per_class = self.num_classes, self.centers_per_class
        with torch.autocast(device_type=x.device.type, enabled=False):
            centers = F.normalize(self.centers.float(), dim=0)  # unit columns
            sim = (x @ centers).view(-1, classes, per_class)  # [B, C, K]
            class_sim = (F.softmax(sim * (1.0 / self.gamma), dim=2) * sim).sum(dim=2)
            logits = self.la * class_sim
            # the margin only on the true class: subtracting it from that logit alone
            logits = logits - (self.la * self.margin) * F.one_hot(labels, classes)
            loss = F.cross_entropy(logits, labels)
            if per_class < 2:
                return loss
            grouped = centers.T.reshape(classes, per_class, -1)  # [C, K, D]
            within = grouped @ grouped.transpose(1, 2)  # [C, K, K]
        upper = torch.ones(per_class, per_class, dtype=torch.bool, device=x.device).triu(diagonal=1)
        tiny = torch.finfo(torch.float32).tiny
        spread = torch.sqrt(2.0 + tiny - (2.0 * within[:, upper]).clamp_max(2.0))
        return loss + self.reg_weight * spread.sum() / (classes * per_class * (per_class - 1))

    def extra_repr(self) -> str:
        return (f"la={self.la}, gamma={self.gamma}, reg_weight={self.reg_weight}, margin={self.margin}, "
                f"centers={self.num_classes}x{self.centers_per_class}")
