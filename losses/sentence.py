"""The losses sentence-transformers (ST) users train with, fed from the harness's labelled P x K batch.

Papers: Henderson et al., Efficient Natural Language Response Suggestion for Smart Reply (2017); van den
Oord, Li, Vinyals, Representation Learning with Contrastive Predictive Coding (2018); Günther et al., Jina
Embeddings 2 (2023); Su, CoSENT (2022) and Huang et al., CoSENT (TASLP 2024); Li and Li, AnglE-optimized
Text Embeddings (2023); Hadsell, Chopra, LeCun (CVPR 2006) and Reimers, Gurevych, Sentence-BERT (2019).

ST's trainer hands these losses columns of texts, not a labelled batch: (anchor, positive) pairs for the
ranking losses, (text 1, text 2, score) for the pairwise ones. Here the columns are made from the labelled
batch, the way a user would build them from a labelled data set:
- ranking losses: one (anchor, positive) pair per class that has two or more items, its first and second
  items in batch order, the classes in order of first appearance; a class's further items, and classes with
  a single item, are unused (as N-pairs, losses/infonce.py);
- pairwise losses: every unordered pair (i, j), i < j in batch order, scored 1.0 (or labelled 1) if i and j
  share a class and 0.0 (0) otherwise; i is the pair's first text.
On these columns every loss equals ST 6.3.0's class of the same name, in value and gradient (tested in
tests/test_losses_sentence.py), but for the documented degenerate batches.

All re-normalise the embeddings, as ST's similarity functions do (a no-op in value on the harness's unit
vectors), and compute in float32, or in the input's precision if wider, with autocast off. A batch without
a valid term gives exactly 0, attached to the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution

from losses.common import check_inputs
from losses.registry import register_loss

__all__ = ["AnglELoss", "CoSENTLoss", "MultipleNegativesRankingLoss", "MultipleNegativesSymmetricRankingLoss",
           "OnlineContrastiveLoss"]

_HENDERSON = ("Henderson, Al-Rfou, Strope, Sung, Lukacs, Guo, Kumar, Miklos, Kurzweil. Efficient Natural Language "
              "Response Suggestion for Smart Reply. arXiv 2017")
_OORD = "van den Oord, Li, Vinyals. Representation Learning with Contrastive Predictive Coding. arXiv 2018"
_GUNTHER = ("Günther et al. Jina Embeddings 2: 8192-Token General-Purpose Text Embeddings for Long Documents. "
            "arXiv 2023")
_SU = "Su. CoSENT (I): A More Effective Sentence Embedding Scheme than Sentence-BERT. Blog post 2022"
_HUANG = ("Huang, Peng, Zou, Liu, Li, Liu, Wu, Su, Yu. CoSENT: Consistent Sentence Embedding via Similarity "
          "Ranking. IEEE/ACM TASLP 2024")
_LI = "Li, Li. AnglE-optimized Text Embeddings. arXiv 2023"
_HADSELL = "Hadsell, Chopra, LeCun. Dimensionality Reduction by Learning an Invariant Mapping. CVPR 2006"
_REIMERS = "Reimers, Gurevych. Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks. EMNLP 2019"

# finite stand-in for -inf in masked log-sum-exps: an empty one stays finite and its gradient never turns NaN
_LOWEST = torch.finfo(torch.float32).min


def _unit(embeddings: torch.Tensor) -> torch.Tensor:
    """Re-normalised rows in float32 or wider (call with autocast off)."""
    return F.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)), dim=1)


def _zero(embeddings: torch.Tensor) -> torch.Tensor:
    """Exactly 0, attached to the graph (backward works, the gradient is 0)."""
    return embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)).sum() * 0.0


def _anchor_positive(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch indices of one (anchor, positive) pair per class with two or more items: its first and second items,
    the pairs in the order of the classes' first appearance. No loop over the batch: a stable sort groups each
    class's items in batch order."""
    sorted_labels, order = labels.sort(stable=True)
    starts = torch.ones_like(sorted_labels, dtype=torch.bool)
    starts[1:] = sorted_labels[1:] != sorted_labels[:-1]
    continued = torch.zeros_like(starts)
    continued[:-1] = ~starts[1:]  # the next item is of the same class
    first = (starts & continued).nonzero().squeeze(1)
    anchors, positives = order[first], order[first + 1]
    by_appearance = anchors.argsort()
    return anchors[by_appearance], positives[by_appearance]


