"""InfoNCE-style losses (NT-Xent, SupCon, N-pairs) and FastAP, a listwise ranking loss.

Papers: Sohn, Improved Deep Metric Learning with Multi-class N-pair Loss Objective (NeurIPS 2016);
Chen et al., A Simple Framework for Contrastive Learning of Visual Representations (ICML 2020);
Khosla et al., Supervised Contrastive Learning (NeurIPS 2020); Cakir et al., Deep Metric Learning to
Rank (CVPR 2019).

All four re-normalise the embeddings (a no-op in value on the harness's unit vectors) so that they
are cosine losses whatever the input and their gradient is the tangent one, as in
pytorch-metric-learning (PML), whose distances normalise by default. Similarities and distances are
computed in float32 from the Gram matrix with autocast off. Every sum over "other" samples is a
masked [B, B] operation (N-pairs: an [N, N] one over the selected pairs): no loop over the batch, no
[pairs x pairs] tensor.

A batch without a valid term (all labels distinct, or all equal) gives exactly 0, attached to the
graph; masked entries are filled with float32's most negative finite value rather than -inf, so an
empty log-sum-exp stays finite and its (discarded) gradient never turns into NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution, IntDistribution

from losses.common import check_inputs, pair_masks
from losses.registry import register_loss

__all__ = ["FastAPLoss", "NPairsLoss", "NTXentLoss", "SupConLoss"]

_SOHN = "Sohn. Improved Deep Metric Learning with Multi-class N-pair Loss Objective. NeurIPS 2016"
_CHEN = ("Chen, Kornblith, Norouzi, Hinton. A Simple Framework for Contrastive Learning of Visual "
         "Representations. ICML 2020")
_KHOSLA = ("Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan. Supervised Contrastive "
           "Learning. NeurIPS 2020")
_CAKIR = "Cakir, He, Xia, Kulis, Sclaroff. Deep Metric Learning to Rank. CVPR 2019"

_LOWEST = torch.finfo(torch.float32).min


def _unit_gram(embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarities [B, B] in float32 (Gram matrix of the re-normalised embeddings)."""
    # half-precision Gram matrices lose the small differences the softmax amplifies at low temperature
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = F.normalize(embeddings.float(), dim=1)
        return x @ x.T


class NTXentLoss(torch.nn.Module):
    """NT-Xent / multi-positive InfoNCE (Sohn 2016; Chen et al. 2020, SimCLR), as PML's NTXentLoss.

    s = cosine similarity, t = temperature. For every positive pair (a, p), p != a:
        L_ap = -log( exp(s_ap / t) / (exp(s_ap / t) + sum_{n: y_n != y_a} exp(s_an / t)) )
             = softplus( logsumexp_n(s_an / t) - s_ap / t );
    loss = mean of L_ap over all positive pairs (PML's MeanReducer over "pos_pair" terms). Other
    positives of the anchor are not in the denominator (unlike SupCon).

    Difference, deliberate: PML computes log(ratio + 1.2e-38), so a pair whose ratio underflows in
    float32 (a negative beating the positive by more than ~87 t in cosine, possible only for
    t < ~0.023) is capped at -log(1.2e-38) = 87.34 with no gradient; we compute the exact value
    through softplus/logsumexp and keep its gradient. Identical (to rounding) otherwise.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        logits = _unit_gram(embeddings) / self.temperature
        positive, negative = pair_masks(labels)
        negatives = logits.masked_fill(~negative, _LOWEST).logsumexp(dim=1, keepdim=True)
        # an anchor without negatives (one-class batch) gives softplus(lowest) = 0 exactly
        terms = F.softplus(negatives - logits)
        return terms.where(positive, 0.0).sum() / positive.sum().clamp_min(1)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class SupConLoss(torch.nn.Module):
    """Supervised contrastive loss, L^sup_out (Khosla et al. 2020), as PML's SupConLoss.

    s = cosine similarity, t = temperature, P(a) = positives of a (same label, != a), A(a) = all
    samples but a. For each anchor a with a positive:
        L_a = -1/|P(a)| * sum_{p in P(a)} log( exp(s_ap / t) / sum_{k in A(a)} exp(s_ak / t) );
    loss = mean of L_a over anchors with at least one positive (and a negative in the batch), as
    the paper and its reference code (mean over anchors); 0 if there is none.

    Difference, deliberate: PML's default AvgNonZeroReducer averages over anchors whose L_a > 0 only.
    L_a = 0 happens in float32 only for an anchor with a single positive that outranks every
    negative by more than ~17 t in cosine (t <~ 0.1 with K = 2 images per class); PML then leaves it
    out of the count and reports a larger loss, we count it as the solved anchor it is. PML's
    SupConLoss with a MeanReducer is identical to ours on batches where every anchor has a positive.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        logits = _unit_gram(embeddings) / self.temperature
        positive, negative = pair_masks(labels)
        eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
        log_prob = logits - logits.masked_fill(eye, _LOWEST).logsumexp(dim=1, keepdim=True)
        count = positive.sum(dim=1)
        per_anchor = -log_prob.where(positive, 0.0).sum(dim=1) / count.clamp_min(1)
        valid = (count > 0) & negative.any(dim=1)
        return per_anchor.where(valid, 0.0).sum() / valid.sum().clamp_min(1)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class NPairsLoss(torch.nn.Module):
    """Multi-class N-pair loss (Sohn 2016), as PML's NPairsLoss.

    One (anchor, positive) pair per class that has two or more samples: the anchor is the class's
    first sample in batch order and the positive its second, exactly the pair PML picks (the first
    anchor-positive pair of each label in row-major order). With s = cosine similarity between the
    N anchors and the N positives:
        L_i = -log( exp(s(a_i, p_i)) / sum_j exp(s(a_i, p_j)) )   (cross-entropy, target p_i);
    loss = mean of L_i over the N pairs; 0 when fewer than two classes have two samples (N = 1 gives
    log 1 = 0 exactly).

    Differences from the paper, shared with PML: the embeddings are unit vectors (the paper used the
    raw inner product with an L2 penalty on the embeddings, which PML and we leave out), and the
    other samples of a class beyond its first two are unused.
    """

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        # a stable sort puts each class's samples together in batch order: its first two are the pair,
        # and the pairs come out aligned by label, in O(B log B) with no [B, B] matrix
        sorted_labels, order = labels.sort(stable=True)
        starts = torch.ones_like(sorted_labels, dtype=torch.bool)
        starts[1:] = sorted_labels[1:] != sorted_labels[:-1]
        continued = torch.zeros_like(starts)
        continued[:-1] = ~starts[1:]  # the next sample is of the same class
        first = (starts & continued).nonzero().squeeze(1)
        if len(first) == 0:
            return embeddings.float().sum() * 0.0
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings.float()
            anchors = F.normalize(x[order[first]], dim=1)
            positives = F.normalize(x[order[first + 1]], dim=1)
            logits = anchors @ positives.T
        # a single pair gives log(1) = 0 exactly
        return F.cross_entropy(logits, torch.arange(len(first), device=logits.device))


