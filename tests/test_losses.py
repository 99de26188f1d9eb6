"""Loss registry and the batch triplet losses: contract, equality with sentence-transformers, hand cases."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
import torch.nn.functional as F
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

import losses
import losses.registry
from benchmarks.st_equivalents import st_equivalents
from losses import LossError

LOSSES = losses.available()
TRIPLET_LOSSES = ["batch_all", "batch_hard", "batch_hard_soft_margin", "batch_semi_hard"]
ENDPOINTS = [(name, key, end) for name in LOSSES for key in losses.search_space(name)
             for end in ("low", "high")]
RANGED = [(name, key) for name in LOSSES for key, dist in losses.search_space(name).items()
          if isinstance(dist, FloatDistribution | IntDistribution)]


def normalised_batch(classes: int, per_class: int, dim: int = 16, seed: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(classes * per_class, dim, generator=generator), dim=1)
    labels = torch.arange(classes).repeat_interleave(per_class)
    order = torch.randperm(len(labels), generator=generator)  # classes need not be contiguous
    return embeddings[order].requires_grad_(), labels[order]


def build(name: str, **hparams: object) -> torch.nn.Module:
    return losses.build(name, embedding_dim=16, num_classes=32, **hparams)


def test_the_four_triplet_losses_are_registered() -> None:
    assert {"batch_hard", "batch_all", "batch_semi_hard", "batch_hard_soft_margin"} <= set(LOSSES)
    assert LOSSES == sorted(LOSSES)


# --- contract, for every registered loss ----------------------------------------------------------


@pytest.mark.parametrize("name", LOSSES)
def test_finite_scalar_with_gradient(name: str) -> None:
    embeddings, labels = normalised_batch(8, 4)
    module = build(name)
    value = module(embeddings, labels)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert embeddings.grad is not None
    assert torch.isfinite(embeddings.grad).all()
    assert embeddings.grad.abs().sum() > 0
    for parameter_name, parameter in module.named_parameters():  # proxies, learnable margins
        assert parameter.grad is not None, f"{parameter_name} gets no gradient"
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("labelling", ["all_distinct", "all_equal"])
def test_batch_without_valid_terms_gives_zero_and_finite_gradient(name: str, labelling: str) -> None:
    embeddings, _ = normalised_batch(8, 4)
    labels = torch.arange(32) if labelling == "all_distinct" else torch.zeros(32, dtype=torch.long)
    module = build(name)
    value = module(embeddings, labels)
    if not list(module.parameters()):  # pair-based: nothing to compare, so exactly 0
        assert value.item() == 0.0
    assert torch.isfinite(value)  # proxy-based losses still have sample-proxy pairs
    value.backward()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize("name", LOSSES)
def test_duplicate_embeddings_give_finite_gradient(name: str) -> None:
    # zero distances off the diagonal: the sqrt must not put inf or NaN into the gradient
    embeddings, labels = normalised_batch(4, 4)
    embeddings = torch.cat([embeddings[:8], embeddings[:8]]).detach().requires_grad_()
    labels = torch.cat([labels[:8], labels[:8]])
    value = build(name)(embeddings, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize("name", LOSSES)
def test_unknown_keyword_rejected(name: str) -> None:
    with pytest.raises(LossError, match="no hyperparameter margni"):
        build(name, margni=0.3)


@pytest.mark.parametrize(("name", "key", "end"), ENDPOINTS)
def test_space_endpoints_build_and_give_finite_value(name: str, key: str, end: str) -> None:
    dist = losses.search_space(name)[key]
    value = dist.choices[0 if end == "low" else -1] if isinstance(dist, CategoricalDistribution) \
        else getattr(dist, end)
    embeddings, labels = normalised_batch(8, 4)
    assert torch.isfinite(build(name, **{key: value})(embeddings, labels))


@pytest.mark.parametrize(("name", "key"), RANGED)
def test_out_of_range_value_rejected(name: str, key: str) -> None:
    dist = losses.search_space(name)[key]
    if isinstance(dist, IntDistribution):
        below, above = dist.low - 1, dist.high + 1
    else:  # halve/double a positive bound (log spaces stay positive), else step out by 0.5
        below = dist.low / 2 if dist.low > 0 else dist.low - 0.5
        above = dist.high * 2 if dist.high > 0 else dist.high + 0.5
    for value in (below, above):
        with pytest.raises(LossError, match=rf"{key}={value!r} is out of range; expected \["):
            build(name, **{key: value})
    if isinstance(dist, FloatDistribution):
        with pytest.raises(LossError, match="out of range"):
            build(name, **{key: math.nan})
        with pytest.raises(LossError, match="not a number"):
            build(name, **{key: "0.5"})


@pytest.mark.parametrize("name", LOSSES)
def test_defaults_are_used_and_lie_in_the_space(name: str) -> None:
    record = losses.info(name)
    module = build(name)
    for key, value in record.defaults.items():
        if key in losses.HARNESS_KEYS:
            continue
        assert getattr(module, key) == value
        if key in record.space:
            assert record.space[key]._contains(record.space[key].to_internal_repr(value))


@pytest.mark.parametrize("name", LOSSES)
def test_half_precision_input_uses_float32_distances(name: str) -> None:
    embeddings, labels = normalised_batch(8, 4)
    low = embeddings.detach().bfloat16()
    torch.manual_seed(0)  # losses with parameters draw them at build: the same draw for both
    value = build(name)(low, labels)
    assert value.dtype == torch.float32
    torch.manual_seed(0)
    assert value.item() == pytest.approx(build(name)(low.float(), labels).item(), abs=1e-6)


def test_wrong_shapes_rejected() -> None:
    embeddings, labels = normalised_batch(8, 4)
    with pytest.raises(ValueError, match="labels"):
        build("batch_hard")(embeddings, labels[:-1])


# --- equality with sentence-transformers ----------------------------------------------------------


@pytest.fixture(scope="module")
def st():
    pytest.importorskip("sentence_transformers")
    return st_equivalents()


def build_triplet(name: str, margin: float) -> torch.nn.Module:
    """One of our batch triplet losses with this margin (the soft-margin one takes none)."""
    return build(name, **({"margin": margin} if "margin" in losses.search_space(name) else {}))


def st_value(st_builders, name: str, embeddings: torch.Tensor, labels: torch.Tensor, margin: float
             ) -> torch.Tensor:
    """Their loss on the given embeddings, configured like ours (benchmarks/st_equivalents)."""
    return st_builders[name](build_triplet(name, margin))(embeddings, labels)


def assert_same_as_st(st_builders, name: str, embeddings: torch.Tensor, labels: torch.Tensor,
                      margin: float) -> None:
    ours_in = embeddings.detach().clone().requires_grad_()
    theirs_in = embeddings.detach().clone().requires_grad_()
    ours = build_triplet(name, margin)(ours_in, labels)
    theirs = st_value(st_builders, name, theirs_in, labels, margin)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6, rel=0)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", TRIPLET_LOSSES)
@pytest.mark.parametrize(("classes", "per_class", "dim"), [(8, 4, 16), (16, 2, 8), (4, 8, 64), (32, 4, 128)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_sentence_transformers_on_class_balanced_batches(st, name: str, classes: int, per_class: int,
                                                                  dim: int, seed: int) -> None:
    embeddings, labels = normalised_batch(classes, per_class, dim, seed)
    margin = (0.05, 0.2, 1.0)[seed]
    assert_same_as_st(st, name, embeddings, labels, margin)


@pytest.mark.parametrize("name", ["batch_all", "batch_semi_hard"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_equal_to_sentence_transformers_with_singletons(st, name: str, seed: int) -> None:
    # these two only ever use anchor-positive pairs, so singleton classes change nothing
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(40, 16, generator=generator), dim=1)
    labels = torch.randint(0, 10, (40,), generator=generator)
    labels[-3:] = torch.tensor([20, 21, 22])  # three singleton classes
    assert (labels.bincount() == 1).sum() >= 3
    assert_same_as_st(st, name, embeddings, labels, 0.3)


@pytest.mark.parametrize("name", ["batch_hard", "batch_hard_soft_margin"])
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_sentence_transformers_with_uneven_classes(st, name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(24, 16, generator=generator), dim=1)
    labels = torch.tensor([0] * 2 + [1] * 3 + [2] * 4 + [3] * 7 + [4] * 8)
    assert_same_as_st(st, name, embeddings, labels, 0.5)


def test_documented_differences_from_sentence_transformers(st) -> None:
    embeddings, _ = normalised_batch(4, 4)
    same = torch.zeros(16, dtype=torch.long)
    # one class: they count every anchor with margin (hinge) or log 2 (softplus); we give 0
    assert st_value(st, "batch_hard", embeddings, same, 0.2).item() == pytest.approx(0.2)
    assert st_value(st, "batch_hard_soft_margin", embeddings, same, 0.2).item() == pytest.approx(math.log(2))
    assert build("batch_hard")(embeddings, same).item() == 0.0
    assert build("batch_hard_soft_margin")(embeddings, same).item() == 0.0
    # one class, semi-hard: they pull with mean(d(a, p) + margin); we give 0
    assert st_value(st, "batch_semi_hard", embeddings, same, 0.2).item() > 0.2
    assert build("batch_semi_hard")(embeddings, same).item() == 0.0


# --- hand-computed cases ----------------------------------------------------------------------------

# Four points on a line, class 0 at 0 and 1, class 1 at 3 and 6:
#   d01 = 1, d02 = 3, d03 = 6, d12 = 2, d13 = 5, d23 = 3 (all exact in float32).
LINE = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
LINE_LABELS = torch.tensor([0, 0, 1, 1])


def test_hand_batch_hard() -> None:
    # margin 0.5; anchor: hardest positive, hardest negative, hinge
    #   0: 1, min(3, 6) = 3 -> max(0, 1 - 3 + .5) = 0
    #   1: 1, min(2, 5) = 2 -> max(0, 1 - 2 + .5) = 0
    #   2: 3, min(3, 2) = 2 -> max(0, 3 - 2 + .5) = 1.5
    #   3: 3, min(6, 5) = 5 -> max(0, 3 - 5 + .5) = 0
    # mean over the 4 anchors = 1.5 / 4
    assert build("batch_hard", margin=0.5)(LINE, LINE_LABELS).item() == 0.375


def test_hand_batch_hard_soft_margin() -> None:
    # same hardest pairs: softplus(1 - 3), softplus(1 - 2), softplus(3 - 2), softplus(3 - 5)
    expected = sum(math.log1p(math.exp(x)) for x in (-2.0, -1.0, 1.0, -2.0)) / 4
    assert build("batch_hard_soft_margin")(LINE, LINE_LABELS).item() == pytest.approx(expected, abs=1e-7)


def test_hand_batch_all() -> None:
    # margin 0.5; (a, p): d_ap against each negative
    #   (0, 1): 1 - 3 + .5 < 0, 1 - 6 + .5 < 0
    #   (1, 0): 1 - 2 + .5 < 0, 1 - 5 + .5 < 0
    #   (2, 3): 3 - 3 + .5 = 0.5, 3 - 2 + .5 = 1.5
    #   (3, 2): 3 - 6 + .5 < 0, 3 - 5 + .5 < 0
    # sum 2.0 over 2 active triplets
    assert build("batch_all", margin=0.5)(LINE, LINE_LABELS).item() == 1.0


def test_hand_batch_semi_hard() -> None:
    # margin 0.5; (a, p): d_ap, negatives of a, the chosen one
    #   (0, 1): 1, {3, 6}, nearest beyond 1 is 3 -> max(0, 1 - 3 + .5) = 0
    #   (1, 0): 1, {2, 5}, nearest beyond 1 is 2 -> max(0, 1 - 2 + .5) = 0
    #   (2, 3): 3, {3, 2}, none strictly beyond 3, farthest is 3 -> 3 - 3 + .5 = 0.5
    #   (3, 2): 3, {6, 5}, nearest beyond 3 is 5 -> max(0, 3 - 5 + .5) = 0
    # mean over the 4 anchor-positive pairs = 0.5 / 4
    assert build("batch_semi_hard", margin=0.5)(LINE, LINE_LABELS).item() == 0.125


def test_hand_singleton_anchor_is_left_out() -> None:
    # add a class-2 point at 10: it has no positive, so it is no anchor; for the others the new
    # negative is never nearer than before except for anchor 3 (d34 = 4 < 5): 3 - 4 + .5 < 0
    # -> still 1.5 from anchor 2 over 4 anchors (sentence-transformers: over 5 anchors, 0.3)
    embeddings = torch.cat([LINE, torch.tensor([[10.0]])])
    labels = torch.cat([LINE_LABELS, torch.tensor([2])])
    assert build("batch_hard", margin=0.5)(embeddings, labels).item() == 0.375


def test_hand_unit_circle_batch_hard() -> None:
    # L2-normalised 2-D points at 0, 60 degrees (class 0) and 90, 180 degrees (class 1); chord
    # d = 2 sin(delta / 2): d(0,60) = 1, d(0,90) = sqrt2, d(0,180) = 2, d(60,90) = 2 sin 15deg,
    # d(60,180) = sqrt3, d(90,180) = sqrt2. margin 0.2:
    #   0:   1 - sqrt2 + .2 < 0;  60: 1 - 2 sin 15 + .2;  90: sqrt2 - 2 sin 15 + .2;
    #   180: sqrt2 - sqrt3 + .2 < 0
    angles = torch.tensor([0.0, 60.0, 90.0, 180.0], dtype=torch.float64).deg2rad()
    points = torch.stack([angles.cos(), angles.sin()], dim=1).float()
    s15 = 2 * math.sin(math.radians(15))
    expected = ((1 - s15 + 0.2) + (math.sqrt(2) - s15 + 0.2)) / 4
    assert build("batch_hard")(points, LINE_LABELS).item() == pytest.approx(expected, abs=1e-6)


# --- registry ---------------------------------------------------------------------------------------


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(losses.registry, "_REGISTRY", dict(losses.registry._REGISTRY))


class ProxyLike(torch.nn.Module):
    def __init__(self, embedding_dim: int, num_classes: int, scale: int = 16, kind: str = "a") -> None:
        super().__init__()
        self.proxies = torch.nn.Parameter(torch.zeros(num_classes, embedding_dim))
        self.scale, self.kind = scale, kind


PROXY_SPACE = {
    "scale": IntDistribution(1, 64, log=True),
    "kind": CategoricalDistribution(["a", "b"]),
    "loss_lr": FloatDistribution(1e-5, 1e-1, log=True),
}


def register_proxy_like(name: str = "proxy_like") -> None:
    losses.register_loss(name, space=PROXY_SPACE, defaults={"scale": 16, "kind": "a"},
                         description="A test loss with proxies.", paper="Nobody. Tests. 2025")(ProxyLike)


def test_unknown_name_lists_the_known_ones() -> None:
    for call in (losses.info, losses.search_space, lambda n: losses.build(n, embedding_dim=2, num_classes=2)):
        with pytest.raises(LossError) as error:
            call("x")
        assert str(error.value).startswith("unknown loss 'x'; known losses: " + ", ".join(LOSSES))


def test_info_fields() -> None:
    record = losses.info("batch_hard")
    assert record.cls.__name__ == "BatchHardTripletLoss"
    assert "Hermans" in record.paper and "\n" not in record.description
    assert record.defaults == {"margin": 0.2}
    with pytest.raises(AttributeError):
        record.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", LOSSES)
def test_search_space_is_optuna_distributions_and_serialises(name: str) -> None:
    space = losses.search_space(name)
    for dist in space.values():
        assert isinstance(dist, FloatDistribution | IntDistribution | CategoricalDistribution)
        assert json_to_distribution(distribution_to_json(dist)) == dist
        hash(dist)
    space.clear()  # a copy: the registry keeps its own
    assert losses.search_space(name) == losses.info(name).space


def test_margin_spaces() -> None:
    for name in ("batch_hard", "batch_all", "batch_semi_hard"):
        assert losses.search_space(name) == {"margin": FloatDistribution(0.01, 1.0)}
    assert losses.search_space("batch_hard_soft_margin") == {}


@pytest.mark.parametrize("name", LOSSES)
def test_suggest_returns_values_in_the_space(name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = losses.search_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        params = losses.suggest(trial, name)
        assert set(params) == set(space) == set(trial.params)
        for key, value in params.items():
            assert space[key]._contains(space[key].to_internal_repr(value))
            assert trial.distributions[key] == space[key]
        build(name, **params)
        study.tell(trial, 0.0)


def test_suggest_int_log_and_categorical(scratch_registry: None) -> None:
    register_proxy_like()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    params = losses.suggest(trial, "proxy_like")
    assert trial.distributions == PROXY_SPACE  # log=True carried through to the trial
    assert isinstance(params["scale"], int) and params["kind"] in ("a", "b")
    assert 1e-5 <= params["loss_lr"] <= 1e-1


def test_build_passes_context_and_drops_harness_keys(scratch_registry: None) -> None:
    register_proxy_like()
    module = losses.build("proxy_like", embedding_dim=7, num_classes=3, kind="b", loss_lr=1e-3)
    assert module.proxies.shape == (3, 7) and module.scale == 16 and module.kind == "b"
    with pytest.raises(LossError, match=r"kind='c' is not accepted; expected one of 'a', 'b'"):
        losses.build("proxy_like", embedding_dim=7, num_classes=3, kind="c")
    with pytest.raises(LossError, match=r"scale=8.5 is not an integer"):
        losses.build("proxy_like", embedding_dim=7, num_classes=3, scale=8.5)
    with pytest.raises(LossError, match=r"loss_lr=1.0 is out of range"):
        losses.build("proxy_like", embedding_dim=7, num_classes=3, loss_lr=1.0)
    with pytest.raises(LossError, match=r"num_classes=0 is not accepted"):
        losses.build("proxy_like", embedding_dim=7, num_classes=0)
    with pytest.raises(LossError, match="accepted: kind, loss_lr, scale"):
        losses.build("proxy_like", embedding_dim=7, num_classes=3, embedding_size=7)


def test_registering_none_fails(scratch_registry: None) -> None:
    with pytest.raises(LossError, match="'none' is reserved"):
        register_proxy_like("none")
    assert "none" not in losses.available()


def test_registering_a_duplicate_fails(scratch_registry: None) -> None:
    with pytest.raises(LossError, match="'batch_hard' is already registered"):
        register_proxy_like("batch_hard")
    assert losses.info("batch_hard").cls.__name__ == "BatchHardTripletLoss"


def test_registration_checks(scratch_registry: None) -> None:
    def register(**overrides: object) -> None:
        arguments = {"space": {"scale": IntDistribution(1, 64)}, "defaults": {"scale": 16},
                     "description": "d", "paper": "p", **overrides}
        losses.register_loss("checked", **arguments)(ProxyLike)  # type: ignore[arg-type]

    with pytest.raises(LossError, match=r"scale=100 is out of range; expected \[1, 64\]"):
        register(defaults={"scale": 100})
    with pytest.raises(LossError, match="without a default: kind"):
        register(defaults={"scale": 16}, space={"kind": CategoricalDistribution(["a"])})
    with pytest.raises(LossError, match="temperature is not an argument"):
        register(defaults={"temperature": 1.0})
    with pytest.raises(LossError, match="num_classes is passed by build"):
        register(space={"num_classes": IntDistribution(1, 4)}, defaults={"num_classes": 2})
    with pytest.raises(LossError, match="expected one line"):
        register(description="two\nlines")
    with pytest.raises(LossError, match="expected an optuna"):
        register(space={"scale": (1, 64)})
    assert "checked" not in losses.available()
