"""Pair-based losses (losses/pair.py) and `triplet`: equality with PML configured alike, the pinned
differences, and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution

import losses
from benchmarks.pml_equivalents.pair import EQUIVALENTS, MinedLoss
from losses.triplet import BatchAllTripletLoss

pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance, SNRDistance  # noqa: E402

NAMES = ("contrastive", "triplet", "snr_contrastive", "lifted_structure", "multi_similarity",
         "multi_similarity_miner", "circle", "tuplet_margin")

# per loss: the defaults, then two other settings inside the space
SETTINGS: dict[str, list[dict[str, float]]] = {
    "contrastive": [{}, {"pos_margin": 0.3, "neg_margin": 0.8}, {"pos_margin": -0.1, "neg_margin": 1.5}],
    "triplet": [{}, {"margin": -0.1}, {"margin": 0.5}],
    "snr_contrastive": [{}, {"pos_margin": 0.2, "neg_margin": 0.7, "regularizer_weight": 0.5},
                        {"pos_margin": 1.0, "neg_margin": 1.8, "regularizer_weight": 0.0}],
    "lifted_structure": [{}, {"pos_margin": 0.5, "neg_margin": 1.5}, {"pos_margin": 1.2, "neg_margin": 0.3}],
    "multi_similarity": [{}, {"alpha": 10.0, "beta": 40.0, "base": 0.7}, {"alpha": 0.5, "beta": 5.0, "base": 0.1}],
    "multi_similarity_miner": [{}, {"alpha": 10.0, "beta": 40.0, "base": 0.7, "epsilon": 0.5},
                               {"alpha": 0.5, "beta": 5.0, "base": 0.1, "epsilon": 0.05}],
    "circle": [{}, {"m": 0.25, "gamma": 256.0}, {"m": 0.1, "gamma": 16.0}],
    "tuplet_margin": [{}, {"margin": 20.0, "scale": 32.0}, {"margin": 0.0, "scale": 16.0}],
}


def build(name: str, **hparams: object) -> torch.nn.Module:
    return losses.build(name, embedding_dim=16, num_classes=32, **hparams)


def normalised_batch(classes: int, per_class: int, dim: int = 16, seed: int = 0, spread: float = 0.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """P x K unit vectors in shuffled order; spread > 0 pulls each class towards its own centre."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    centres = torch.randn(classes, dim, generator=generator)
    embeddings = F.normalize(torch.randn(classes * per_class, dim, generator=generator) + spread * centres[labels],
                             dim=1)
    order = torch.randperm(len(labels), generator=generator)
    return embeddings[order], labels[order]


def value_and_grad(module: torch.nn.Module, embeddings: torch.Tensor, labels: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = embeddings.detach().clone().requires_grad_()
    value = module(leaf, labels)
    value.backward()
    return value.detach(), leaf.grad


def assert_same_as_pml(name: str, hparams: dict[str, float], embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    ours = build(name, **hparams)
    if name == "multi_similarity_miner":  # keep clear of PML's single-pair rule (pinned below)
        mined = EQUIVALENTS[name](ours).miner(embeddings, labels)
        assert max(len(indices) for indices in mined) != 1
    value, grad = value_and_grad(ours, embeddings, labels)
    theirs, their_grad = value_and_grad(EQUIVALENTS[name](ours), embeddings, labels)
    assert value.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(grad, their_grad, atol=1e-5, rtol=1e-4)


def test_every_loss_has_an_equivalent_and_is_registered() -> None:
    assert set(EQUIVALENTS) == set(NAMES)
    assert set(NAMES) <= set(losses.available())


# --- equality with PML --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("classes", "per_class", "dim", "spread"),
                         [(8, 4, 16, 0.0), (16, 2, 32, 1.0), (4, 8, 64, 0.5), (32, 4, 128, 2.0)])
@pytest.mark.parametrize("setting", [0, 1, 2])
def test_equal_to_pml_on_class_balanced_batches(name: str, classes: int, per_class: int, dim: int, spread: float,
                                                setting: int) -> None:
    embeddings, labels = normalised_batch(classes, per_class, dim, seed=setting + dim, spread=spread)
    assert_same_as_pml(name, SETTINGS[name][setting], embeddings, labels)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_pml_with_singletons_and_uneven_classes(name: str, seed: int) -> None:
    # anchors without a positive enter as PML enters them (e.g. lifted structure: the push term only)
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(30, 16, generator=generator), dim=1)
    labels = torch.tensor([0] * 2 + [1] * 3 + [2] * 4 + [3] * 7 + [4] * 8 + [5, 6, 7, 8, 9, 10])
    assert_same_as_pml(name, SETTINGS[name][seed], embeddings, labels)