class FastAPLoss(torch.nn.Module):
    """FastAP (Cakir et al. 2019), 1 - a histogram approximation of average precision; as PML's FastAPLoss.

    d = squared Euclidean distance between unit vectors, in [0, 4], binned into num_bins + 1 bin
    centres c_k = k * 4 / num_bins with triangular (linear-interpolation) weights
    w_k(d) = max(0, 1 - |d - c_k| / delta), delta = 4 / num_bins. Per anchor a: h+_k, h-_k = summed
    weights of its positives / negatives (self excluded), H+_k, H_k = cumulative sums of h+ and of
    h+ + h-, and
        FastAP_a = 1/|P(a)| * sum_k h+_k H+_k / H_k   (terms with h+_k H+_k = 0 left out);
    loss = mean of 1 - FastAP_a over anchors with at least one positive.

    Each distance touches only its two neighbouring bins, so the histograms are built with two
    scatter-adds in O(B^2) rather than PML's [num_bins + 1, B, B] pulse tensor; the weights and their
    gradients are the same. Difference, deliberate (rounding only): an anchor without negatives
    (a one-class batch) has FastAP = 1 exactly and contributes exactly 0, where PML's histogram sum
    gives 1 - (a rounding error).
    """

    def __init__(self, num_bins: int = 10) -> None:
        super().__init__()
        self.num_bins = num_bins

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        gram = _unit_gram(embeddings)
        norms = gram.diagonal()
        distances = (norms[:, None] + norms[None, :] - 2.0 * gram).clamp_min(0.0)
        positive, negative = pair_masks(labels)

        delta = 4.0 / self.num_bins
        position = distances / delta  # in bin units, 0 .. num_bins (a hair above by rounding)
        lower = position.detach().floor().clamp(0, self.num_bins - 1).long()
        # the exact triangular weights of the two bins around d; every other bin's weight is 0
        lower_weight = F.relu(1.0 - (position - lower).abs())
        upper_weight = F.relu(1.0 - (position - (lower + 1)).abs())

        def histogram(mask: torch.Tensor) -> torch.Tensor:
            hist = distances.new_zeros(distances.shape[0], self.num_bins + 1)
            hist = hist.scatter_add(1, lower, lower_weight.where(mask, 0.0))
            return hist.scatter_add(1, lower + 1, upper_weight.where(mask, 0.0))

        positive_hist, negative_hist = histogram(positive), histogram(negative)
        product = positive_hist * positive_hist.cumsum(dim=1)
        total = (positive_hist + negative_hist).cumsum(dim=1)
        kept = product > 0  # implies total > 0
        ratio = torch.where(kept, product / total.where(kept, 1.0), 0.0)
        count = positive.sum(dim=1)
        fast_ap = ratio.sum(dim=1) / count.clamp_min(1)
        has_positive = count > 0
        terms = (1.0 - fast_ap).where(has_positive & negative.any(dim=1), 0.0)
        return terms.sum() / has_positive.sum().clamp_min(1)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}"


register_loss("ntxent", space={"temperature": FloatDistribution(1e-5, 100.0, log=True)},
              defaults={"temperature": 0.07}, paper=f"{_SOHN}; {_CHEN}",
              description="Softmax of each positive pair against the anchor's negatives (NT-Xent).",
              )(NTXentLoss)
# the paper recommends about 0.05-0.2 (0.1 by default); widened by 10 on each side
register_loss("supcon", space={"temperature": FloatDistribution(0.005, 2.0, log=True)},
              defaults={"temperature": 0.1}, paper=_KHOSLA,
              description="Supervised contrastive: mean log-softmax of an anchor's positives over all others.",
              )(SupConLoss)
register_loss("n_pairs", space={}, defaults={}, paper=_SOHN,
              description="Cross-entropy of one anchor per class against one positive of every class.",
              )(NPairsLoss)
register_loss("fastap", space={"num_bins": IntDistribution(2, 250)}, defaults={"num_bins": 10}, paper=_CAKIR,
              description="One minus a histogram-binned, differentiable average precision per anchor.",
              )(FastAPLoss)
