"""Training diagnostics: against a brute-force count of every triplet, hand cases, the collapse flag."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from harness.diagnostics import DIAGNOSTICS, YARDSTICK_MARGIN, batch_diagnostics, collapsed


def brute_force(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every triplet enumerated, in float64."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    d = np.linalg.norm(x[:, None] - x[None, :], axis=2)
    hinges, closer, active, triplets = [], [], 0, 0
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [q for q in range(n) if labels[q] != labels[a]]
        for p, q in itertools.product(pos, neg):
            triplets += 1
            active += d[a, p] - d[a, q] + YARDSTICK_MARGIN > 0
        if pos and neg:
            hp, hn = max(d[a, pos]), min(d[a, neg])
            hinges.append(max(0.0, hp - hn + YARDSTICK_MARGIN))
            closer.append(hn < hp)
    centred = x - x.mean(axis=0)
    var = np.linalg.svd(centred, compute_uv=False) ** 2
    return {
        "batch_hard_loss": float(np.mean(hinges)),
        "active_triplets": active / triplets,
        "hardest_negative_closer": float(np.mean(closer)),
        "mean_pairwise_distance": float(d[~np.eye(n, dtype=bool)].mean()),
        "top_pc_variance": float(var[0] / var.sum()),
    }


@pytest.mark.parametrize(("seed", "n", "dim", "classes"), [(0, 12, 4, 3), (1, 32, 16, 8), (2, 40, 8, 5)])
def test_matches_brute_force(seed, n, dim, classes):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    labels[-1] = labels[0] + 100  # one anchor with no positive: it counts in no anchor figure
    x = rng.standard_normal((n, dim))
    got = batch_diagnostics(torch.from_numpy(x).float() * 7.0, torch.from_numpy(labels))  # scale is irrelevant
    want = brute_force(x, labels)
    assert set(got) == set(DIAGNOSTICS)
    for key in DIAGNOSTICS:
        assert got[key] == pytest.approx(want[key], abs=1e-5), key


def test_hand_case_of_two_well_separated_pairs():
    # Two classes at opposite poles: positives at distance 0, negatives at 2. No triplet is active.
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    got = batch_diagnostics(x, torch.tensor([0, 0, 1, 1]))
    assert got["batch_hard_loss"] == 0.0 and got["active_triplets"] == 0.0 and got["hardest_negative_closer"] == 0
    assert got["mean_pairwise_distance"] == pytest.approx(2 * 4 / 6)  # 4 of the 6 pairs are 2 apart
    assert got["top_pc_variance"] == pytest.approx(1.0)


def test_one_point_is_collapse_and_the_yardstick_sits_at_the_margin():
    x = torch.ones(8, 5)
    got = batch_diagnostics(x, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    assert got["mean_pairwise_distance"] == pytest.approx(0.0, abs=1e-6)
    assert got["batch_hard_loss"] == pytest.approx(YARDSTICK_MARGIN, abs=1e-6)
    assert got["active_triplets"] == 1.0 and got["top_pc_variance"] == 1.0


def test_a_batch_without_any_anchor_gives_nan_anchor_figures():
    got = batch_diagnostics(torch.eye(3), torch.tensor([0, 1, 2]))
    assert math.isnan(got["batch_hard_loss"]) and math.isnan(got["active_triplets"])
    assert got["mean_pairwise_distance"] == pytest.approx(math.sqrt(2))


def step(distance: float, loss: float) -> dict:
    return {"mean_pairwise_distance": distance, "batch_hard_loss": loss}


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], False),
        ([step(0.9, 0.05), step(0.8, 0.03)], False),
        ([step(0.9, 0.05), step(5e-4, 0.2)], True),  # the last step is one point
        ([step(5e-4, 0.2), step(0.5, 0.1)], False),  # recovered
        ([step(0.9, 0.1), step(0.3, 0.2004), step(0.3, 0.1998)], True),  # stuck at the margin
        ([step(0.3, 0.2)], False),  # at the margin once: could be chance
        ([step(0.3, 0.21), step(0.3, 0.2)], False),
    ],
)
def test_collapse_flag(history, expected):
    assert collapsed(history) is expected


# ------------------------------------------------------------------------------------ in training


def _train(protocol, data_root, **kw):
    from harness.image.data import load_dataset
    from harness.splits import class_disjoint_split
    from harness.train import train_fold

    data = load_dataset("glyphs", image_size=16, root=data_root)
    split = class_disjoint_split(data.num_classes)
    return train_fold(protocol=protocol, loss_name="batch_hard", hparams={"margin": 0.1},
                      train_set=data.subset(split.folds[0].train), val_set=data.subset(split.folds[0].val),
                      seed=0, **kw)


def test_every_validation_step_records_the_diagnostics(tiny_protocol, data_root):
    result = _train(tiny_protocol, data_root)
    assert [step["iteration"] for step in result.history] == [6, 12]
    for step in result.history:
        assert set(DIAGNOSTICS) <= set(step) and 0 < step["mean_pairwise_distance"] <= 2
    assert result.collapsed is False


def test_a_collapsing_training_is_flagged_and_keeps_its_score(tiny_protocol, data_root, monkeypatch):
    import harness.train

    build = harness.train.build_model

    def collapsing(protocol, items, seed):
        """The embedder's weights held at zero: every image gets its bias, one point."""
        model = build(protocol, items, seed)
        model.embedder.weight.data.zero_()
        model.embedder.weight.requires_grad_(False)
        return model

    monkeypatch.setattr(harness.train, "build_model", collapsing)
    result = _train(tiny_protocol, data_root)
    assert result.collapsed is True
    assert result.history[-1]["mean_pairwise_distance"] < 1e-6
    assert result.history[-1]["batch_hard_loss"] == pytest.approx(YARDSTICK_MARGIN, abs=1e-6)
    assert 0 <= result.best_val_map_at_r <= 1  # scored as any other training