def test_miner_selects_a_strict_subset_on_these_batches() -> None:
    # so the miner tests above are not vacuous: with epsilon 0.1 some pairs are mined away
    embeddings, labels = normalised_batch(8, 4, 16, seed=3, spread=1.0)
    mined = build("multi_similarity_miner")(embeddings, labels)
    assert mined.item() != pytest.approx(build("multi_similarity")(embeddings, labels).item(), rel=1e-3)


# --- pinned differences from PML -----------------------------------------------------------------------


ONE_SIDED = ("contrastive", "snr_contrastive", "lifted_structure", "multi_similarity")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("labelling", ["all_equal", "all_distinct"])
def test_batch_without_both_kinds_of_pair_gives_zero_where_pml_gives_the_one_sided_term(name: str,
                                                                                       labelling: str) -> None:
    embeddings, _ = normalised_batch(4, 4)
    labels = torch.zeros(16, dtype=torch.long) if labelling == "all_equal" else torch.arange(16)
    ours = build(name)
    assert ours(embeddings, labels).item() == 0.0
    theirs = EQUIVALENTS[name](ours)(embeddings, labels).item()
    # PML: a one-sided pull on the all-equal batch, a one-sided push on the all-distinct one (contrastive:
    # some of these 16 random unit vectors lie closer than neg_margin 1), for these four; 0 for the others
    if name in ONE_SIDED:
        assert theirs > 0.0
    else:
        assert theirs == 0.0


def pml_with_normalisation(name: str, ours: torch.nn.Module) -> torch.nn.Module:
    """The equivalent with PML's default, normalising, distance put back."""
    module = EQUIVALENTS[name](ours)
    loss = module.loss if isinstance(module, MinedLoss) else module
    default = {"snr_contrastive": SNRDistance, "multi_similarity": CosineSimilarity,
               "multi_similarity_miner": CosineSimilarity, "circle": CosineSimilarity,
               "tuplet_margin": CosineSimilarity}.get(name, LpDistance)
    loss.distance = default()
    if isinstance(module, MinedLoss):
        module.miner.distance = default()
    return module


@pytest.mark.parametrize("name", NAMES)
def test_pml_normalising_again_changes_only_the_radial_gradient(name: str) -> None:
    # the zero-mean regulariser acts on the raw embeddings in PML too, so it has a radial part: off here
    hparams = {"regularizer_weight": 0.0} if name == "snr_contrastive" else {}
    embeddings, labels = normalised_batch(8, 4, 32, seed=5, spread=0.5)
    ours = build(name, **hparams)
    value, grad = value_and_grad(ours, embeddings, labels)
    theirs, their_grad = value_and_grad(pml_with_normalisation(name, ours), embeddings, labels)
    assert value.item() == pytest.approx(theirs.item(), rel=1e-5)
    tangential = grad - (grad * embeddings).sum(dim=1, keepdim=True) * embeddings
    torch.testing.assert_close(tangential, their_grad, atol=1e-5, rtol=1e-4)
    assert (grad - tangential).abs().max() > 1e-4  # the radial part is really there


def test_tuplet_margin_coincident_positives_finite_where_pml_is_not() -> None:
    embeddings, labels = normalised_batch(4, 2, 16, seed=0)
    embeddings = embeddings.clone()
    same = (labels == labels[0]).nonzero().flatten()
    embeddings[same[1]] = embeddings[same[0]]  # a positive pair at angle 0: S_ap = 1 up to rounding
    ours = build("tuplet_margin")
    value, grad = value_and_grad(ours, embeddings, labels)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    theirs, their_grad = value_and_grad(EQUIVALENTS["tuplet_margin"](ours), embeddings, labels)
    assert not (torch.isfinite(theirs) and torch.isfinite(their_grad).all())


