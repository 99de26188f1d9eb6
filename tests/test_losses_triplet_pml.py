"""Batch triplet losses against pytorch-metric-learning configured alike, and the pinned reducer difference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losses
from benchmarks.pml_equivalents.triplet import EQUIVALENTS, MinedLoss, euclidean

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
from pytorch_metric_learning import miners, reducers  # noqa: E402  (after the importorskip)

NAMES = ("batch_all", "batch_hard", "batch_hard_soft_margin")


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


def hparams_for(name: str, margin: float) -> dict[str, float]:
    return {"margin": margin} if "margin" in losses.search_space(name) else {}


def test_every_pml_expressible_triplet_loss_has_an_equivalent() -> None:
    assert set(EQUIVALENTS) == set(NAMES)
    assert "batch_semi_hard" not in EQUIVALENTS  # FaceNet's per-pair rule: see the module docstring


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("classes", "per_class", "dim", "spread"),
                         [(8, 4, 16, 0.0), (16, 2, 8, 1.0), (4, 8, 64, 0.5), (32, 4, 128, 2.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_pml_on_class_balanced_batches(name: str, classes: int, per_class: int, dim: int, spread: float,
                                                seed: int) -> None:
    embeddings, labels = normalised_batch(classes, per_class, dim, seed, spread)
    ours = build(name, **hparams_for(name, (0.05, 0.2, 1.0)[seed]))
    value, grad = value_and_grad(ours, embeddings, labels)
    theirs, their_grad = value_and_grad(EQUIVALENTS[name](ours), embeddings, labels)
    assert value.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-7)
    torch.testing.assert_close(grad, their_grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_pml_with_uneven_classes_and_singletons(name: str, seed: int) -> None:
    # the miner drops anchors without a positive, as ours leaves them out
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(27, 16, generator=generator), dim=1)
    labels = torch.tensor([0] * 2 + [1] * 3 + [2] * 4 + [3] * 7 + [4] * 8 + [5, 6, 7])
    ours = build(name, **hparams_for(name, 0.5))
    value, grad = value_and_grad(ours, embeddings, labels)
    theirs, their_grad = value_and_grad(EQUIVALENTS[name](ours), embeddings, labels)
    assert value.item() == pytest.approx(theirs.item(), rel=1e-5)
    torch.testing.assert_close(grad, their_grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("labelling", ["all_distinct", "all_equal"])
def test_pml_equivalent_gives_zero_without_valid_triplets(name: str, labelling: str) -> None:
    embeddings, _ = normalised_batch(8, 4)
    labels = torch.arange(32) if labelling == "all_distinct" else torch.zeros(32, dtype=torch.long)
    ours = build(name)
    assert ours(embeddings, labels).item() == 0.0
    assert EQUIVALENTS[name](ours)(embeddings, labels).item() == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_reducer_difference_from_pml_default(seed: int) -> None:
    # PML's default TripletMarginLoss + BatchHardMiner reduces with AvgNonZeroReducer (mean over the
    # anchors whose hinge is > 0); ours averages over all anchors, as Hermans et al. Clustered batches
    # so that some anchors are already satisfied and the two differ.
    embeddings, labels = normalised_batch(8, 4, 16, seed, spread=1.5)
    ours = build("batch_hard", margin=0.2)
    # per-anchor hinge terms re-computed explicitly from our distances
    distances = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    hardest_positive = distances.where(same & ~torch.eye(32, dtype=torch.bool), 0.0).max(dim=1).values
    hardest_negative = distances.where(~same, torch.inf).min(dim=1).values
    terms = F.relu(hardest_positive - hardest_negative + 0.2)
    active = int((terms > 0).sum())
    assert 0 < active < 32

    value = ours(embeddings, labels).item()
    pml_mean = EQUIVALENTS["batch_hard"](ours)(embeddings, labels).item()
    pml_default = MinedLoss(miners.BatchHardMiner(), pml_losses.TripletMarginLoss(margin=0.2))(embeddings, labels)
    assert value == pytest.approx(terms.mean().item(), rel=1e-5)
    assert value == pytest.approx(pml_mean, rel=1e-5)
    assert pml_default.item() == pytest.approx(terms.sum().item() / active, rel=1e-5)
    assert pml_default.item() == pytest.approx(value * 32 / active, rel=1e-5)


def test_hand_line_batch_hard_through_pml() -> None:
    # points on a line 0, 1 (class 0), 3, 6 (class 1), margin 0.5: only anchor 3 violates, with 1.5
    # (see tests/test_losses.py::test_hand_batch_hard). Ours and PML with MeanReducer: 1.5 / 4 anchors;
    # PML's default AvgNonZeroReducer: 1.5 / 1 non-zero anchor.
    line, line_labels = torch.tensor([[0.0], [1.0], [3.0], [6.0]]), torch.tensor([0, 0, 1, 1])
    ours = build("batch_hard", margin=0.5)
    assert ours(line, line_labels).item() == 0.375
    assert EQUIVALENTS["batch_hard"](ours)(line, line_labels).item() == pytest.approx(0.375)
    avg_nonzero = MinedLoss(miners.BatchHardMiner(distance=euclidean()),
                            pml_losses.TripletMarginLoss(margin=0.5, distance=euclidean(),
                                                         reducer=reducers.AvgNonZeroReducer()))
    assert avg_nonzero(line, line_labels).item() == pytest.approx(1.5)


def test_pml_default_distance_normalises_so_only_unit_vectors_agree() -> None:
    # ours and the equivalent take embeddings as given; PML's default LpDistance would normalise first
    embeddings, labels = normalised_batch(8, 4)
    ours = build("batch_all", margin=0.2)
    default = pml_losses.TripletMarginLoss(margin=0.2)
    assert ours(embeddings, labels).item() == pytest.approx(default(embeddings, labels).item(), rel=1e-5)
    scaled = embeddings * 3.0
    assert ours(scaled, labels).item() == pytest.approx(EQUIVALENTS["batch_all"](ours)(scaled, labels).item(),
                                                        rel=1e-5)
    assert ours(scaled, labels).item() != pytest.approx(default(scaled, labels).item(), rel=1e-3)
