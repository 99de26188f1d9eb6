"""The sentence-transformers losses of the zoo (losses/sentence.py) and ST's own classes by import path
(losses/sentence_transformers_adapter.py): equality with sentence-transformers, edge cases, identity."""

from __future__ import annotations

import itertools
import math
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution

import losses
import losses.sentence_transformers_adapter as adapter
from losses import LossError
from losses.sentence import _anchor_positive

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer import losses as st_losses

RANKING = {"multiple_negatives_ranking": "MultipleNegativesRankingLoss",
           "multiple_negatives_symmetric": "MultipleNegativesSymmetricRankingLoss"}
PAIRWISE = {"cosent": "CoSENTLoss", "angle": "AnglELoss", "online_contrastive": "OnlineContrastiveLoss"}
NAMES = {**RANKING, **PAIRWISE}
# non-default hyperparameters tried against ST, one per seed
SETTINGS = {name: [{}, {"scale": 5.0}, {"scale": 60.0}]
            for name in ("multiple_negatives_ranking", "multiple_negatives_symmetric", "cosent", "angle")}
SETTINGS["online_contrastive"] = [{}, {"margin": 1.0}, {"margin": 1.5}]
TRIPLET = {"batch_hard": "BatchHardTripletLoss", "batch_all": "BatchAllTripletLoss",
           "batch_semi_hard": "BatchSemiHardTripletLoss", "batch_hard_soft_margin": "BatchHardSoftMarginTripletLoss"}


def build(name: str, **hparams: object) -> torch.nn.Module:
    return losses.build(name, embedding_dim=16, num_classes=32, **hparams)


def normalised_batch(classes: int, per_class: int, dim: int = 16, seed: int = 0, dtype: torch.dtype = torch.float64
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(classes * per_class, dim, generator=generator, dtype=dtype), dim=1)
    labels = torch.arange(classes).repeat_interleave(per_class)
    order = torch.randperm(len(labels), generator=generator)  # classes need not be contiguous
    return embeddings[order], labels[order]


# --- ST fed as its trainer would be (written plainly, independently of losses/sentence.py) ---------------------


class Features(torch.nn.Module):
    """The model as ST's loss calls it: the features already hold the embeddings."""

    def forward(self, features: dict) -> dict:
        return features


def first_pairs(labels: torch.Tensor) -> tuple[list[int], list[int]]:
    """Each class's first and second items, the classes in order of first appearance."""
    items: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        items.setdefault(label, []).append(index)
    pairs = [found[:2] for found in items.values() if len(found) >= 2]
    return [a for a, _ in pairs], [p for _, p in pairs]


def st_loss(name: str, **hparams: object) -> torch.nn.Module:
    with warnings.catch_warnings():  # ST 6.3 deprecates its symmetric class for MNRL's options (tested equal below)
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(st_losses, NAMES[name])(Features(), **hparams)


def st_value(name: str, embeddings: torch.Tensor, labels: torch.Tensor, **hparams: object) -> torch.Tensor:
    loss = st_loss(name, **hparams)
    if name in RANKING:
        anchors, positives = first_pairs(labels)
        columns, scores = [embeddings[anchors], embeddings[positives]], None
    else:
        first, second = (list(side) for side in zip(*itertools.combinations(range(len(labels)), 2), strict=True))
        same = labels[first] == labels[second]
        columns = [embeddings[first], embeddings[second]]
        # OnlineContrastiveLoss takes labels 1 / 0, CoSENT and AnglE similarity scores 1.0 / 0.0
        scores = same.long() if name == "online_contrastive" else same.to(embeddings.dtype)
    return loss([{"sentence_embedding": column} for column in columns], scores)


def values_and_grads(first, second, embeddings: torch.Tensor, labels: torch.Tensor):
    one = embeddings.detach().clone().requires_grad_()
    two = embeddings.detach().clone().requires_grad_()
    first_value, second_value = first(one, labels), second(two, labels)
    first_value.backward()
    second_value.backward()
    return first_value.detach(), second_value.detach(), one.grad, two.grad


def assert_same_as_st(name: str, embeddings: torch.Tensor, labels: torch.Tensor, **hparams: object) -> None:
    ours = build(name, **hparams)
    value, theirs, grad, their_grad = values_and_grads(
        ours, lambda x, y: st_value(name, x, y, **hparams), embeddings, labels)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(theirs.item(), abs=1e-6, rel=1e-9)
    torch.testing.assert_close(grad, their_grad, atol=1e-6, rtol=1e-6)


