"""Proxy-family losses: equality with pytorch-metric-learning (PML), the documented difference, hand cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import losses
import losses.proxy  # noqa: F401  (registers the family, whether or not losses/__init__ imports it yet)
from benchmarks.pml_equivalents.proxy import EQUIVALENTS
from losses.proxy import PerClassMarginLoss, ProxyAnchorLoss, ProxyNCALoss, SoftTripleLoss

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")

NAMES = ["proxy_nca", "proxy_anchor", "margin", "margin_per_class", "soft_triple"]
# (ours, PML's) name of the learnable parameter
PARAMETER = {
    "proxy_nca": ("proxies", "proxies"),
    "proxy_anchor": ("proxies", "proxies"),
    "margin": ("learned_beta", "beta"),
    "margin_per_class": ("learned_beta", "beta"),
    "soft_triple": ("centers", "fc"),
}
# three settings per loss, default first
HPARAMS = {
    "proxy_nca": [{}, {"softmax_scale": 0.05}, {"softmax_scale": 8.0}],
    "proxy_anchor": [{}, {"margin": 0.0, "alpha": 3.2}, {"margin": 0.7, "alpha": 320.0}],
    "margin": [{}, {"margin": -0.2, "beta": 0.3}, {"margin": 1.5, "beta": 2.0}],
    "margin_per_class": [{}, {"margin": -0.2, "beta": 0.3}, {"margin": 1.5, "beta": 2.0}],
    "soft_triple": [{}, {"la": 100.0, "gamma": 0.01, "reg_weight": 1.0, "margin": 1.0},
                    {"la": 0.5, "gamma": 50.0, "reg_weight": 0.0, "margin": 0.0}],
}
NUM_CLASSES = 40


def batch(classes: int, per_class: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised embeddings of `classes` random labels out of NUM_CLASSES, shuffled."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(classes * per_class, dim, generator=generator), dim=1)
    chosen = torch.randperm(NUM_CLASSES, generator=generator)[:classes]
    labels = chosen.repeat_interleave(per_class)
    order = torch.randperm(len(labels), generator=generator)
    return embeddings[order], labels[order]


def build_pair(name: str, dim: int, seed: int, **hparams: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Ours (with its β moved off the initial value, so the copy matters) and PML's, parameters equal."""
    torch.manual_seed(seed)
    ours = losses.build(name, embedding_dim=dim, num_classes=NUM_CLASSES, **hparams)
    if name.startswith("margin"):
        with torch.no_grad():
            ours.learned_beta.add_(0.1 * torch.randn(ours.learned_beta.shape))
    return ours, EQUIVALENTS[name](ours)


def assert_same_as_pml(ours: torch.nn.Module, theirs: torch.nn.Module, name: str,
                       embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    ours_in = embeddings.clone().requires_grad_()
    theirs_in = embeddings.clone().requires_grad_()
    ours_value, theirs_value = ours(ours_in, labels), theirs(theirs_in, labels)
    assert ours_value.item() == pytest.approx(theirs_value.item(), rel=1e-5, abs=1e-7)
    ours_value.backward()
    theirs_value.backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, rtol=1e-4, atol=1e-6)
    ours_key, theirs_key = PARAMETER[name]
    ours_param, theirs_param = getattr(ours, ours_key), getattr(theirs, theirs_key)
    torch.testing.assert_close(ours_param.grad, theirs_param.grad, rtol=1e-4, atol=1e-6)


def test_the_five_losses_are_registered_with_their_spaces() -> None:
    assert set(NAMES) <= set(losses.available())
    assert set(EQUIVALENTS) == set(NAMES)
    for name in NAMES:
        space = losses.search_space(name)
        assert space["loss_lr"].low == 1e-6 and space["loss_lr"].high == 1.0 and space["loss_lr"].log
    assert losses.info("proxy_nca").defaults == {"softmax_scale": 1.0}
    assert losses.info("proxy_anchor").defaults == {"margin": 0.1, "alpha": 32.0}
    assert losses.info("margin").defaults == losses.info("margin_per_class").defaults == {"margin": 0.2, "beta": 1.2}
    assert losses.info("soft_triple").defaults == {"la": 20.0, "gamma": 0.1, "reg_weight": 0.2, "margin": 0.01}


# --- equality with PML ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("setting", [0, 1, 2])
@pytest.mark.parametrize(("classes", "per_class", "dim"), [(8, 4, 16), (16, 2, 32), (4, 8, 128)])
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_pml(name: str, setting: int, classes: int, per_class: int, dim: int, seed: int) -> None:
    ours, theirs = build_pair(name, dim, seed, **HPARAMS[name][setting])
    embeddings, labels = batch(classes, per_class, dim, seed)
    assert_same_as_pml(ours, theirs, name, embeddings, labels)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_pml_with_uneven_classes_and_singletons(name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(30, 24, generator=generator), dim=1)
    labels = torch.tensor([3] * 2 + [7] * 5 + [0] * 9 + [11] * 11 + [20, 21, 39])  # three singletons
    ours, theirs = build_pair(name, 24, seed)
    assert_same_as_pml(ours, theirs, name, embeddings, labels)