def _ranking_logits(embeddings: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor | None:
    """scale * cos(anchor_i, positive_j) [N, N] over the batch's N pairs, or None without a pair."""
    anchors, positives = _anchor_positive(labels)
    if len(anchors) == 0:
        return None
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        # index_select, not x[idx]: its backward is a cheap index_add
        return scale * (_unit(embeddings.index_select(0, anchors)) @ _unit(embeddings.index_select(0, positives)).T)


def _pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) boolean [B, B] over the unordered pairs i < j: same class; different classes."""
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(diagonal=1)
    return same & upper, ~same & upper


def _cosent(scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """log(1 + sum over (positive p, negative n) of exp(s_n - s_p)) = log(1 + exp(LSE_n s_n + LSE_p (-s_p))).

    With binary scores the sum over "pairs scored lower than a higher-scored pair" factorises into one sum over
    negatives times one over positives: O(B^2), where ST sorts and cumulates over all B(B-1)/2 pairs. Without a
    positive or a negative the sum is empty: log(1 + exp(about -3.4e38)) is exactly 0, as log(1 + 0) in ST.
    logaddexp(0, x) rather than softplus, whose threshold returns x itself above 20, off by exp(-x).
    """
    negatives = scores.masked_fill(~negative, _LOWEST).flatten().logsumexp(dim=0)
    positives = (-scores).masked_fill(~positive, _LOWEST).flatten().logsumexp(dim=0)
    total = negatives + positives
    return torch.logaddexp(torch.zeros_like(total), total)


class MultipleNegativesRankingLoss(torch.nn.Module):
    """MultipleNegativesRankingLoss, "MNRL" (Henderson et al. 2017; InfoNCE, van den Oord et al. 2018), as ST's.

    N (anchor, positive) pairs, one per class (module docstring); s = scale * cosine similarity. Each anchor's
    candidates are all N positives, the other classes' positives being its in-batch negatives:
        L_i = -log( exp(s(a_i, p_i)) / sum_j exp(s(a_i, p_j)) )   (cross-entropy, target p_i);
    loss = mean of L_i over the N pairs. One pair gives log 1 = 0; no pair (all classes singletons) gives 0, where
    ST, handed empty columns, returns the mean of nothing (NaN).

    ST 6.3.0's defaults, matched: directions=("query_to_doc",), partition_mode="joint", no hardness weighting,
    cos_sim, no gathering across devices; those options are not exposed. Same as the zoo's n_pairs with a scale
    (n_pairs is scale 1 and picks its pairs in label order, which changes neither value nor gradient).
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        logits = _ranking_logits(embeddings, labels, self.scale)
        if logits is None:
            return _zero(embeddings)
        return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class MultipleNegativesSymmetricRankingLoss(torch.nn.Module):
    """MultipleNegativesSymmetricRankingLoss (symmetric InfoNCE, as in CLIP and Günther et al. 2023), as ST's.

    Same pairs and scores s_ij = scale * cos(a_i, p_j) as MNRL; each anchor ranks the positives (rows of s) and
    each positive ranks the anchors (columns):
        L_i = 1/2 * ( -log softmax_j(s_i.)[i] - log softmax_j(s_.i)[i] );
    loss = mean of L_i over the N pairs, 0 with no pair. ST 6.3.0 computes exactly this: MNRL with
    directions=("query_to_doc", "doc_to_query") and partition_mode="per_direction", i.e. the log-partition
    functions of the two directions averaged, not one joint softmax over both. (ST 6.3.0 deprecates the class
    for that configuration of MultipleNegativesRankingLoss; the two compute the same.)
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        logits = _ranking_logits(embeddings, labels, self.scale)
        if logits is None:
            return _zero(embeddings)
        targets = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class CoSENTLoss(torch.nn.Module):
    """CoSENT (Su 2022; Huang et al. 2024), as ST's CoSENTLoss on every unordered pair, scored 1 same / 0 other.

    s = scale * cosine similarity of a pair's two embeddings. Every pair scored higher (a positive, same class)
    should be more similar than every pair scored lower (a negative, different classes):
        loss = log(1 + sum_{positive p, negative n} exp(s_n - s_p)),
    a single soft ranking over the whole batch (no mean). 0 when the batch has no positive or no negative pair,
    as in ST.
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = _unit(embeddings)
            scores = self.scale * (x @ x.T)
        return _cosent(scores, *_pair_masks(labels))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class AnglELoss(torch.nn.Module):
    """AnglE's angle objective (Li and Li 2023), as ST's AnglELoss on every unordered pair scored 1 / 0.

    CoSENT (above) on the angle similarity instead of the cosine. ST's pairwise_angle_sim: with the rows
    re-normalised (zero-padded to an even dimension D first), each split into halves x = (x', x''), the pair
    (i, j), i < j, i first, is scored
        s_ij = scale * | <x_i, x_j> + <x_i'', x_j'> - <x_i', x_j''> |,
    the modulus of the complex-valued cos + sin of the paper; the sine part is antisymmetric, so a pair's
    order matters and is batch order. Computed as one matrix product x R^T with R = x + (-x'', x').

    As in ST, only the angle term: the paper trains with cosine + in-batch-negative + angle objectives together.
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings
            if x.shape[1] % 2:
                x = F.pad(x, (0, 1))
            x = _unit(x)
            first, last = x.chunk(2, dim=1)
            scores = self.scale * (x @ (x + torch.cat([-last, first], dim=1)).T).abs()
        return _cosent(scores, *_pair_masks(labels))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class OnlineContrastiveLoss(torch.nn.Module):
    """ST's OnlineContrastiveLoss: contrastive loss (Hadsell et al. 2006) on the batch's hard pairs only.

    Over the unordered pairs i < j, label 1 same class / 0 different, d = 1 - cosine similarity (ST's default
    SiameseDistanceMetric.COSINE_DISTANCE). Hard positives: positive pairs farther apart than the nearest
    negative pair; hard negatives: negative pairs nearer than the farthest positive pair (both strict, as ST);
        loss = sum_{hard positives} d^2 + sum_{hard negatives} max(0, margin - d)^2,
    a sum, not a mean, as ST's (so it grows with the batch; the searched learning rate absorbs the scale).

    Difference, deliberate: a batch without a positive or without a negative pair gives 0. ST then compares
    against the mean distance instead (hard negatives: those nearer than the negatives' mean; hard positives:
    farther than the positives' mean), a one-sided push or pull; our contrastive loss and the zoo's
    (losses/pair.py) give 0 there. A P x K batch with P, K >= 2 has both kinds, and the values are identical.
    """

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = _unit(embeddings)
            distances = 1.0 - x @ x.T
        positive, negative = _pair_masks(labels)
        with torch.no_grad():  # the thresholds select pairs; no gradient flows through them, as in ST
            farthest_positive = distances.masked_fill(~positive, -torch.inf).amax()
            nearest_negative = distances.masked_fill(~negative, torch.inf).amin()
        # without positives the threshold is -inf and no negative is hard, and vice versa: exactly 0
        hard_positive = positive & (distances > nearest_negative)
        hard_negative = negative & (distances < farthest_positive)
        pulls = distances.pow(2).where(hard_positive, 0.0).sum()
        pushes = F.relu(self.margin - distances).pow(2).where(hard_negative, 0.0).sum()
        return pulls + pushes

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


# The scale is an inverse temperature: ST's default 20 (temperature 0.05; CoSENT's lambda = 20), searched over
# 10x either side on a log scale as the zoo's other scales (proxy_anchor, tuplet_margin): 2 (SimCLR's
# temperature 0.5) to 200, beyond CLIP's cap of 100 on its learned logit scale and ST's "10 to 100 are common".
_SCALE = FloatDistribution(2.0, 200.0, log=True)

register_loss("multiple_negatives_ranking", space={"scale": _SCALE}, defaults={"scale": 20.0},
              paper=f"{_HENDERSON}; {_OORD}",
              description="In-batch-negatives softmax (InfoNCE): each class's anchor ranks its positive first.",
              )(MultipleNegativesRankingLoss)
register_loss("multiple_negatives_symmetric", space={"scale": _SCALE}, defaults={"scale": 20.0},
              paper=f"{_HENDERSON}; {_GUNTHER}",
              description="Symmetric in-batch-negatives softmax: anchors rank positives and positives rank anchors.",
              )(MultipleNegativesSymmetricRankingLoss)
register_loss("cosent", space={"scale": _SCALE}, defaults={"scale": 20.0}, paper=f"{_SU}; {_HUANG}",
              description="CoSENT: one soft ranking of every same-class pair's cosine above every other pair's.",
              )(CoSENTLoss)
register_loss("angle", space={"scale": _SCALE}, defaults={"scale": 20.0}, paper=_LI,
              description="AnglE: the CoSENT ranking over the pairs' complex-angle similarity.",
              )(AnglELoss)
# the margin is on the cosine distance, in [0, 2]: searched over all of it (0 pushes no negative, 2 every one)
register_loss("online_contrastive", space={"margin": FloatDistribution(0.0, 2.0)}, defaults={"margin": 0.5},
              paper=f"{_HADSELL}; {_REIMERS}",
              description="Contrastive loss on cosine distance over the batch's hard positive and negative pairs.",
              )(OnlineContrastiveLoss)