# Three unit vectors in the plane, labels (0, 0, 1): a at 0 degrees, b at 60 (S_ab = 0.5), c at
# -acos(0.45) (S_ac = 0.45, S_bc = cos(60 + 63.26) = -0.548). Miner, epsilon 0.1:
#   anchor a: positive b kept (0.5 - 0.1 < max negative 0.45); negative c kept (0.45 + 0.1 > min positive 0.5)
#   anchor b: positive a not kept (0.4 < -0.548 fails); negative c not kept (-0.448 > 0.5 fails)
#   anchor c: no positive, so no negative is kept either
# One positive and one negative pair: PML's "at most one pair of each" check returns 0; we compute
#   row a: 1/2 log(1 + exp(-2 (0.5 - 0.5))) + 1/50 log(1 + exp(50 (0.45 - 0.5)))
#        = log(2) / 2 + log(1 + exp(-2.5)) / 50; rows b and c: 0; mean over the 3 anchors.
MINER_ANGLES = (0.0, math.pi / 3, -math.acos(0.45))
MINER_POINTS = torch.tensor([[math.cos(t), math.sin(t)] for t in MINER_ANGLES])
MINER_LABELS = torch.tensor([0, 0, 1])


def test_hand_multi_similarity_miner_and_pml_single_pair_rule() -> None:
    expected = (math.log(2) / 2 + math.log1p(math.exp(-2.5)) / 50) / 3
    ours = build("multi_similarity_miner")
    assert ours(MINER_POINTS, MINER_LABELS).item() == pytest.approx(expected, rel=1e-6)
    assert EQUIVALENTS["multi_similarity_miner"](ours)(MINER_POINTS, MINER_LABELS).item() == 0.0


# --- triplet -------------------------------------------------------------------------------------------


def test_triplet_is_batch_all_with_the_reality_check_margin() -> None:
    record = losses.info("triplet")
    assert record.cls is BatchAllTripletLoss
    assert record.space == {"margin": FloatDistribution(-0.2, 2.0)} and record.defaults == {"margin": 0.05}
    embeddings, labels = normalised_batch(8, 4)
    for margin in (0.05, 0.2, 1.0):
        assert build("triplet", margin=margin)(embeddings, labels).item() == \
            build("batch_all", margin=margin)(embeddings, labels).item()


def test_registered_spaces_and_defaults() -> None:
    lin = FloatDistribution
    expected = {
        "contrastive": ({"pos_margin": lin(-0.2, 2.0), "neg_margin": lin(-0.2, 2.0)},
                        {"pos_margin": 0.0, "neg_margin": 1.0}),
        "snr_contrastive": ({"pos_margin": lin(0.0, 2.0), "neg_margin": lin(0.0, 2.0),
                             "regularizer_weight": lin(0.0, 1.0)},
                            {"pos_margin": 0.0, "neg_margin": 1.0, "regularizer_weight": 0.1}),
        "lifted_structure": ({"pos_margin": lin(0.0, 2.0), "neg_margin": lin(0.0, 2.0)},
                             {"pos_margin": 0.0, "neg_margin": 1.0}),
        "multi_similarity": ({"alpha": lin(0.01, 100.0), "beta": lin(0.01, 100.0), "base": lin(0.0, 1.0)},
                             {"alpha": 2.0, "beta": 50.0, "base": 0.5}),
        "multi_similarity_miner": ({"alpha": lin(0.01, 100.0), "beta": lin(0.01, 100.0), "base": lin(0.0, 1.0),
                                    "epsilon": lin(0.0, 1.0)},
                                   {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1}),
        "circle": ({"m": lin(0.0, 1.0), "gamma": FloatDistribution(3.2, 2560.0, log=True)}, {"m": 0.4, "gamma": 80.0}),
        "tuplet_margin": ({"margin": lin(0.0, 60.0), "scale": FloatDistribution(6.4, 640.0, log=True)},
                          {"margin": 5.73, "scale": 64.0}),
    }
    for name, (space, defaults) in expected.items():
        assert losses.search_space(name) == space, name
        assert losses.info(name).defaults == defaults, name