@pytest.mark.parametrize("centers_per_class", [2, 3])
def test_soft_triple_equal_to_pml_with_other_center_counts(centers_per_class: int) -> None:
    torch.manual_seed(0)
    ours = SoftTripleLoss(embedding_dim=16, num_classes=NUM_CLASSES, centers_per_class=centers_per_class)
    theirs = EQUIVALENTS["soft_triple"](ours)
    assert theirs.fc.shape == (16, NUM_CLASSES * centers_per_class)
    assert_same_as_pml(ours, theirs, "soft_triple", *batch(8, 4, 16, 0))


@pytest.mark.parametrize("name", ["proxy_nca", "proxy_anchor", "soft_triple"])
def test_initial_parameters_are_pmls_under_the_same_seed(name: str) -> None:
    torch.manual_seed(3)
    ours = losses.build(name, embedding_dim=16, num_classes=NUM_CLASSES)
    torch.manual_seed(3)
    pml_class = {"proxy_nca": pml_losses.ProxyNCALoss, "proxy_anchor": pml_losses.ProxyAnchorLoss,
                 "soft_triple": pml_losses.SoftTripleLoss}[name]
    theirs = pml_class(num_classes=NUM_CLASSES, embedding_size=16)
    ours_key, theirs_key = PARAMETER[name]
    assert torch.equal(getattr(ours, ours_key), getattr(theirs, theirs_key))
    # the same seed gives the same parameters again, however much the global RNG was used since
    torch.rand(100)
    again = losses.build(name, embedding_dim=16, num_classes=NUM_CLASSES)
    assert torch.equal(getattr(again, ours_key), getattr(ours, ours_key))


def test_margin_beta_shapes_and_initial_values() -> None:
    single = losses.build("margin", embedding_dim=16, num_classes=NUM_CLASSES, beta=0.7)
    per_class = losses.build("margin_per_class", embedding_dim=16, num_classes=NUM_CLASSES, beta=0.7)
    assert single.beta == per_class.beta == 0.7
    assert single.learned_beta.shape == (1,) and per_class.learned_beta.shape == (NUM_CLASSES,)
    assert torch.all(per_class.learned_beta == torch.tensor(0.7))
    assert [name for name, _ in per_class.named_parameters()] == ["learned_beta"]


def test_margin_per_class_gives_gradient_only_to_classes_in_the_batch() -> None:
    embeddings, labels = batch(8, 4, 16, 0)
    module = losses.build("margin_per_class", embedding_dim=16, num_classes=NUM_CLASSES)
    module(embeddings, labels).backward()
    present = torch.zeros(NUM_CLASSES, dtype=torch.bool)
    present[labels] = True
    assert torch.all(module.learned_beta.grad[~present] == 0)
    assert torch.all(module.learned_beta.grad[present] != 0)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_keeps_float32(name: str) -> None:
    embeddings, labels = batch(8, 4, 16, 0)
    torch.manual_seed(0)
    module = losses.build(name, embedding_dim=16, num_classes=NUM_CLASSES)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = module(embeddings, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(module(embeddings, labels).item(), rel=1e-6)


# --- the documented difference: ProxyNCA when the positive probability underflows ---------------------


def test_proxy_nca_keeps_samples_whose_probability_underflows_where_pml_drops_them() -> None:
    # proxies e0 (class 0) and -e0 (class 1); sample 0 sits on class 1's proxy but is labelled 0:
    # d²_pos = 4, d²_neg = 0, so p = 1 / (1 + e^{400}) at scale 100, 0 in float32. Sample 1 is easy.
    module = ProxyNCALoss(embedding_dim=2, num_classes=2, softmax_scale=100.0)
    with torch.no_grad():
        module.proxies.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    embeddings = torch.tensor([[-1.0, 0.0], [0.6, 0.8]])
    labels = torch.tensor([0, 0])
    # sample 1: d² to e0 = 2 - 2(0.6) = 0.8, to -e0 = 3.2: L = log(1 + e^{-100 (3.2 - 0.8)})
    hard, easy = 400.0 + math.log1p(math.exp(-400.0)), math.log1p(math.exp(-240.0))
    assert module(embeddings, labels).item() == pytest.approx((hard + easy) / 2, rel=1e-6)
    # PML: the underflowed sample is dropped, its mean is over sample 1 alone (here ~0)
    theirs = EQUIVALENTS["proxy_nca"](module)
    assert theirs(embeddings, labels).item() == pytest.approx(easy, abs=1e-6)


# --- hand-computed cases ------------------------------------------------------------------------------

# unit points on the axes: x, y, -x, -y
AXES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])