# --- registration ------------------------------------------------------------------------------------------------


def test_registered_with_spaces_and_defaults() -> None:
    assert set(NAMES) <= set(losses.available())
    for name in ("multiple_negatives_ranking", "multiple_negatives_symmetric", "cosent", "angle"):
        assert losses.search_space(name) == {"scale": FloatDistribution(2.0, 200.0, log=True)}
        assert losses.info(name).defaults == {"scale": 20.0}  # ST's default
    assert losses.search_space("online_contrastive") == {"margin": FloatDistribution(0.0, 2.0)}
    assert losses.info("online_contrastive").defaults == {"margin": 0.5}  # ST's default
    for name in NAMES:  # ST's defaults are ours
        ours = losses.info(name).defaults
        theirs = st_loss(name)
        assert all(getattr(theirs, key) == value for key, value in ours.items()), name


# --- equality with sentence-transformers -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("classes", "per_class", "dim"), [(8, 4, 16), (16, 2, 7), (4, 8, 64), (12, 3, 33)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_sentence_transformers_on_class_balanced_batches(name: str, classes: int, per_class: int, dim: int,
                                                                  seed: int) -> None:
    embeddings, labels = normalised_batch(classes, per_class, dim, seed)
    assert_same_as_st(name, embeddings, labels, **SETTINGS[name][seed])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_sentence_transformers_with_uneven_classes_and_singletons(name: str, seed: int) -> None:
    # singletons: no pair of their own (ranking), only negative pairs (pairwise); embeddings not unit length
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(30, 16, generator=generator, dtype=torch.float64) * 3
    labels = torch.tensor([0] * 2 + [1] * 3 + [2] * 7 + [3] * 5 + [4] * 10 + [20, 21, 22])
    labels = labels[torch.randperm(30, generator=generator)]
    assert_same_as_st(name, embeddings, labels)


@pytest.mark.parametrize("name", NAMES)
def test_equal_to_sentence_transformers_in_float32(name: str) -> None:
    embeddings, labels = normalised_batch(8, 4, 32, seed=3, dtype=torch.float32)
    ours = build(name)
    value, theirs, grad, their_grad = values_and_grads(ours, lambda x, y: st_value(name, x, y), embeddings, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-5)
    torch.testing.assert_close(grad, their_grad, atol=1e-5, rtol=1e-4)


