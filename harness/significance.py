"""Ties called ties: is one loss's concatenated MAP@R really above another's?

Three reproductions per loss give three means each, and a test on three numbers has almost no
power. Every reproduction is scored on the same test queries, though, so two losses can be compared
query by query. The main test is a two-level paired bootstrap of the difference in concatenated
MAP@R: each resample draws reproductions (with replacement, separately for each loss, as their
trainings are independent), then one set of test queries (with replacement) used for both losses.
Welch's t-test over the reproductions' means is given beside it as a second opinion.

Holm's step-down correction keeps the chance of any false "better" at alpha over a family of
comparisons: the k - 1 comparisons with the best loss (tied_with_best), or all pairs (rank).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["ALPHA", "RESAMPLES", "Comparison", "bootstrap_means", "difference", "paired_bootstrap", "welch", "holm",
           "compare", "ranks"]

ALPHA = 0.05
RESAMPLES = 10_000
_BATCH = 500  # resamples drawn at once: a [batch, queries] matrix of counts


@dataclass(frozen=True)
class Comparison:
    """A minus B in mean concatenated MAP@R, with its 95% bootstrap interval and both p-values."""

    diff: float
    ci_low: float
    ci_high: float
    p_bootstrap: float
    p_welch: float


def bootstrap_means(per_query: dict[str, np.ndarray], *, seed: int, resamples: int = RESAMPLES
                    ) -> dict[str, np.ndarray]:
    """Each loss's resampled mean, [resamples] per loss, from its per-query figures [reproductions, Q]
    (Q: the scored test queries, the same ones in the same order for every loss).

    One draw of test queries per resample serves every loss (the queries are the same, so the
    comparison is paired); each loss draws its own reproductions. Any two losses' replicates then
    give the bootstrap of their difference, so a whole table costs one pass.
    """
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in per_query.items()}
    shapes = {values.shape[1] for values in arrays.values() if values.ndim == 2}
    if len(shapes) != 1 or any(values.ndim != 2 or not len(values) for values in arrays.values()):
        raise ValueError("per-query figures must be [reproductions, queries] over the same queries, got "
                         + ", ".join(str(values.shape) for values in arrays.values()))
    (n_queries,) = shapes
    names = list(arrays)
    stacked = np.concatenate([arrays[name] for name in names])  # [all reproductions, Q]
    bounds = np.cumsum([0] + [len(arrays[name]) for name in names])
    rng = np.random.default_rng(seed)
    out = {name: np.empty(resamples) for name in names}
    for start in range(0, resamples, _BATCH):
        size = min(_BATCH, resamples - start)
        # How often each query is drawn: a resample's mean over queries is a weighted mean.
        query_counts = rng.multinomial(n_queries, np.full(n_queries, 1 / n_queries), size=size)
        per_rep = query_counts @ stacked.T / n_queries  # [size, all reproductions]
        for i, name in enumerate(names):
            reps = bounds[i + 1] - bounds[i]
            weights = rng.multinomial(reps, np.full(reps, 1 / reps), size=size) / reps
            out[name][start : start + size] = (per_rep[:, bounds[i] : bounds[i + 1]] * weights).sum(axis=1)
    return out


def difference(a_replicates: np.ndarray, b_replicates: np.ndarray) -> tuple[float, float, float]:
    """(ci_low, ci_high, p) of a difference from two losses' joint replicates: the 95% percentile
    interval, and p two-sided, twice the smaller share of differences on either side of zero (at most 1)."""
    diffs = a_replicates - b_replicates
    low, high = np.quantile(diffs, [0.025, 0.975])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return float(low), float(high), float(p)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, seed: int, resamples: int = RESAMPLES
                     ) -> tuple[float, float, float, float]:
    """(diff, ci_low, ci_high, p) of mean(a) - mean(b) for per-query figures a [Ra, Q] and b [Rb, Q]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    replicates = bootstrap_means({"a": a, "b": b}, seed=seed, resamples=resamples)
    diff = float(a.mean() - b.mean())
    return (diff, *difference(replicates["a"], replicates["b"]))


def welch(a_means: np.ndarray, b_means: np.ndarray) -> float:
    """Two-sided p of Welch's t-test on the reproductions' means (NaN with fewer than two each)."""
    a_means, b_means = np.asarray(a_means, dtype=float), np.asarray(b_means, dtype=float)
    if min(len(a_means), len(b_means)) < 2:
        return float("nan")
    if a_means.std() == 0 and b_means.std() == 0:  # no spread: the test is undefined, the means tell
        return 1.0 if a_means.mean() == b_means.mean() else 0.0
    return float(stats.ttest_ind(a_means, b_means, equal_var=False).pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input's order: the i-th smallest is multiplied by (m - i + 1),
    and each kept at least the previous one's, at most 1."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def compare(a: np.ndarray, b: np.ndarray, *, seed: int, resamples: int = RESAMPLES) -> Comparison:
    """Both tests of A against B, from their per-query AP@R [reproductions, queries]."""
    diff, low, high, p = paired_bootstrap(a, b, seed=seed, resamples=resamples)
    return Comparison(diff, low, high, p, welch(a.mean(axis=1), b.mean(axis=1)))


def ranks(names: list[str], pair_p: dict[tuple[str, str], float], pair_diff: dict[tuple[str, str], float],
          alpha: float = ALPHA) -> dict[str, int]:
    """1 + the number of losses significantly better than each, all pairs Holm-corrected together.

    pair_p and pair_diff hold each unordered pair once, as (x, y) with diff = x - y.
    """
    pairs = list(pair_p)
    adjusted = dict(zip(pairs, holm([pair_p[pair] for pair in pairs]), strict=True))
    better = {name: 0 for name in names}
    for (x, y), p in adjusted.items():
        if p < alpha:
            if pair_diff[x, y] > 0:
                better[y] += 1
            elif pair_diff[x, y] < 0:
                better[x] += 1
    return {name: 1 + better[name] for name in names}