def test_hand_proxy_nca() -> None:
    # proxies p0 = x, p1 = y; scale 1. Sample x (class 0): d² = 0 to p0, 2 to p1 -> log(1 + e^-2).
    # Sample y (class 0): d² = 2 to p0, 0 to p1 -> -log(e^-2 / (e^-2 + 1)) = 2 + log(1 + e^-2).
    # mean = 1 + log(1 + e^-2)
    module = losses.build("proxy_nca", embedding_dim=2, num_classes=2)
    with torch.no_grad():
        module.proxies.copy_(AXES[:2] * 3.0)  # proxies are normalised: their length does not matter
    value = module(AXES[:2], torch.tensor([0, 0]))
    assert value.item() == pytest.approx(1 + math.log1p(math.exp(-2)), rel=1e-6)


def test_hand_proxy_anchor() -> None:
    # proxies p0 = x, p1 = y, p2 = -x; alpha 2, margin 0.5; samples x (class 0) and y (class 1).
    # cos: x -> (1, 0, -1), y -> (0, 1, 0).
    # positive part, over the 2 proxies with samples: p0, p1 each log(1 + e^{-2(1 - .5)}) = log(1 + e^-1)
    # negative part, over all 3 proxies: p0 (y, cos 0): log(1 + e^{2(0 + .5)}) = log(1 + e);
    #   p1 (x, cos 0): log(1 + e); p2 (x cos -1, y cos 0): log(1 + e^{2(-1 + .5)} + e^{2(.5)}) = log(1 + e^-1 + e)
    module = ProxyAnchorLoss(embedding_dim=2, num_classes=3, margin=0.5, alpha=2.0)  # alpha below the space
    with torch.no_grad():
        module.proxies.copy_(AXES[:3])
    e = math.e
    expected = math.log(1 + 1 / e) + (2 * math.log(1 + e) + math.log(1 + 1 / e + e)) / 3
    assert module(AXES[:2], torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-6)


def test_hand_margin() -> None:
    # x, y class 0; -x, -y class 1. Every anchor: one positive at √2, negatives at 2 and √2, so two
    # triplets. beta 1.5, margin 0.2: pos relu(√2 - 1.3) > 0 in both triplets; neg relu(1.7 - 2) = 0,
    # relu(1.7 - √2) > 0. Per anchor sum 2(√2 - 1.3) + (1.7 - √2) = √2 - 0.9 from 3 non-zero terms;
    # loss = 4(√2 - 0.9) / 12. d loss / d beta = 4 (-1 - 1 + 1) / 12 = -1/3.
    module = losses.build("margin", embedding_dim=2, num_classes=2, margin=0.2, beta=1.5)
    value = module(AXES, torch.tensor([0, 0, 1, 1]))
    assert value.item() == pytest.approx((math.sqrt(2) - 0.9) / 3, rel=1e-6)
    value.backward()
    assert module.learned_beta.grad.item() == pytest.approx(-1 / 3, rel=1e-6)


def test_hand_margin_per_class() -> None:
    # as test_hand_margin, but class 1 has beta 1.2: its anchors give pos relu(√2 - 1.0) > 0 twice and
    # neg relu(1.4 - 2) = relu(1.4 - √2) = 0: 2(√2 - 1) from 2 terms. Class-0 anchors as before.
    # loss = (2(√2 - 0.9) + 4(√2 - 1)) / (6 + 4); d/d beta0 = 2(-1) / 10, d/d beta1 = 2(-2) / 10
    module = PerClassMarginLoss(num_classes=3, margin=0.2, beta=1.5)
    with torch.no_grad():
        module.learned_beta[1] = 1.2
    value = module(AXES, torch.tensor([0, 0, 1, 1]))
    assert value.item() == pytest.approx((6 * math.sqrt(2) - 5.8) / 10, rel=1e-6)
    value.backward()
    torch.testing.assert_close(module.learned_beta.grad, torch.tensor([-0.2, -0.4, 0.0]))


def test_hand_soft_triple() -> None:
    # 2 centres per class: class 0 at x, y; class 1 at -x, -y (columns of `centers`). Sample x, class 0,
    # gamma 1, la 1, margin 0.5. Similarities: class 0 (1, 0), class 1 (-1, 0).
    #   S0 = (e·1 + 1·0) / (e + 1) = e / (e + 1);  S1 = (1·(-1) + e·0) / (1 + e) = -1 / (e + 1)
    #   CE = log(1 + exp(S1 - (S0 - 0.5))) = log(1 + e^{-0.5})   (S1 - S0 = -1)
    # regulariser: each class's pair is orthogonal: sqrt(2 - 0) twice, over C K (K - 1) = 4 -> √2 / 2
    module = SoftTripleLoss(embedding_dim=2, num_classes=2, la=1.0, gamma=1.0, reg_weight=0.2, margin=0.5,
                            centers_per_class=2)
    with torch.no_grad():
        module.centers.copy_(AXES.T)
    value = module(AXES[:1], torch.tensor([0]))
    assert value.item() == pytest.approx(math.log1p(math.exp(-0.5)) + 0.2 * math.sqrt(2) / 2, rel=1e-6)