def test_symmetric_equals_st_mnrl_with_both_directions_per_direction() -> None:
    # ST 6.3.0 deprecates MultipleNegativesSymmetricRankingLoss for this configuration of MNRL; both are ours
    embeddings, labels = normalised_batch(8, 4, seed=4)
    anchors, positives = first_pairs(labels)
    mnrl = st_losses.MultipleNegativesRankingLoss(Features(), directions=("query_to_doc", "doc_to_query"),
                                                  partition_mode="per_direction")
    ours = build("multiple_negatives_symmetric")

    def theirs(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mnrl([{"sentence_embedding": x[anchors]}, {"sentence_embedding": x[positives]}], None)

    value, their_value, grad, their_grad = values_and_grads(ours, theirs, embeddings, labels)
    assert value.item() == pytest.approx(their_value.item(), abs=1e-12)
    torch.testing.assert_close(grad, their_grad, atol=1e-12, rtol=1e-9)


# --- pairs, degenerate batches, documented differences ----------------------------------------------------------


def test_ranking_pairs_are_first_and_second_items_in_order_of_first_appearance() -> None:
    labels = torch.tensor([7, 3, 9, 3, 7, 5, 7, 9, 3])  # 5 is a singleton
    anchors, positives = _anchor_positive(labels)
    assert anchors.tolist() == [0, 1, 2] and positives.tolist() == [4, 3, 7]
    assert (anchors.tolist(), positives.tolist()) == first_pairs(labels)


@pytest.mark.parametrize("name", RANKING)
def test_ranking_losses_use_only_each_class_first_two_items(name: str) -> None:
    embeddings, labels = normalised_batch(6, 4, seed=5)
    anchors, positives = first_pairs(labels)
    kept = torch.tensor(sorted(anchors + positives))
    full = build(name)(embeddings, labels)
    assert full.item() == pytest.approx(build(name)(embeddings[kept], labels[kept]).item(), abs=1e-12)
    x = embeddings.clone().requires_grad_()
    build(name)(x, labels).backward()
    unused = torch.ones(len(labels), dtype=torch.bool)
    unused[kept] = False
    assert x.grad[unused].abs().max() == 0 and x.grad[kept].abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_singleton_classes_only_are_zero_with_zero_gradient(name: str) -> None:
    embeddings, _ = normalised_batch(4, 4)
    x = embeddings.clone().requires_grad_()
    value = build(name)(x, torch.arange(16))  # every class a singleton: no pair (ranking), no positive (pairwise)
    assert value.item() == 0.0
    value.backward()
    assert x.grad is not None and x.grad.abs().max() == 0


@pytest.mark.parametrize("name", NAMES)
def test_one_class_is_zero_with_zero_gradient(name: str) -> None:
    # ranking: one pair, log 1 = 0; pairwise: no negative pair
    embeddings, _ = normalised_batch(4, 4)
    x = embeddings.clone().requires_grad_()
    value = build(name)(x, torch.zeros(16, dtype=torch.long))
    assert value.item() == 0.0
    value.backward()
    assert x.grad.abs().max() == 0


@pytest.mark.parametrize("name", ["cosent", "angle"])
def test_pairwise_ranking_losses_are_zero_like_sentence_transformers_without_negatives(name: str) -> None:
    embeddings, _ = normalised_batch(4, 4)
    same = torch.zeros(16, dtype=torch.long)
    assert st_value(name, embeddings, same).item() == 0.0 == build(name)(embeddings, same).item()


def test_documented_differences_from_sentence_transformers() -> None:
    embeddings, _ = normalised_batch(4, 4)
    # no pair at all: ST's ranking losses take the mean of nothing
    anchors = torch.tensor([[1.0, 0.0]], dtype=torch.float64)[:0]
    mnrl = st_losses.MultipleNegativesRankingLoss(Features())
    assert math.isnan(mnrl([{"sentence_embedding": anchors}, {"sentence_embedding": anchors}], None).item())
    assert build("multiple_negatives_ranking")(embeddings, torch.arange(16)).item() == 0.0
    # online contrastive without a negative (or a positive) pair: ST thresholds at the mean, a one-sided term
    for labels in (torch.zeros(16, dtype=torch.long), torch.arange(16)):
        assert st_value("online_contrastive", embeddings, labels).item() > 0
        assert build("online_contrastive")(embeddings, labels).item() == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_and_duplicates_are_finite(name: str) -> None:
    embeddings, labels = normalised_batch(8, 4)
    x = torch.cat([embeddings[:16], embeddings[:16]]).bfloat16().requires_grad_()
    value = build(name)(x, torch.cat([labels[:16], labels[:16]]))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(x.grad.float()).all()


def test_wrong_shapes_rejected() -> None:
    embeddings, labels = normalised_batch(4, 2)
    for name in NAMES:
        with pytest.raises(ValueError, match="labels"):
            build(name)(embeddings, labels[:-1])


# --- hand-computed cases --------------------------------------------------------------------------------------------

# Unit vectors at 0 and 60 degrees (class 0), 90 and 180 degrees (class 1): cosines
#   c01 = 1/2, c02 = 0, c03 = -1, c12 = sqrt3/2, c13 = -1/2, c23 = 0.
ANGLES = torch.tensor([0.0, 60.0, 90.0, 180.0], dtype=torch.float64).deg2rad()
CIRCLE = torch.stack([ANGLES.cos(), ANGLES.sin()], dim=1)
CIRCLE_LABELS = torch.tensor([0, 0, 1, 1])
S3 = math.sqrt(3) / 2


def test_hand_multiple_negatives_ranking() -> None:
    # pairs (0, 1) and (2, 3); scale 2: rows (anchors) 2 [c01, c03] = [1, -2] and 2 [c21, c23] = [sqrt3, 0]
    rows = (-math.log(math.exp(1) / (math.exp(1) + math.exp(-2))) - math.log(1 / (math.exp(2 * S3) + 1))) / 2
    assert build("multiple_negatives_ranking", scale=2.0)(CIRCLE, CIRCLE_LABELS).item() == pytest.approx(rows)
    # symmetric: columns (positives) 2 [c01, c21] = [1, sqrt3] and 2 [c03, c23] = [-2, 0] as well
    columns = (-math.log(math.exp(1) / (math.exp(1) + math.exp(2 * S3))) - math.log(1 / (math.exp(-2) + 1))) / 2
    assert build("multiple_negatives_symmetric", scale=2.0)(CIRCLE, CIRCLE_LABELS).item() == pytest.approx(
        (rows + columns) / 2)


def test_hand_cosent() -> None:
    # positives c01 = 1/2, c23 = 0; negatives c02 = 0, c03 = -1, c12 = sqrt3/2, c13 = -1/2; scale 2
    total = sum(math.exp(2 * (n - p)) for p in (0.5, 0.0) for n in (0.0, -1.0, S3, -0.5))
    assert build("cosent", scale=2.0)(CIRCLE, CIRCLE_LABELS).item() == pytest.approx(math.log1p(total))


def test_hand_online_contrastive() -> None:
    # distances 1 - c: positives d01 = 1/2, d23 = 1; negatives d02 = 1, d03 = 2, d12 = 1 - sqrt3/2, d13 = 3/2.
    # hard positives: d > min negative (1 - sqrt3/2): both; hard negatives: d < max positive (1): only d12.
    # margin 0.5: 1/4 + 1 + (0.5 - (1 - sqrt3/2))^2
    expected = 0.25 + 1.0 + (0.5 - (1 - S3)) ** 2
    assert build("online_contrastive")(CIRCLE, CIRCLE_LABELS).item() == pytest.approx(expected)


def test_online_contrastive_separated_batch_is_zero_with_zero_gradient() -> None:
    # every positive pair nearer than every negative pair: no hard pair at all
    points = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], dtype=torch.float64)
    x = points.requires_grad_()
    value = build("online_contrastive", margin=1.0)(x, CIRCLE_LABELS)
    value.backward()
    assert value.item() == 0.0 and x.grad.abs().max() == 0