# --- hand-computed cases -------------------------------------------------------------------------------

# Four points on a line, class 0 at 0 and 1, class 1 at 3 and 6:
#   d01 = 1, d02 = 3, d03 = 6, d12 = 2, d13 = 5, d23 = 3 (exact in float32)
LINE = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
LINE_LABELS = torch.tensor([0, 0, 1, 1])


def test_hand_contrastive() -> None:
    # the line halved: d01 = .5, d02 = 1.5, d03 = 3, d12 = 1, d13 = 2.5, d23 = 1.5; ordered pairs, so
    # every term twice. pos_margin .25, neg_margin 2:
    #   positives: (0,1) .5 - .25 = .25, (2,3) 1.5 - .25 = 1.25       -> 2 * 1.5 / 4 non-zero = .75
    #   negatives: (0,2) 2 - 1.5 = .5, (0,3) < 0, (1,2) 2 - 1 = 1, (1,3) < 0 -> 2 * 1.5 / 4 = .75
    half = LINE / 2
    assert build("contrastive", pos_margin=0.25, neg_margin=2.0)(half, LINE_LABELS).item() == pytest.approx(1.5)
    # neg_margin 1.2: only (1,2) pushes, 1.2 - 1 = .2, twice -> .4 / 2 = .2; positives as before
    assert build("contrastive", pos_margin=0.25, neg_margin=1.2)(half, LINE_LABELS).item() == pytest.approx(0.95)


def test_hand_triplet_negative_margin() -> None:
    # margin -0.2: only (a, p, n) = (2, 3, 1) is active: 3 - 2 - .2 = .8; every other d_ap - d_an <= 0
    assert build("triplet", margin=-0.2)(LINE, LINE_LABELS).item() == pytest.approx(0.8)
    assert build("triplet", margin=0.5)(LINE, LINE_LABELS).item() == pytest.approx(1.0)  # as batch_all's case


def test_hand_lifted_structure() -> None:
    # pos_margin 0, neg_margin 2; per anchor relu(log sum_p exp(d_ap) + log sum_n exp(2 - d_an)):
    #   0: 1 + log(e^(2-3) + e^(2-6)),  1: 1 + log(e^(2-2) + e^(2-5)),
    #   2: 3 + log(e^(2-3) + e^(2-2)),  3: 3 + log(e^(2-6) + e^(2-5));  all > 0, mean of the four
    terms = [1 + math.log(math.exp(-1) + math.exp(-4)), 1 + math.log(1 + math.exp(-3)),
             3 + math.log(math.exp(-1) + 1), 3 + math.log(math.exp(-4) + math.exp(-3))]
    loss = build("lifted_structure", pos_margin=0.0, neg_margin=2.0)
    assert loss(LINE, LINE_LABELS).item() == pytest.approx(sum(terms) / 4, rel=1e-6)


def test_hand_snr_contrastive() -> None:
    # e0 = (1,0,0), e1 = (0,1,0) class 0; e2 = (0,0,1), e3 = (1,1,0) class 1. Centred: c0 = (2,-1,-1)/3,
    # c1 = (-1,2,-1)/3, c2 = (-1,-1,2)/3, c3 = (1,1,-2)/3 = -c2; every |c|^2 = 2/3, so
    # d_ij = |c_i - c_j|^2 / (2/3): d01 = d02 = d12 = 2 / (2/3) = 3, d03 = d13 = (6/9) / (2/3) = 1, d23 = 4.
    # pos_margin .5, neg_margin 2, weight .2:
    #   positives (0,1): 2.5, (2,3): 3.5, each twice -> mean 3
    #   negatives relu(2 - d): (0,2), (1,2): 0; (0,3), (1,3): 1, each twice -> 4 / 4 non-zero = 1
    #   regulariser: row sums 1, 1, 1, 2 -> mean 1.25, times .2 = .25;  total 4.25
    points = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    loss = build("snr_contrastive", pos_margin=0.5, neg_margin=2.0, regularizer_weight=0.2)
    assert loss(points, LINE_LABELS).item() == pytest.approx(4.25, rel=1e-6)


