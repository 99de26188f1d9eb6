"""Significance: the paired bootstrap against scipy's, Welch's test, Holm's correction, ranks and ties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.significance import ALPHA, compare, holm, paired_bootstrap, ranks, welch


def per_query(seed: int, reps: int, queries: int, level: float, spread: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(level + spread * rng.standard_normal((reps, queries)), 0, 1)


def test_identical_losses_are_tied():
    a = per_query(0, 3, 2000, 0.5)
    out = compare(a, a.copy(), seed=1)
    assert out.diff == 0.0 and out.p_bootstrap > 0.5 and out.p_welch == 1.0
    # the reproductions still differ among themselves, and each loss draws its own: an interval around 0
    assert out.ci_low < 0 < out.ci_high and out.ci_high == pytest.approx(-out.ci_low, rel=0.2)


def test_clearly_separated_losses_are_not_tied():
    a, b = per_query(0, 3, 2000, 0.6), per_query(1, 3, 2000, 0.5)
    out = compare(a, b, seed=1)
    assert out.diff == pytest.approx(a.mean() - b.mean())
    assert out.p_bootstrap < 1e-3 and out.ci_low > 0
    assert out.ci_low < out.diff < out.ci_high


def test_the_same_seed_gives_the_same_figures_and_another_seed_close_ones():
    a, b = per_query(0, 3, 1500, 0.52), per_query(1, 3, 1500, 0.5)
    first, again, other = (paired_bootstrap(a, b, seed=s) for s in (7, 7, 8))
    assert first == again
    assert first[1] == pytest.approx(other[1], abs=2e-3) and first[3] == pytest.approx(other[3], abs=0.05)


def test_one_reproduction_each_is_scipys_paired_bootstrap():
    # With one reproduction per loss only the queries are resampled: a paired bootstrap of mean(a - b),
    # which scipy computes independently (percentile interval).
    a, b = per_query(3, 1, 800, 0.55), per_query(4, 1, 800, 0.5)
    _, low, high, _ = paired_bootstrap(a, b, seed=0, resamples=20_000)
    theirs = stats.bootstrap((a[0], b[0]), lambda x, y: np.mean(x - y), paired=True, vectorized=False,
                             n_resamples=20_000, method="percentile", random_state=0).confidence_interval
    assert low == pytest.approx(theirs.low, abs=2e-3) and high == pytest.approx(theirs.high, abs=2e-3)


def test_reproduction_noise_widens_the_interval():
    # The same query-level noise, but reproductions that disagree: the two-level interval must be wider.
    a = per_query(5, 3, 1000, 0.5)
    steady = compare(a, per_query(6, 3, 1000, 0.5), seed=0)
    shifted = a + np.array([[-0.05], [0.0], [0.05]])
    noisy = compare(shifted, per_query(6, 3, 1000, 0.5), seed=0)
    assert noisy.ci_high - noisy.ci_low > 2 * (steady.ci_high - steady.ci_low)


def test_welch_is_scipys():
    a, b = np.array([0.41, 0.43, 0.42]), np.array([0.39, 0.40, 0.385])
    assert welch(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert np.isnan(welch(a[:1], b))


def test_holm_by_hand():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.5 (x1 = 0.5)
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1, kept monotone
    assert holm([]) == []


def test_ranks_count_the_losses_significantly_better():
    names = ["a", "b", "c"]
    pair_diff = {("a", "b"): 0.1, ("a", "c"): 0.2, ("b", "c"): 0.001}
    pair_p = {("a", "b"): 1e-4, ("a", "c"): 1e-4, ("b", "c"): 0.6}
    assert ranks(names, pair_p, pair_diff) == {"a": 1, "b": 2, "c": 2}
    # Holm: (a, b) is the second smallest of 3, so 0.03 becomes 0.06, no longer below alpha; 0.02 -> 0.04 is
    assert ranks(names, {**pair_p, ("a", "b"): 0.03}, pair_diff, alpha=ALPHA) == {"a": 1, "b": 1, "c": 2}
    assert ranks(names, {**pair_p, ("a", "b"): 0.02}, pair_diff, alpha=ALPHA) == {"a": 1, "b": 2, "c": 2}


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="over the same queries"):
        paired_bootstrap(np.zeros((3, 10)), np.zeros((3, 11)), seed=0)