# --- sentence-transformers' own classes by import path (Task B) ------------------------------------------------------

ST_PATH = "sentence_transformers.losses:{}"


@pytest.mark.parametrize("zoo_name", TRIPLET)
def test_st_class_by_import_path_has_its_zoo_loss_space_and_defaults(zoo_name: str) -> None:
    spec = ST_PATH.format(TRIPLET[zoo_name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        record = losses.info(spec)
    assert record.name == spec
    assert losses.search_space(spec) == losses.search_space(zoo_name)
    assert record.defaults == losses.info(zoo_name).defaults and record.paper == losses.info(zoo_name).paper


@pytest.mark.parametrize("zoo_name", TRIPLET)
@pytest.mark.parametrize(("classes", "per_class", "dim", "seed"), [(8, 4, 16, 0), (16, 2, 32, 1), (4, 8, 64, 2)])
def test_st_class_by_import_path_equals_its_zoo_loss(zoo_name: str, classes: int, per_class: int, dim: int,
                                                     seed: int) -> None:
    spec = ST_PATH.format(TRIPLET[zoo_name])
    hparams = {"margin": (0.05, 0.2, 0.7)[seed]} if losses.search_space(zoo_name) else {}
    theirs = build(spec, **hparams)
    assert type(theirs.loss) is getattr(st_losses, TRIPLET[zoo_name])  # ST's own class runs
    assert all(getattr(theirs, key) == value for key, value in hparams.items())
    embeddings, labels = normalised_batch(classes, per_class, dim, seed, dtype=torch.float32)
    value, zoo_value, grad, zoo_grad = values_and_grads(theirs, build(zoo_name, **hparams), embeddings, labels)
    assert value.item() == pytest.approx(zoo_value.item(), abs=1e-6, rel=0)
    torch.testing.assert_close(grad, zoo_grad, atol=1e-5, rtol=1e-4)


def test_st_batch_hard_by_import_path_runs_on_the_harness_embeddings() -> None:
    spec = ST_PATH.format("BatchHardTripletLoss")
    module = build(spec, margin=0.3)
    assert module.loss.triplet_margin == 0.3 and list(module.parameters()) == []
    embeddings, labels = normalised_batch(8, 4, dtype=torch.float32)
    expected = module.loss.batch_hard_triplet_loss(labels, embeddings)  # ST's per-batch method, no model call
    assert module(embeddings, labels).item() == expected.item()
    with pytest.raises(LossError, match=r"margin=5.0 is out of range; expected \[0.01, 1.0\]"):
        build(spec, margin=5.0)
    with pytest.raises(LossError, match="no hyperparameter distance_metric; accepted: margin"):
        build(spec, distance_metric=None)
    with pytest.raises(ValueError, match="labels"):
        module(embeddings, labels[:-1])


@pytest.mark.parametrize(("st_name", "zoo_name"), [("MultipleNegativesRankingLoss", "multiple_negatives_ranking"),
                                                    ("CoSENTLoss", "cosent"), ("OnlineContrastiveLoss",
                                                                               "online_contrastive")])
def test_st_pair_losses_by_import_path_are_refused_naming_the_zoo_loss(st_name: str, zoo_name: str) -> None:
    with pytest.raises(LossError, match=rf"scores \(anchor, positive, ...\) columns, not a labelled batch.*'{zoo_name}'"
                                        r".*run by import path: BatchAllTripletLoss, BatchHardSoftMarginTripletLoss"):
        losses.info(ST_PATH.format(st_name))


def test_other_st_losses_by_import_path_are_refused_naming_those_that_run() -> None:
    with pytest.raises(LossError, match="ContrastiveLoss is a sentence-transformers-style loss with no declared search "
                                        "space.*BatchHardTripletLoss, BatchSemiHardTripletLoss.*declare_loss"):
        losses.info(ST_PATH.format("ContrastiveLoss"))
    with pytest.raises(LossError, match="has no class Nope"):
        losses.info(ST_PATH.format("Nope"))


def _declared_st_subclass(tmp_path, factor: str = "1.0"):
    path = tmp_path / "wide_margin.py"
    path.write_text(textwrap.dedent(f'''\
        from optuna.distributions import FloatDistribution
        from sentence_transformers.sentence_transformer.losses import BatchHardTripletLoss

        from losses import declare_loss


        @declare_loss(space={{"margin": FloatDistribution(0.5, 4.0)}}, defaults={{"margin": 2.0}},
                      description="Batch-hard with a wide margin.", paper="Nobody. Tests. 2026")
        class WideMargin(BatchHardTripletLoss):
            def __init__(self, model=None, margin: float = 2.0) -> None:
                super().__init__(model, margin={factor} * margin)
        '''))
    return f"{path}:WideMargin"


def test_declared_st_style_class_runs_through_the_adapter_with_its_own_space(tmp_path) -> None:
    spec = _declared_st_subclass(tmp_path)
    record = losses.info(spec)
    assert record.space == {"margin": FloatDistribution(0.5, 4.0)} and record.defaults == {"margin": 2.0}
    module = build(spec)
    assert module.loss.triplet_margin == 2.0
    embeddings, labels = normalised_batch(8, 4, dtype=torch.float32)
    theirs = st_losses.BatchHardTripletLoss(None, margin=2.0).batch_hard_triplet_loss(labels, embeddings)
    assert module(embeddings, labels).item() == pytest.approx(theirs.item(), abs=1e-7)


def test_identity_of_an_st_class_covers_the_adapter_and_the_package_version(monkeypatch) -> None:
    spec = ST_PATH.format("BatchHardTripletLoss")
    first = losses.identity(spec)
    assert len(first) == 64 and first == losses.identity(spec)
    assert first not in {losses.identity("batch_hard"), losses.identity(ST_PATH.format("BatchAllTripletLoss"))}
    assert adapter._distribution("sentence_transformers.sentence_transformer.losses") == \
        f"sentence-transformers=={st.__version__}"
    monkeypatch.setattr(adapter, "_distribution", lambda name: "sentence-transformers==99.0.0")
    assert losses.identity(spec) != first  # another release of the package is another loss


def test_identity_of_a_declared_st_subclass_covers_its_own_file(tmp_path) -> None:
    spec = _declared_st_subclass(tmp_path)
    first = losses.identity(spec)
    assert first != losses.identity(ST_PATH.format("BatchHardTripletLoss"))
    (tmp_path / "wide_margin.py").write_text((tmp_path / "wide_margin.py").read_text() + "# a comment\n")
    assert losses.identity(spec) == first
    _declared_st_subclass(tmp_path, factor="0.5")
    assert losses.identity(spec) != first