# Unit-circle points at 0, 60 (class 0) and 90, 180 degrees (class 1); cosine similarities:
#   S(0,60) = .5, S(0,90) = 0, S(0,180) = -1, S(60,90) = sqrt3/2, S(60,180) = -.5, S(90,180) = 0
_ANGLES = torch.tensor([0.0, 60.0, 90.0, 180.0], dtype=torch.float64).deg2rad()
CIRCLE = torch.stack([_ANGLES.cos(), _ANGLES.sin()], dim=1).float()
R3 = math.sqrt(3) / 2
# per anchor: (positive similarities, negative similarities)
CIRCLE_PAIRS = {0: ([0.5], [0.0, -1.0]), 1: ([0.5], [R3, -0.5]), 2: ([0.0], [0.0, R3]), 3: ([0.0], [-1.0, -0.5])}


def test_hand_multi_similarity() -> None:
    # alpha 2, beta 50, base .5: per anchor 1/2 log(1 + sum_p e^(-2 (S - .5))) + 1/50 log(1 + sum_n e^(50 (S - .5)));
    # anchor 0: log(2)/2 + log(1 + e^-25 + e^-75)/50; anchor 2: log(1 + e)/2 + log(1 + e^-25 + e^(50 (R3 - .5)))/50 ...
    def anchor(pos: list[float], neg: list[float]) -> float:
        return (math.log1p(sum(math.exp(-2 * (s - 0.5)) for s in pos)) / 2
                + math.log1p(sum(math.exp(50 * (s - 0.5)) for s in neg)) / 50)

    expected = sum(anchor(*CIRCLE_PAIRS[i]) for i in range(4)) / 4
    assert build("multi_similarity")(CIRCLE, LINE_LABELS).item() == pytest.approx(expected, rel=1e-5)


def test_hand_circle() -> None:
    # m .25, gamma 3.2: positive logit -3.2 relu(1.25 - S) (S - .75), negative logit 3.2 relu(S + .25) (S - .25);
    # anchor 0: positive .5 -> -3.2 * .75 * -.25 = .6; negatives 0 -> 3.2 * .25 * -.25 = -.2, -1 -> weight
    # relu(-.75) = 0, logit 0 (still e^0 = 1 in the sum, as in PML): L_0 = softplus(.6 + log(e^-.2 + 1)).
    # Every L_i > 0, so the non-zero mean is the mean of the four.
    def anchor(pos: list[float], neg: list[float]) -> float:
        lse_p = math.log(sum(math.exp(-3.2 * max(1.25 - s, 0) * (s - 0.75)) for s in pos))
        lse_n = math.log(sum(math.exp(3.2 * max(s + 0.25, 0) * (s - 0.25)) for s in neg))
        return math.log1p(math.exp(lse_p + lse_n))

    assert anchor(*CIRCLE_PAIRS[0]) == pytest.approx(math.log1p(math.exp(0.6 + math.log(math.exp(-0.2) + 1))))
    expected = sum(anchor(*CIRCLE_PAIRS[i]) for i in range(4)) / 4
    assert build("circle", m=0.25, gamma=3.2)(CIRCLE, LINE_LABELS).item() == pytest.approx(expected, rel=1e-5)


def test_hand_tuplet_margin() -> None:
    # margin 30 degrees, scale 6.4: per ordered positive pair (a, p), t = cos(acos(S_ap) - 30deg),
    # L = log(1 + sum_n e^(6.4 (S_an - t))):
    #   (0,60) and (60,0): S = .5, acos = 60deg -> t = cos 30 = R3; negatives of 0: {0, -1}, of 60: {R3, -.5}
    #   (90,180) and (180,90): S = 0, acos = 90deg -> t = cos 60 = .5; negatives of 90: {0, R3}, of 180: {-1, -.5}
    def pair(neg: list[float], t: float) -> float:
        return math.log1p(sum(math.exp(6.4 * (s - t)) for s in neg))

    expected = (pair([0.0, -1.0], R3) + pair([R3, -0.5], R3) + pair([0.0, R3], 0.5) + pair([-1.0, -0.5], 0.5)) / 4
    loss = build("tuplet_margin", margin=30.0, scale=6.4)
    assert loss(CIRCLE, LINE_LABELS).item() == pytest.approx(expected, rel=1e-5)
