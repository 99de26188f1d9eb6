"""Softmax-family losses (normalized_softmax, cosface, arcface): equality with PML, hand cases at known angles."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution

import losses
import losses.softmax  # noqa: F401  (registers the family even before losses/__init__ imports it)
from benchmarks.pml_equivalents.softmax import EQUIVALENTS

NAMES = ["normalized_softmax", "cosface", "arcface"]
SQRT3 = math.sqrt(3.0)


def normalised_batch(classes: int, per_class: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(classes * per_class, dim, generator=generator), dim=1)
    labels = torch.arange(classes).repeat_interleave(per_class)
    order = torch.randperm(len(labels), generator=generator)
    return embeddings[order], labels[order]


def build(name: str, embedding_dim: int, num_classes: int, seed: int = 0, **hparams: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return losses.build(name, embedding_dim=embedding_dim, num_classes=num_classes, **hparams)


def value_and_grads(module: torch.nn.Module, embeddings: torch.Tensor, labels: torch.Tensor
                    ) -> tuple[float, torch.Tensor, torch.Tensor]:
    x = embeddings.detach().clone().requires_grad_()
    module.zero_grad()
    value = module(x, labels)
    value.backward()
    return value.item(), x.grad, module.W.grad.clone()


def assert_same_as_pml(ours: torch.nn.Module, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    name = next(n for n in NAMES if isinstance(ours, losses.info(n).cls))
    theirs = EQUIVALENTS[name](ours)
    assert torch.equal(theirs.W, ours.W)
    ours_value, ours_dx, ours_dw = value_and_grads(ours, embeddings, labels)
    theirs_value, theirs_dx, theirs_dw = value_and_grads(theirs, embeddings, labels)
    assert ours_value == pytest.approx(theirs_value, rel=1e-5, abs=1e-7)
    scale_x = theirs_dx.abs().max().item()
    scale_w = theirs_dw.abs().max().item()
    torch.testing.assert_close(ours_dx, theirs_dx, rtol=1e-4, atol=1e-5 * scale_x)
    torch.testing.assert_close(ours_dw, theirs_dw, rtol=1e-4, atol=1e-5 * scale_w)


# --- registration -------------------------------------------------------------------------------------


def test_spaces_and_defaults() -> None:
    loss_lr = FloatDistribution(1e-6, 1.0, log=True)
    assert losses.search_space("normalized_softmax") == {
        "loss_lr": loss_lr, "temperature": FloatDistribution(0.01, 100.0, log=True)}
    assert losses.search_space("cosface") == {
        "loss_lr": loss_lr, "margin": FloatDistribution(0.0, 1.0), "scale": FloatDistribution(0.01, 200.0)}
    assert losses.search_space("arcface") == {
        "loss_lr": loss_lr, "margin": FloatDistribution(0.0, 90.0), "scale": FloatDistribution(0.01, 200.0)}
    assert losses.info("normalized_softmax").defaults == {"temperature": 0.05}
    assert losses.info("cosface").defaults == {"margin": 0.35, "scale": 64.0}
    assert losses.info("arcface").defaults == {"margin": 28.6, "scale": 64.0}


def test_arcface_margin_is_stored_in_degrees() -> None:
    module = build("arcface", 4, 3, margin=60.0)
    assert module.margin == 60.0


@pytest.mark.parametrize("name", NAMES)
def test_weights_have_pml_layout_and_initialisation(name: str) -> None:
    # same seed, same draws: N(0, 1) into an [embedding_dim, num_classes] matrix, as PML's default init
    ours = build(name, 24, 10, seed=7)
    assert ours.W.shape == (24, 10)
    assert [n for n, _ in ours.named_parameters()] == ["W"]
    pml_class = type(EQUIVALENTS[name](ours))
    torch.manual_seed(7)
    theirs = pml_class(num_classes=10, embedding_size=24)
    assert torch.equal(ours.W, theirs.W)


def test_equivalents_leave_the_global_rng_alone() -> None:
    ours = build("cosface", 8, 4)
    torch.manual_seed(3)
    EQUIVALENTS["cosface"](ours)
    after = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(1))


# --- equality with pytorch-metric-learning ------------------------------------------------------------

CONFIGS = [(8, 4, 16), (16, 2, 32), (4, 8, 64), (32, 4, 128)]
HPARAMS = {
    "normalized_softmax": [{}, {"temperature": 0.01}, {"temperature": 1.0}, {"temperature": 100.0}],
    "cosface": [{}, {"margin": 0.0, "scale": 1.0}, {"margin": 1.0, "scale": 200.0}, {"margin": 0.1, "scale": 8.0}],
    "arcface": [{}, {"margin": 0.0, "scale": 1.0}, {"margin": 90.0, "scale": 16.0}, {"margin": 60.0, "scale": 200.0}],
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("classes", "per_class", "dim"), CONFIGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_pml_with_defaults(name: str, classes: int, per_class: int, dim: int, seed: int) -> None:
    embeddings, labels = normalised_batch(classes, per_class, dim, seed)
    # more classes in the weight matrix than in the batch, as in training
    ours = build(name, dim, classes + 5, seed=seed)
    assert_same_as_pml(ours, embeddings, labels)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", range(4))
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_pml_across_the_space(name: str, case: int, seed: int) -> None:
    embeddings, labels = normalised_batch(8, 4, 16, seed)
    ours = build(name, 16, 8, seed=seed, **HPARAMS[name][case])
    assert_same_as_pml(ours, embeddings, labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arcface_equal_to_pml_on_both_sides_of_the_fallback(seed: int) -> None:
    # margin 80 deg: the fallback applies where theta > 100 deg; in 8-D random vectors reach that often
    embeddings, labels = normalised_batch(8, 8, 8, seed)
    ours = build("arcface", 8, 8, seed=seed, margin=80.0, scale=4.0)
    cos_t = (F.normalize(embeddings, dim=1) @ F.normalize(ours.W.detach(), dim=0)).gather(1, labels[:, None])
    theta = torch.rad2deg(torch.acos(cos_t))
    assert (theta > 100).any() and (theta < 100).any()
    assert_same_as_pml(ours, embeddings, labels)


def test_unnormalised_embeddings_are_normalised_as_pml_does() -> None:
    embeddings, labels = normalised_batch(8, 4, 16, 0)
    embeddings = embeddings * torch.linspace(0.5, 3.0, 32)[:, None]
    for name in NAMES:
        assert_same_as_pml(build(name, 16, 8), embeddings, labels)


# --- arcface at |cos| = 1 ----------------------------------------------------------------------------------


def test_arcface_gradient_at_cosine_one_is_finite_and_as_pml() -> None:
    # the first embedding lies exactly on its class weight: cos = 1, theta = 0, where acos'(1) is
    # infinite; ours passes no gradient through that cosine, as PML does (torch's clamp passes none at
    # its bounds). The second (theta = 90 deg to class 2) is an ordinary sample.
    ours = build("arcface", 2, 3, margin=60.0, scale=1.0)
    with torch.no_grad():
        ours.W.copy_(torch.tensor([[3.0, 0.0, -2.0], [0.0, 0.5, 0.0]]))
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 2])
    theirs = EQUIVALENTS["arcface"](ours)
    ours_value, ours_dx, ours_dw = value_and_grads(ours, embeddings, labels)
    theirs_value, theirs_dx, theirs_dw = value_and_grads(theirs, embeddings, labels)
    assert ours_value == pytest.approx(theirs_value, rel=1e-6)
    assert torch.isfinite(ours_dx).all() and torch.isfinite(ours_dw).all()
    torch.testing.assert_close(ours_dx, theirs_dx)
    torch.testing.assert_close(ours_dw, theirs_dw)


# --- hand-computed cases at known angles ---------------------------------------------------------------
#
# 2-D class weights, deliberately not unit length (the loss normalises them):
#   class 0 at 0 deg (3, 0), class 1 at 90 deg (0, 0.5), class 2 at 180 deg (-2, 0).
HAND_W = torch.tensor([[3.0, 0.0, -2.0], [0.0, 0.5, 0.0]])


def at(*degrees: float) -> torch.Tensor:
    angles = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([angles.cos(), angles.sin()], dim=1).float()


def hand_loss(name: str, embeddings: torch.Tensor, labels: list[int], **hparams: object) -> float:
    module = build(name, 2, 3, **hparams)
    with torch.no_grad():
        module.W.copy_(HAND_W)
    return module(embeddings, torch.tensor(labels)).item()


def cross_entropy(logits: list[float], target: int) -> float:
    return math.log(sum(math.exp(z) for z in logits)) - logits[target]


def test_hand_normalized_softmax() -> None:
    # temperature 0.5, logits = cos / 0.5 = 2 cos
    #   x at 30 deg, label 0: angles 30, 60, 150 -> cos sqrt3/2, 1/2, -sqrt3/2 -> logits sqrt3, 1, -sqrt3
    #     CE = log(e^sqrt3 + e + e^-sqrt3) - sqrt3
    #   x at 120 deg, label 1: angles 120, 30, 60 -> cos -1/2, sqrt3/2, 1/2 -> logits -1, sqrt3, 1
    #     CE = log(e^-1 + e^sqrt3 + e) - sqrt3
    # mean over the two samples
    first = math.log(math.exp(SQRT3) + math.e + math.exp(-SQRT3)) - SQRT3
    second = math.log(math.exp(-1) + math.exp(SQRT3) + math.e) - SQRT3
    assert first == pytest.approx(cross_entropy([SQRT3, 1.0, -SQRT3], 0))
    value = hand_loss("normalized_softmax", at(30.0, 120.0), [0, 1], temperature=0.5)
    assert value == pytest.approx((first + second) / 2, abs=1e-6)


def test_hand_cosface() -> None:
    # scale 2, margin 0.35; x at 30 deg, label 0: cos sqrt3/2, 1/2, -sqrt3/2
    #   target logit 2 (sqrt3/2 - 0.35) = sqrt3 - 0.7; others 2 * 1/2 = 1 and -sqrt3
    #   CE = log(e^(sqrt3 - 0.7) + e + e^-sqrt3) - (sqrt3 - 0.7)
    expected = math.log(math.exp(SQRT3 - 0.7) + math.e + math.exp(-SQRT3)) - (SQRT3 - 0.7)
    assert hand_loss("cosface", at(30.0), [0], margin=0.35, scale=2.0) == pytest.approx(expected, abs=1e-6)
    # margin 0 is the scaled softmax: logits sqrt3, 1, -sqrt3, as normalized_softmax at temperature 1/2
    plain = math.log(math.exp(SQRT3) + math.e + math.exp(-SQRT3)) - SQRT3
    assert hand_loss("cosface", at(30.0), [0], margin=0.0, scale=2.0) == pytest.approx(plain, abs=1e-6)


def test_hand_arcface() -> None:
    # scale 2, margin 30 deg; x at 30 deg, label 0: theta = 30 deg <= 180 - 30
    #   target logit 2 cos(30 + 30) = 2 * 1/2 = 1; others 2 cos 60 = 1 and 2 cos 150 = -sqrt3
    #   CE = log(e + e + e^-sqrt3) - 1 = log(2 + e^(-1 - sqrt3))
    expected = math.log(2 + math.exp(-1 - SQRT3))
    assert hand_loss("arcface", at(30.0), [0], margin=30.0, scale=2.0) == pytest.approx(expected, abs=1e-6)
    # x at 120 deg, label 1: theta = 30 deg again -> target 2 cos 60 = 1; others 2 cos 120 = -1, 2 cos 60 = 1
    #   CE = log(e^-1 + e + e) - 1
    second = math.log(math.exp(-1) + 2 * math.e) - 1
    value = hand_loss("arcface", at(30.0, 120.0), [0, 1], margin=30.0, scale=2.0)
    assert value == pytest.approx((expected + second) / 2, abs=1e-6)


def test_hand_arcface_at_zero_angle() -> None:
    # scale 1, margin 60 deg; x at 0 deg exactly on class 0: theta = 0 -> target cos 60 = 1/2;
    # others cos 90 = 0, cos 180 = -1. CE = log(e^(1/2) + 1 + e^-1) - 1/2
    expected = math.log(math.exp(0.5) + 1 + math.exp(-1)) - 0.5
    assert hand_loss("arcface", at(0.0), [0], margin=60.0, scale=1.0) == pytest.approx(expected, abs=1e-6)


def test_hand_arcface_beyond_pi_minus_margin() -> None:
    # scale 1, margin 60 deg = pi/3; x at 150 deg, label 0: theta = 150 deg > 180 - 60, so PML's
    # fallback: target cos 150 - (pi/3) sin 60 = -sqrt3/2 - (pi/3)(sqrt3/2) (not cos 210 = -sqrt3/2,
    # which would reward moving away). Others: class 1 at 60 deg -> 1/2, class 2 at 30 deg -> sqrt3/2.
    target = -SQRT3 / 2 - (math.pi / 3) * (SQRT3 / 2)
    expected = cross_entropy([target, 0.5, SQRT3 / 2], 0)
    assert hand_loss("arcface", at(150.0), [0], margin=60.0, scale=1.0) == pytest.approx(expected, abs=1e-6)
    # x at 180 deg, label 0 (theta = pi, cos = -1 exactly): target -1 - (pi/3)(sqrt3/2); others 0, 1
    target = -1 - (math.pi / 3) * (SQRT3 / 2)
    expected = cross_entropy([target, 0.0, 1.0], 0)
    assert hand_loss("arcface", at(180.0), [0], margin=60.0, scale=1.0) == pytest.approx(expected, abs=1e-6)


def test_hand_arcface_margin_90_degrees() -> None:
    # scale 1, margin 90 deg; x at 60 deg, label 0: theta = 60 <= 90 -> target cos 150 = -sqrt3/2;
    # others cos 30 = sqrt3/2 (class 1 at 90), cos 120 = -1/2 (class 2 at 180)
    expected = cross_entropy([-SQRT3 / 2, SQRT3 / 2, -0.5], 0)
    assert hand_loss("arcface", at(60.0), [0], margin=90.0, scale=1.0) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_hand_weights_are_normalised(name: str) -> None:
    # scaling a class weight changes nothing: cosines only
    base = hand_loss(name, at(30.0, 120.0), [0, 1])
    module = build(name, 2, 3)
    with torch.no_grad():
        module.W.copy_(HAND_W * torch.tensor([[0.1, 7.0, 1.0]]))
    assert module(at(30.0, 120.0), torch.tensor([0, 1])).item() == pytest.approx(base, rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_labels_must_match_the_batch(name: str) -> None:
    with pytest.raises(ValueError, match="labels"):
        build(name, 2, 3)(at(30.0, 120.0), torch.tensor([0]))
