"""NT-Xent, SupCon, N-pairs and FastAP: equality with pytorch-metric-learning, documented differences, hand cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution, IntDistribution

import losses
import losses.infonce  # noqa: F401  (registers the family even before losses/__init__ imports it)
from benchmarks.pml_equivalents.infonce import EQUIVALENTS

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
NAMES = ("ntxent", "supcon", "n_pairs", "fastap")
# hyperparameters tried against PML, one per seed
SETTINGS = {
    "ntxent": [{"temperature": 0.07}, {"temperature": 0.5}, {"temperature": 0.03}],
    "supcon": [{"temperature": 0.1}, {"temperature": 0.5}, {"temperature": 0.05}],
    "n_pairs": [{}, {}, {}],
    "fastap": [{"num_bins": 10}, {"num_bins": 2}, {"num_bins": 100}],
}


def build(name: str, **hparams: object) -> torch.nn.Module:
    return losses.build(name, embedding_dim=16, num_classes=32, **hparams)


def normalised_batch(classes: int, per_class: int, dim: int = 16, seed: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(classes * per_class, dim, generator=generator), dim=1)
    labels = torch.arange(classes).repeat_interleave(per_class)
    order = torch.randperm(len(labels), generator=generator)  # classes need not be contiguous
    return embeddings[order], labels[order]


def values_and_grads(first: torch.nn.Module, second: torch.nn.Module, embeddings: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    one = embeddings.detach().clone().requires_grad_()
    two = embeddings.detach().clone().requires_grad_()
    first_value, second_value = first(one, labels), second(two, labels)
    first_value.backward()
    second_value.backward()
    return first_value.detach(), second_value.detach(), one.grad, two.grad


def assert_same_as_pml(name: str, embeddings: torch.Tensor, labels: torch.Tensor, **hparams: object) -> None:
    ours = build(name, **hparams)
    value, theirs, grad, their_grad = values_and_grads(ours, EQUIVALENTS[name](ours), embeddings, labels)
    assert value.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-7)
    torch.testing.assert_close(grad, their_grad, atol=1e-5, rtol=1e-4)


def test_registered_with_spaces_and_defaults() -> None:
    assert set(NAMES) <= set(losses.available())
    assert losses.search_space("ntxent") == {"temperature": FloatDistribution(1e-5, 100.0, log=True)}
    assert losses.search_space("supcon") == {"temperature": FloatDistribution(0.005, 2.0, log=True)}
    assert losses.search_space("n_pairs") == {}
    assert losses.search_space("fastap") == {"num_bins": IntDistribution(2, 250)}
    assert losses.info("ntxent").defaults == {"temperature": 0.07}
    assert losses.info("supcon").defaults == {"temperature": 0.1}
    assert losses.info("fastap").defaults == {"num_bins": 10}
    assert set(EQUIVALENTS) == set(NAMES)


# --- equality with PML --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("classes", "per_class", "dim"), [(8, 4, 16), (16, 2, 32), (4, 8, 128), (32, 4, 64)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_pml_on_class_balanced_batches(name: str, classes: int, per_class: int, dim: int,
                                                seed: int) -> None:
    embeddings, labels = normalised_batch(classes, per_class, dim, seed)
    assert_same_as_pml(name, embeddings, labels, **SETTINGS[name][seed])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_pml_with_uneven_classes_and_singletons(name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(40, 16, generator=generator), dim=1)
    labels = torch.randint(0, 10, (40,), generator=generator)
    labels[-3:] = torch.tensor([20, 21, 22])  # three singleton classes
    hparams = SETTINGS[name][seed]
    if name == "supcon":
        # singletons have no positive: our mean leaves them out, so does PML's default AvgNonZeroReducer
        # (their L_a is 0), while the MeanReducer of the equivalent would count them
        ours = build(name, **hparams)
        value, theirs, grad, their_grad = values_and_grads(ours, pml_losses.SupConLoss(**hparams), embeddings,
                                                           labels)
        assert value.item() == pytest.approx(theirs.item(), rel=1e-5)
        torch.testing.assert_close(grad, their_grad, atol=1e-5, rtol=1e-4)
    else:
        assert_same_as_pml(name, embeddings, labels, **hparams)


@pytest.mark.parametrize("num_bins", [3, 37, 250])
def test_fastap_equal_to_pml_across_bin_counts(num_bins: int) -> None:
    embeddings, labels = normalised_batch(8, 4, 32, seed=num_bins)
    assert_same_as_pml("fastap", embeddings, labels, num_bins=num_bins)


def test_unnormalised_input_is_normalised_as_in_pml() -> None:
    embeddings, labels = normalised_batch(8, 4, 16)
    scaled = embeddings * torch.linspace(0.5, 3.0, 32)[:, None]
    for name in NAMES:
        assert_same_as_pml(name, scaled, labels)


def test_n_pairs_picks_the_first_two_samples_of_each_class() -> None:
    # PML picks the first anchor-positive pair per label in row-major order; so do we, on any batch
    generator = torch.Generator().manual_seed(5)
    embeddings = F.normalize(torch.randn(12, 8, generator=generator), dim=1)
    labels = torch.tensor([3, 1, 3, 3, 2, 1, 0, 2, 1, 3, 4, 1])
    assert_same_as_pml("n_pairs", embeddings, labels)
    # moving a third sample of a class changes nothing; swapping its first two does
    base = build("n_pairs")(embeddings, labels)
    moved = embeddings.clone()
    moved[3] = -moved[3]  # the third sample of class 3
    assert build("n_pairs")(moved, labels).item() == base.item()
    swapped = embeddings.clone()
    swapped[[0, 2]] = swapped[[2, 0]]  # class 3's anchor and positive trade places
    assert build("n_pairs")(swapped, labels).item() != pytest.approx(base.item(), abs=1e-6)


# --- documented differences -------------------------------------------------------------------------------


def test_ntxent_underflowing_pair_is_exact_where_pml_caps_it() -> None:
    # t = 0.001; anchor and positive opposite (s_ap = -1), anchor and negative identical (s_an = 1):
    #   exact L = softplus((1 - (-1)) / 0.001) = 2000 (+ e^-2000); PML's ratio underflows to 0 and
    #   -log(0 + 1.18e-38) = 87.34 with no gradient
    embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # pairs: (0, 1) and (1, 0) with s = -1, each against its negative 2 at s = 1 (anchor 0) or -1 (anchor 1)
    #   (0, 1): softplus((1 + 1) / t) = 2000;   (1, 0): softplus((-1 + 1) / t) = log 2
    ours = build("ntxent", temperature=0.001)
    value, theirs, _, _ = values_and_grads(ours, EQUIVALENTS["ntxent"](ours), embeddings, labels)
    assert value.item() == pytest.approx((2000 + math.log(2)) / 2, rel=1e-6)
    tiny = torch.finfo(torch.float32).tiny
    assert theirs.item() == pytest.approx((-math.log(tiny) + math.log(2)) / 2, rel=1e-5)


def test_supcon_counts_solved_anchors_where_pml_default_drops_them() -> None:
    # t = 0.005, 2 classes x 2: class 0 twice at (1, 0); class 1 at (0, 1) and (0, -1)
    #   class-0 anchors: s_ap = 1, negatives at 0: L = log(1 + 2 e^-200) = 0 in float32 (solved)
    #   class-1 anchors: s_ap = -1, negatives at 0: L = -(-200) + log(e^-200 + 2) = 200 + log 2
    # ours: mean over the 4 anchors = (200 + log 2) / 2; PML default (AvgNonZeroReducer): over the 2
    # non-zero ones = 200 + log 2; PML with a MeanReducer (the equivalent): ours
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    ours = build("supcon", temperature=0.005)
    value = ours(embeddings, labels)
    assert value.item() == pytest.approx((200 + math.log(2)) / 2, rel=1e-6)
    assert EQUIVALENTS["supcon"](ours)(embeddings, labels).item() == pytest.approx(value.item(), rel=1e-6)
    pml_default = pml_losses.SupConLoss(temperature=0.005)(embeddings, labels)
    assert pml_default.item() == pytest.approx(200 + math.log(2), rel=1e-6)


def test_fastap_one_class_batch_is_exactly_zero() -> None:
    # no negatives: FastAP = 1 for every anchor; ours gives exactly 0, PML 1 - (histogram sum) ~ 0
    embeddings, _ = normalised_batch(4, 4)
    same = torch.zeros(16, dtype=torch.long)
    assert build("fastap")(embeddings, same).item() == 0.0
    assert abs(pml_losses.FastAPLoss()(embeddings, same).item()) < 1e-6


# --- hand-computed cases ------------------------------------------------------------------------------------

# unit vectors at 0, 60 (class 0) and 180, 90 degrees (class 1); cosines: cos(0, 60) = .5,
# cos(0, 180) = -1, cos(0, 90) = 0, cos(60, 180) = -.5, cos(60, 90) = cos 30, cos(180, 90) = 0
ANGLES = torch.tensor([0.0, 60.0, 180.0, 90.0], dtype=torch.float64).deg2rad()
CIRCLE = torch.stack([ANGLES.cos(), ANGLES.sin()], dim=1).float()
CIRCLE_LABELS = torch.tensor([0, 0, 1, 1])
C30 = math.cos(math.radians(30))


def test_hand_ntxent() -> None:
    # t = 0.5 (logits = 2 * cosine); pair (a, p): -log(e^{2 s_ap} / (e^{2 s_ap} + sum_n e^{2 s_an}))
    #   (0, 60):   s_ap = .5, negatives of 0:   -1, 0
    #   (60, 0):   s_ap = .5, negatives of 60:  -.5, cos 30
    #   (180, 90): s_ap = 0,  negatives of 180: -1, -.5
    #   (90, 180): s_ap = 0,  negatives of 90:  0, cos 30
    def term(s_ap: float, negatives: tuple[float, float]) -> float:
        return -math.log(math.exp(2 * s_ap) / (math.exp(2 * s_ap) + sum(math.exp(2 * s) for s in negatives)))

    expected = (term(.5, (-1, 0)) + term(.5, (-.5, C30)) + term(0, (-1, -.5)) + term(0, (0, C30))) / 4
    assert build("ntxent", temperature=0.5)(CIRCLE, CIRCLE_LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_hand_supcon() -> None:
    # t = 0.5; one positive per anchor, the denominator runs over all three others:
    #   0:   -log(e^{1} / (e^{1} + e^{-2} + e^{0}))
    #   60:  -log(e^{1} / (e^{1} + e^{-1} + e^{2 cos 30}))
    #   180: -log(e^{0} / (e^{0} + e^{-2} + e^{-1}))
    #   90:  -log(e^{0} / (e^{0} + e^{0} + e^{2 cos 30}))
    # with one positive each, SupCon coincides with NT-Xent here; mean over the 4 anchors
    e = math.exp
    expected = (-math.log(e(1) / (e(1) + e(-2) + e(0))) - math.log(e(1) / (e(1) + e(-1) + e(2 * C30)))
                - math.log(e(0) / (e(0) + e(-2) + e(-1))) - math.log(e(0) / (e(0) + e(0) + e(2 * C30)))) / 4
    assert build("supcon", temperature=0.5)(CIRCLE, CIRCLE_LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_hand_supcon_two_positives() -> None:
    # one class of three at 0, 0, 90 degrees and one negative at 180; t = 1. Anchor 90 (index 2):
    #   positives 0, 0 (s = 0 each), negative s = 0: log_prob = 0 - log 3 for each -> L = log 3
    # anchors 0 (index 0, 1): positives 0 (s = 1) and 90 (s = 0), negative s = -1; Z = e + 1 + e^-1:
    #   L = -((1 - log Z) + (0 - log Z)) / 2 = log Z - 1/2
    # the negative (index 3) has no positive and is left out: mean over 3 anchors
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    log_z = math.log(math.e + 1 + math.exp(-1))
    expected = (2 * (log_z - 0.5) + math.log(3)) / 3
    assert build("supcon", temperature=1.0)(embeddings, labels).item() == pytest.approx(expected, rel=1e-6)


def test_hand_n_pairs() -> None:
    # batch order: [c1 180deg, c0 0deg, c0 60deg, c0 270deg, c1 90deg]; per class the first sample is
    # the anchor, the second the positive (c0's third, at 270, is unused):
    #   anchors a0 = 0deg, a1 = 180deg; positives p0 = 60deg, p1 = 90deg
    #   a0: s(a0, p0) = .5, s(a0, p1) = 0    -> -.5 + log(e^.5 + e^0)
    #   a1: s(a1, p0) = -.5, s(a1, p1) = 0   -> -0 + log(e^-.5 + e^0)
    angles = torch.tensor([180.0, 0.0, 60.0, 270.0, 90.0], dtype=torch.float64).deg2rad()
    embeddings = torch.stack([angles.cos(), angles.sin()], dim=1).float()
    labels = torch.tensor([1, 0, 0, 0, 1])
    expected = ((-.5 + math.log(math.exp(.5) + 1)) + math.log(math.exp(-.5) + 1)) / 2
    assert build("n_pairs")(embeddings, labels).item() == pytest.approx(expected, rel=1e-6)
    assert pml_losses.NPairsLoss()(embeddings, labels).item() == pytest.approx(expected, rel=1e-6)


def test_hand_fastap_exact_bins() -> None:
    # num_bins 2: bin centres 0, 2, 4 (squared distance), delta 2. Class 0 at (1, 0), (-1, 0); class 1
    # at (0, 1), (0, -1). Every anchor: its positive opposite (d^2 = 4, bin 2), its two negatives at
    # 90 degrees (d^2 = 2, bin 1). h+ = [0, 0, 1], h- = [0, 2, 0]; H+ = [0, 0, 1], H = [0, 2, 3];
    # FastAP = (1 * 1 / 3) / 1 = 1/3 (the positive is ranked third) -> loss 2/3 for each anchor
    embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert build("fastap", num_bins=2)(embeddings, labels).item() == pytest.approx(2 / 3, rel=1e-6)


def test_hand_fastap_interpolated_bins() -> None:
    # num_bins 2 (centres 0, 2, 4; delta 2). Class 0 at 0 and 60 degrees, class 1 at 90 degrees.
    # d^2 = 2 - 2 cos: d^2(0, 60) = 1, d^2(0, 90) = 2, d^2(60, 90) = 2 - 2 cos 30 = u * delta.
    #   anchor 0:  positive d^2 1 -> h+ = [.5, .5, 0]; negative d^2 2 -> h- = [0, 1, 0]
    #              H+ = [.5, 1, 1], H = [.5, 2, 2]; FastAP = .5 * .5 / .5 + .5 * 1 / 2 = .75
    #   anchor 60: h+ = [.5, .5, 0]; negative at u = 1 - cos 30: h- = [1 - u, u, 0]
    #              H = [.5 + 1 - u, 2, 2]; FastAP = .25 / (1.5 - u) + .25
    #   anchor 90 has no positive: left out; mean over 2 anchors
    angles = torch.tensor([0.0, 60.0, 90.0], dtype=torch.float64).deg2rad()
    embeddings = torch.stack([angles.cos(), angles.sin()], dim=1).float()
    labels = torch.tensor([0, 0, 1])
    u = 1 - C30
    expected = ((1 - 0.75) + (1 - (0.25 / (1.5 - u) + 0.25))) / 2
    assert build("fastap", num_bins=2)(embeddings, labels).item() == pytest.approx(expected, rel=1e-5)
